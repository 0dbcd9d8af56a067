"""Tests of the bundled sample and of `tools/make_sample.py`, which makes it."""

import os

from ankh3_tasks import sources

from conftest import REPO
from conftest import run_python
from conftest import write_fasta

SCRIPT = os.path.join(REPO, "tools", "make_sample.py")


def _read(path):
  stats = sources.ReadStats(os.path.basename(path))
  records = list(sources.read_fasta(path, stats))
  assert stats.read == stats.kept, stats.summary()
  return records


def _kmers(sequence, k=15):
  return {sequence[i : i + k] for i in range(len(sequence) - k + 1)}


def test_the_bundled_sample_is_real_held_out_and_attributed():
  train = _read(sources.SAMPLE_FILES["train"][0])
  validation = _read(sources.SAMPLE_FILES["validation"][0])
  assert (len(train), len(validation)) == (3000, 300)
  for records in (train, validation):
    assert all(30 <= len(s) <= 1000 for _, s in records)
    # UniProtKB identifiers, each protein once.
    assert all(i.startswith(("sp|", "tr|")) for i, _ in records)
    assert len({s for _, s in records}) == len(records)
  examples = _read(os.path.join(REPO, "examples", "proteins.fasta"))
  assert examples == validation[:8]
  # No validation protein shares a 15-residue stretch with a training one.
  held_out = set().union(*(_kmers(s) for _, s in validation))
  assert not any(_kmers(s) & held_out for _, s in train)
  with open(os.path.join(REPO, "ankh3_tasks", "data", "README.md")) as f:
    readme = " ".join(f.read().split())
  assert "CC BY 4.0" in readme and "UniProt Consortium" in readme


def _source(tmp_path, count=700):
  # Proteins of 40 residues from a 4-letter alphabet: random enough that few
  # share a 15-mer, so the draw keeps most; plus a copy and a short one.
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(1)
  records = []
  for i in range(count):
    sequence = "".join(rng.choice(list("ACDE"), 40))
    records.append((f"sp|P{i:05d}|X_HUMAN desc", [sequence]))
  records.append(("sp|DUP|X_HUMAN", records[0][1]))
  records.append(("sp|SHORT|X_HUMAN", ["MKT"]))
  return write_fasta(tmp_path / "db.fasta.gz", records, gz=True)


def test_make_sample_is_byte_identical_and_disjoint(tmp_path, monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location("make_sample", SCRIPT)
  make_sample = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(make_sample)
  monkeypatch.setattr(make_sample, "SPLITS", {"validation": 20, "train": 200})
  source = _source(tmp_path)
  digests = []
  for run in ("a", "b"):
    out = tmp_path / run
    out.mkdir()
    make_sample.main([
        "--source",
        source,
        "--output_dir",
        str(out),
        "--examples",
        str(out / "examples.fasta"),
    ])
    digests.append([
        (out / f"sample_{s}.fasta.gz").read_bytes()
        for s in ("train", "validation")
    ])
  assert digests[0] == digests[1]
  train = _read(str(tmp_path / "a" / "sample_train.fasta.gz"))
  validation = _read(str(tmp_path / "a" / "sample_validation.fasta.gz"))
  assert (len(train), len(validation)) == (200, 20)
  examples = _read(str(tmp_path / "a" / "examples.fasta"))
  assert examples == validation[:8]
  ids = {i for i, _ in train} | {i for i, _ in validation}
  assert "sp|SHORT|X_HUMAN" not in ids  # Under 30 residues.
  assert not {"sp|DUP|X_HUMAN", "sp|P00000|X_HUMAN"} <= ids  # One copy.
  held_out = set().union(*(_kmers(s) for _, s in validation))
  assert not any(_kmers(s) & held_out for _, s in train)
  # gzip without a timestamp: the same bytes on every machine and day.
  with open(tmp_path / "a" / "sample_train.fasta.gz", "rb") as f:
    assert f.read(8)[4:8] == b"\0\0\0\0"


def test_make_sample_says_when_the_source_is_too_small(tmp_path):
  run = run_python(
      SCRIPT,
      "--source",
      _source(tmp_path, count=50),
      "--output_dir",
      str(tmp_path),
      check=False,
  )
  assert run.returncode != 0
  assert "the sample needs 300 and 3000" in run.stderr
  assert "not the sample's source" in run.stdout
