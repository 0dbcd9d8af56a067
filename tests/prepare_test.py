"""Tests of `python -m ankh3_tasks.prepare`: outputs, bad input, resuming."""

import glob
import gzip
import json
import os
import random
import re

import pytest
import seqio
import tensorflow as tf

from ankh3_tasks import cli
from ankh3_tasks import prepare
from ankh3_tasks import prepare_steps
from ankh3_tasks import prepared as prepared_lib
from ankh3_tasks import sources
from ankh3_tasks import tasks
from ankh3_tasks import vocabularies
from conftest import write_fasta

SMALL = prepare_steps.Settings(
    num_shards=4, num_eval_shards=2, validation_fraction=0.2
)


def _read_split(output_dir, split):
  """{id: sequence} of a prepared split, and the ids in file order."""
  records, order = {}, []
  for path in sorted(glob.glob(os.path.join(output_dir, split, "*"))):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      example = tf.train.Example.FromString(raw)
      record_id = example.features.feature["id"].bytes_list.value[0].decode()
      sequence = example.features.feature["sequence"].bytes_list.value[0]
      assert record_id not in records
      records[record_id] = sequence.decode()
      order.append(record_id)
  return records, order


def _read_all(output_dir):
  out = {}
  for split in ("train", "validation", "test"):
    out.update(_read_split(output_dir, split)[0])
  return out


def _proteins(count, seed=0):
  rng = random.Random(seed)
  return [
      (
          f"UniRef50_P{i:06d}",
          "".join(
              rng.choice("ACDEFGHIKLMNPQRSTVWY")
              for _ in range(rng.randint(5, 80))
          ),
      )
      for i in range(count)
  ]


def test_bad_records_are_counted_and_nothing_is_lost(tmp_path):
  path = tmp_path / "in.fasta"
  # CRLF line endings throughout; lowercase is accepted and upper-cased.
  text = (
      "\r\n".join([
          "stray line before any header",
          ">good1 first",
          "MKTAY",
          "iakqr",
          ">empty",
          " * ",
          ">noseq",
          ">digits",
          "MKT4Y",
          ">gaps",
          "MK-TAY",
          ">good1 repeated id",
          "GGGG",
          ">good2",
          "acd*",
          ">",
          "WWW",
      ])
      + "\r\n"
  )
  path.write_bytes(text.encode())
  stats = prepare.prepare(
      [str(path)], str(tmp_path / "out"), SMALL, progress=False
  )
  assert stats["read"] == 9
  assert stats["rejected"] == {
      sources.SEQUENCE_BEFORE_HEADER: 1,
      sources.EMPTY: 1,
      sources.HEADER_WITHOUT_SEQUENCE: 1,
      sources.INVALID_CHARACTERS: 2,
      prepare_steps.TOO_LONG: 0,
      prepare_steps.DUPLICATE_ID: 1,
  }
  assert stats["read"] == stats["written_total"] + stats["rejected_total"]
  written = _read_all(tmp_path / "out")
  # The first occurrence of a repeated id is kept; a header without an id
  # gets the file and line as its id.
  assert written == {
      "good1": "MKTAYIAKQR",
      "good2": "ACD",
      "in.fasta:16": "WWW",
  }
  assert stats["residue_composition"]["W"]["count"] == 3
  assert sum(b["count"] for b in stats["length_histogram"]) == 3
  on_disk = json.loads((tmp_path / "out" / "stats.json").read_text())
  assert on_disk["rejected"] == stats["rejected"]


def test_split_is_a_stable_function_of_the_id(tmp_path):
  proteins = _proteins(3000)
  write_fasta(tmp_path / "a.fasta", [(i, [s]) for i, s in proteins])
  shuffled = list(proteins)
  random.Random(1).shuffle(shuffled)
  write_fasta(tmp_path / "b.fasta.gz", [(i, [s]) for i, s in shuffled], gz=True)
  prepare.prepare(
      [str(tmp_path / "a.fasta")], str(tmp_path / "a"), SMALL, progress=False
  )
  prepare.prepare(
      [str(tmp_path / "b.fasta.gz")], str(tmp_path / "b"), SMALL, progress=False
  )
  # Same ids in the same split and shard, in the same order: same bytes.
  manifests = [
      json.loads((tmp_path / d / prepared_lib.MANIFEST).read_text())["files"]
      for d in ("a", "b")
  ]
  assert [f["sha256"] for f in manifests[0]] == [
      f["sha256"] for f in manifests[1]
  ]
  validation = _read_split(tmp_path / "a", "validation")[0]
  assert abs(len(validation) / 3000 - 0.2) < 0.03
  for record_id in validation:
    assert prepare_steps.assign(record_id, SMALL)[0] == "validation"
  # A salt draws another held-out set.
  salted = prepare_steps.Settings(**{**SMALL.__dict__, "salt": "other"})
  moved = sum(
      prepare_steps.assign(i, salted)[0] != "validation" for i in validation
  )
  assert moved > len(validation) / 2
  # Every shard file exists, and shard counts are as asked.
  assert len(glob.glob(str(tmp_path / "a" / "train" / "*"))) == 4
  assert len(glob.glob(str(tmp_path / "a" / "validation" / "*"))) == 2


def test_tables_and_max_length(tmp_path):
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  (tmp_path / "in.tsv").write_text(
      "name\tseq\nx1\tMKTAYIAK\nx2\tMK\nx3\tMKTAYIAKQRQISFVK\n"
  )
  pq.write_table(
      pa.table({"acc": ["p1", "p2"], "residues": ["GGSGG", "W" * 40]}),
      tmp_path / "in.parquet",
  )
  settings = prepare_steps.Settings(
      num_shards=2,
      num_eval_shards=1,
      validation_fraction=0.0,
      max_length=10,
  )
  stats = prepare.prepare(
      [str(tmp_path / "in.tsv")],
      str(tmp_path / "tsv"),
      settings,
      progress=False,
  )
  assert stats["rejected"][prepare_steps.TOO_LONG] == 1
  assert _read_all(tmp_path / "tsv") == {"x1": "MKTAYIAK", "x2": "MK"}
  with_columns = prepare_steps.Settings(
      **{**settings.__dict__, "sequence_column": "residues", "id_column": "acc"}
  )
  prepare.prepare(
      [str(tmp_path / "in.parquet")],
      str(tmp_path / "pq"),
      with_columns,
      progress=False,
  )
  assert _read_all(tmp_path / "pq") == {"p1": "GGSGG"}
  assert not os.path.exists(tmp_path / "pq" / "validation")


def test_example_bytes_are_a_tf_example():
  expected = tf.train.Example(
      features=tf.train.Features(
          feature={
              "id": tf.train.Feature(
                  bytes_list=tf.train.BytesList(value=["Q\u00e9".encode()])
              ),
              "sequence": tf.train.Feature(
                  bytes_list=tf.train.BytesList(value=[b"M" * 300])
              ),
          }
      )
  )
  got = prepared_lib.example_bytes("Q\u00e9", "M" * 300)
  assert tf.train.Example.FromString(got) == expected
  assert got == expected.SerializeToString(deterministic=True)


def test_truncated_gzip_fails_naming_the_record_and_leaves_no_manifest(
    tmp_path,
):
  proteins = _proteins(4000)
  path = write_fasta(
      tmp_path / "in.fasta.gz", [(i, [s]) for i, s in proteins], gz=True
  )
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])
  with pytest.raises((EOFError, OSError), match=r"in\.fasta\.gz.*UniRef50_P"):
    prepare.prepare([path], str(tmp_path / "out"), SMALL, progress=False)
  assert not os.path.exists(tmp_path / "out" / prepared_lib.MANIFEST)
  # The tasks refuse the unfinished directory.
  with pytest.raises(ValueError, match="unfinished"):
    sources.split_files(str(tmp_path / "out"), "train")


def test_empty_input_fails(tmp_path):
  (tmp_path / "empty.fasta").write_text("")
  with pytest.raises(ValueError, match="No records"):
    prepare.prepare(
        [str(tmp_path / "empty.fasta")],
        str(tmp_path / "out"),
        SMALL,
        progress=False,
    )
  assert not os.path.exists(tmp_path / "out" / prepared_lib.MANIFEST)


def test_all_records_bad_writes_stats_but_no_manifest(tmp_path):
  write_fasta(tmp_path / "bad.fasta", [("a", ["12"]), ("b", ["--"])])
  with pytest.raises(ValueError, match="stats.json"):
    prepare.prepare(
        [str(tmp_path / "bad.fasta")],
        str(tmp_path / "out"),
        SMALL,
        progress=False,
    )
  stats = json.loads((tmp_path / "out" / "stats.json").read_text())
  assert stats["rejected"][sources.INVALID_CHARACTERS] == 2
  assert not os.path.exists(tmp_path / "out" / prepared_lib.MANIFEST)


def test_output_dir_with_another_dataset_is_refused(tmp_path):
  write_fasta(tmp_path / "a.fasta", [("a", ["MKT"]), ("b", ["GGS"])])
  write_fasta(tmp_path / "b.fasta", [("c", ["WWW"])])
  out = str(tmp_path / "out")
  prepare.prepare([str(tmp_path / "a.fasta")], out, SMALL, progress=False)
  # The same again: nothing to do.
  again = prepare.prepare(
      [str(tmp_path / "a.fasta")], out, SMALL, progress=False
  )
  assert again["written_total"] == 2
  with pytest.raises(FileExistsError, match="other inputs or settings"):
    prepare.prepare([str(tmp_path / "b.fasta")], out, SMALL, progress=False)
  other = prepare_steps.Settings(**{**SMALL.__dict__, "num_shards": 8})
  with pytest.raises(FileExistsError, match="--overwrite"):
    prepare.prepare([str(tmp_path / "a.fasta")], out, other, progress=False)
  assert _read_all(out) == {"a": "MKT", "b": "GGS"}
  prepare.prepare(
      [str(tmp_path / "b.fasta")], out, SMALL, overwrite=True, progress=False
  )
  assert _read_all(out) == {"c": "WWW"}
  # A directory with files of its own is not ours to fill.
  (tmp_path / "busy").mkdir()
  (tmp_path / "busy" / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="not empty"):
    prepare.prepare(
        [str(tmp_path / "a.fasta")],
        str(tmp_path / "busy"),
        SMALL,
        progress=False,
    )
  # Told to, it adds its dataset and leaves the other files alone.
  prepare.prepare(
      [str(tmp_path / "a.fasta")],
      str(tmp_path / "busy"),
      SMALL,
      overwrite=True,
      progress=False,
  )
  assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
  assert _read_all(tmp_path / "busy") == {"a": "MKT", "b": "GGS"}


def test_killed_run_resumes_and_keeps_finished_shards(tmp_path, monkeypatch):
  proteins = _proteins(500)
  path = write_fasta(tmp_path / "in.fasta", [(i, [s]) for i, s in proteins])
  out = str(tmp_path / "out")
  real = prepare_steps.write_shard
  calls = []

  def dies_after_three(*args, **kwargs):
    if len(calls) == 3:
      raise KeyboardInterrupt("killed")
    calls.append(args[3:])
    return real(*args, **kwargs)

  monkeypatch.setattr(prepare_steps, "write_shard", dies_after_three)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare([path], out, SMALL, progress=False)
  assert not os.path.exists(os.path.join(out, prepared_lib.MANIFEST))
  finished = list(calls)

  calls.clear()
  monkeypatch.setattr(
      prepare_steps,
      "write_shard",
      lambda *a, **k: (calls.append(a[3:]), real(*a, **k))[1],
  )
  stats = prepare.prepare([path], out, SMALL, progress=False)
  assert not set(calls) & set(finished)
  assert len(calls) + len(finished) == 6
  assert stats["written_total"] == 500
  assert _read_all(out) == dict(proteins)
  assert not os.path.exists(os.path.join(out, prepared_lib.WORK))


def test_beam_direct_runner_writes_the_same_bytes(tmp_path):
  pytest.importorskip("apache_beam")
  proteins = _proteins(400) + [("UniRef50_P000007", "WWWW")]  # A duplicate.
  path = write_fasta(tmp_path / "in.fasta", [(i, [s]) for i, s in proteins])
  here = prepare.prepare([path], str(tmp_path / "here"), SMALL, progress=False)
  beam = prepare.prepare(
      [path],
      str(tmp_path / "beam"),
      SMALL,
      beam_options=["--runner=DirectRunner"],
  )
  for key in (
      "read",
      "written",
      "rejected",
      "length_histogram",
      "residue_composition",
  ):
    assert beam[key] == here[key], key
  manifests = [
      json.loads((tmp_path / d / prepared_lib.MANIFEST).read_text())["files"]
      for d in ("here", "beam")
  ]
  assert manifests[0] == manifests[1]
  assert here["rejected"][prepare_steps.DUPLICATE_ID] == 1


def test_command_line(tmp_path, capsys):
  path = write_fasta(tmp_path / "in.fasta", [("a", ["MKT"]), ("b", ["1"])])
  out = str(tmp_path / "out")
  assert (
      cli.run(
          prepare.main,
          [
              f"--input={path}",
              f"--output_dir={out}",
              "--num_shards=2",
              "--no_progress",
          ],
      )
      == 0
  )
  printed = capsys.readouterr().out
  assert "read 2, written 1" in printed and "invalid characters 1" in printed
  assert (
      cli.run(
          prepare.main,
          [f"--input={tmp_path / 'missing.fasta'}", f"--output_dir={out}"],
      )
      == 1
  )
  assert "No such input" in capsys.readouterr().err


def test_an_empty_held_out_split_is_said_at_once_and_refused(tmp_path, capsys):
  # 50 proteins at the default fraction (1e-4): no validation protein.
  path = write_fasta(
      tmp_path / "in.fasta", [(i, [s]) for i, s in _proteins(50)]
  )
  out = str(tmp_path / "out")
  flags = [f"--input={path}", f"--output_dir={out}", "--no_progress"]
  assert cli.run(prepare.main, flags) == 0
  err = capsys.readouterr().err
  assert "warning: split 'validation' holds no proteins" in err
  assert "--validation_fraction=2 --overwrite" not in err
  assert "--validation_fraction=0.5 --overwrite" in err  # 100 of 50: capped.
  assert sources.split_files(out, "train")
  with pytest.raises(
      ValueError,
      match="Split 'validation' of .* holds no proteins.*--validation_fraction",
  ):
    sources.split_files(out, "validation")


def test_empty_split_advice_counts_and_names_flags_that_exist(tmp_path, capsys):
  path = write_fasta(tmp_path / "two.fasta", [("a", ["MKT"]), ("b", ["GGS"])])
  out = str(tmp_path / "out")
  flags = [f"--input={path}", f"--output_dir={out}", "--no_progress"]
  assert cli.run(prepare.main, flags) == 0
  err = capsys.readouterr().err
  want = "--validation_fraction=0.5 --overwrite (about 1 of the 2 proteins)"
  assert want in err
  # Everything held out: the advice is about the held-out fractions.
  flags = [
      f"--input={path}",
      f"--output_dir={tmp_path / 'all_held_out'}",
      "--validation_fraction=0.999999",
      "--no_progress",
  ]
  assert cli.run(prepare.main, flags) == 0
  err = capsys.readouterr().err
  assert "warning: split 'train' holds no proteins" in err
  assert "--train_fraction" not in err
  assert "smaller --validation_fraction" in err


def test_every_flag_and_file_a_message_names_exists(tmp_path, capsys):
  """The flags in prepare's messages are its own (or Beam's, with --beam)."""
  import ast  # pylint: disable=g-import-not-at-top

  with pytest.raises(SystemExit):
    prepare.main(["--help"])
  options = set(re.findall(r"--([a-z_]+)", capsys.readouterr().out))
  assert {"input", "output_dir", "validation_fraction", "overwrite"} <= options
  beam = {"runner", "project", "region", "temp_location"}
  with open(prepare.__file__) as f:
    tree = ast.parse(f.read())
  docstrings = {
      id(node.body[0].value)
      for node in ast.walk(tree)
      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
      and node.body
      and isinstance(node.body[0], ast.Expr)
      and isinstance(node.body[0].value, ast.Constant)
  }
  named = set()
  for node in ast.walk(tree):
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ):
      named.update(re.findall(r"(?<![\w-])--([a-z][a-z_]*)", node.value))
  assert "overwrite" in named and "validation_fraction" in named
  assert named <= options | beam, named - options - beam

  # A finished directory of other settings names its manifest, which exists.
  write_fasta(tmp_path / "a.fasta", [("a", ["MKT"])])
  out = str(tmp_path / "out")
  prepare.prepare([str(tmp_path / "a.fasta")], out, SMALL, progress=False)
  other = prepare_steps.Settings(**{**SMALL.__dict__, "num_shards": 8})
  with pytest.raises(FileExistsError) as raised:
    prepare.prepare([str(tmp_path / "a.fasta")], out, other, progress=False)
  manifest = re.search(r"see its (\S+)\)", str(raised.value)).group(1)
  assert os.path.isfile(os.path.join(out, manifest)), str(raised.value)


# ------------------------------------------------------ tasks on prepared data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  directory = tmp_path_factory.mktemp("prepared")
  proteins = _proteins(800)
  path = write_fasta(directory / "in.fasta", [(i, [s]) for i, s in proteins])
  out = str(directory / "out")
  prepare.prepare(
      [path],
      out,
      prepare_steps.Settings(
          num_shards=8, num_eval_shards=2, validation_fraction=0.05
      ),
      progress=False,
  )
  return out, dict(proteins)


def test_hosts_read_disjoint_shards(prepared):
  out, proteins = prepared
  source = sources.ProteinSource(lambda split: sources.split_files(out, split))
  assert len(source.list_shards("train")) == 8
  seen = []
  for index in range(4):
    ds = source.get_dataset(
        "train",
        shuffle=True,
        seed=index,
        shard_info=seqio.ShardInfo(index=index, num_shards=4),
    )
    ids = [r["id"].decode() for r in ds.as_numpy_iterator()]
    seen.append(set(ids))
    assert len(ids) == len(set(ids))
  assert not any(a & b for i, a in enumerate(seen) for b in seen[i + 1 :])
  validation = _read_split(out, "validation")[0]
  assert set().union(*seen) == set(proteins) - set(validation)


def test_tasks_read_prepared_shards_and_can_save_their_position(
    prepared, tmp_path
):
  out, _ = prepared
  tasks.register_ankh3_tasks(
      "prepared_test", lambda split: sources.split_files(out, split)
  )
  try:
    task = seqio.get_mixture_or_task("prepared_test_multitask")
    lengths = {"inputs": 128, "targets": 80}
    ds = task.get_dataset(lengths, split="train", shuffle=True, seed=5)
    iterator = iter(ds)
    next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ds"))
    expected = [next(iterator)["inputs"].numpy().tolist() for _ in range(3)]
    restored = iter(
        task.get_dataset(lengths, split="train", shuffle=True, seed=5)
    )
    tf.train.Checkpoint(iterator=restored).restore(path)
    assert [next(restored)["inputs"].numpy().tolist() for _ in range(3)] == (
        expected
    )
  finally:
    for kind in ("denoise", "complete", "multitask"):
      seqio.TaskRegistry.remove(f"prepared_test_{kind}")


def test_seqio_cache_job_on_the_sample_then_cached_training(tmp_path):
  pytest.importorskip("apache_beam")
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  cache = tmp_path / "cache"
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "seqio.scripts.cache_tasks_main",
          "--module_import=ankh3_tasks.mixtures",
          "--tasks=ankh3_sample_multitask",
          f"--output_cache_dir={cache}",
          "--pipeline_options=--runner=DirectRunner",
      ],
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  seqio.add_global_cache_dirs([str(cache)])
  task = seqio.get_mixture_or_task("ankh3_sample_multitask")
  assert task.get_cached_stats("train")["examples"] == 3000
  lengths = {"inputs": 512, "targets": 320}
  # The cache holds tokenized proteins; crops, masks and the task choice are
  # drawn afresh on every read.
  first, second = (
      [
          ex["inputs"].tolist()
          for ex in (
              task.get_dataset(
                  lengths,
                  split="train",
                  use_cached=True,
                  shuffle=False,
                  seed=seed,
              )
              .take(20)
              .as_numpy_iterator()
          )
      ]
      for seed in (1, 2)
  )
  assert first != second
  uncached = [
      ex["inputs"].tolist()
      for ex in task.get_dataset(
          lengths, split="validation", use_cached=True, shuffle=False, seed=3
      ).as_numpy_iterator()
  ]
  assert len(uncached) == 300
  vocab = vocabularies.Ankh3Vocabulary()
  tasks = {vocab.token_id(vocabularies.NLU), vocab.token_id(vocabularies.S2S)}
  assert all(x[0] in tasks and x[-1] == vocab.eos_id for x in uncached)


def test_write_workers_give_the_same_bytes_and_progress_is_shown(
    tmp_path, capfd
):
  proteins = _proteins(300)
  path = write_fasta(tmp_path / "in.fasta", [(i, [s]) for i, s in proteins])
  one = prepare.prepare([path], str(tmp_path / "one"), SMALL, progress=True)
  err = capfd.readouterr().err
  assert "scan: 300 records" in err and "/s" in err and "write: 300" in err
  # stderr is not a terminal here: whole lines for a log, no redraws.
  assert "\r" not in err
  assert re.search(r"scan: 300 records, [\d,]+/s, 100% of [\d.]+kB", err)
  two = prepare.prepare(
      [path], str(tmp_path / "two"), SMALL, progress=False, workers=2
  )
  assert one["written"] == two["written"]
  manifests = [
      json.loads((tmp_path / d / prepared_lib.MANIFEST).read_text())["files"]
      for d in ("one", "two")
  ]
  assert manifests[0] == manifests[1]


def test_uniref50_tasks_read_the_prepared_directory(prepared, monkeypatch):
  out, proteins = prepared
  monkeypatch.setenv(sources.DATA_DIR_ENV, out)
  task = seqio.get_mixture_or_task("ankh3_uniref50_multitask")
  assert len(task.source.list_shards("train")) == 8
  ids = set()
  for index in range(2):
    ds = task.get_dataset(
        {"inputs": 128, "targets": 80},
        split="validation",
        shuffle=False,
        shard_info=seqio.ShardInfo(index=index, num_shards=2),
    )
    assert all(ex["inputs"][-1] == 1 for ex in ds.as_numpy_iterator())
  validation = _read_split(out, "validation")[0]
  for index in range(2):
    ids |= {
        r["id"].decode()
        for r in task.source.get_dataset(
            "validation",
            shuffle=False,
            shard_info=seqio.ShardInfo(index=index, num_shards=2),
        ).as_numpy_iterator()
    }
  assert ids == set(validation) and ids <= set(proteins)


def test_corrupt_inputs_fail_naming_the_file_and_the_record(tmp_path):
  proteins = _proteins(3000)
  # A gzip stream with a broken block (zlib's error), and a truncated CSV.
  path = write_fasta(
      tmp_path / "in.fasta.gz", [(i, [s]) for i, s in proteins], gz=True
  )
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
  open(path, "wb").write(bytes(data))
  with pytest.raises(Exception, match=r"in\.fasta\.gz: unreadable after"):
    prepare.prepare([path], str(tmp_path / "a"), SMALL, progress=False)
  csv_path = tmp_path / "in.csv.gz"
  with gzip.open(csv_path, "wt") as f:
    f.write("id,sequence\n")
    f.writelines(f"{i},{s}\n" for i, s in proteins)
  data = open(csv_path, "rb").read()
  open(csv_path, "wb").write(data[: len(data) // 2])
  with pytest.raises(EOFError, match=r"in\.csv\.gz: .*UniRef50_P.*row"):
    prepare.prepare([str(csv_path)], str(tmp_path / "b"), SMALL, progress=False)
  bad_parquet = tmp_path / "in.parquet"
  bad_parquet.write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1")
  with pytest.raises((ValueError, OSError), match=r"in\.parquet: unreadable"):
    prepare.prepare(
        [str(bad_parquet)], str(tmp_path / "c"), SMALL, progress=False
    )
  for out in ("a", "b", "c"):
    assert not os.path.exists(tmp_path / out / prepared_lib.MANIFEST)


def test_an_empty_file_among_inputs_is_named(tmp_path):
  good = write_fasta(tmp_path / "good.fasta", [("a", ["MKT"])])
  (tmp_path / "empty.fasta").write_text("")
  with pytest.raises(ValueError, match=r"No records in .*empty\.fasta"):
    prepare.prepare(
        [good, str(tmp_path / "empty.fasta")],
        str(tmp_path / "out"),
        SMALL,
        progress=False,
    )


def test_same_file_by_another_name_is_the_same_dataset(tmp_path, monkeypatch):
  write_fasta(tmp_path / "in.fasta", [("a", ["MKT"])])
  monkeypatch.chdir(tmp_path)
  prepare.prepare(["in.fasta"], "out", SMALL, progress=False)
  again = prepare.prepare(
      [str(tmp_path / "in.fasta")],
      str(tmp_path / "out"),
      SMALL,
      progress=False,
  )
  assert again["written_total"] == 1


def test_overwrite_removes_the_manifest_first(tmp_path, monkeypatch):
  write_fasta(tmp_path / "a.fasta", [("a", ["MKT"]), ("b", ["GGS"])])
  out = str(tmp_path / "out")
  prepare.prepare([str(tmp_path / "a.fasta")], out, SMALL, progress=False)
  real = tf.io.gfile.rmtree

  def killed_on_a_split(path):
    if os.path.basename(path) in prepared_lib.SPLITS:
      raise KeyboardInterrupt("killed while deleting")
    real(path)

  monkeypatch.setattr(tf.io.gfile, "rmtree", killed_on_a_split)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare(
        [str(tmp_path / "a.fasta")], out, SMALL, overwrite=True, progress=False
    )
  assert not os.path.exists(os.path.join(out, prepared_lib.MANIFEST))


def test_beam_options_are_checked(tmp_path):
  pytest.importorskip("apache_beam")
  path = write_fasta(tmp_path / "in.fasta", [("a", ["MKT"])])
  with pytest.raises(ValueError, match="validation_fracton"):
    prepare.prepare(
        [path],
        str(tmp_path / "a"),
        SMALL,
        beam_options=["--validation_fracton=0.5"],
    )
  with pytest.raises(ValueError, match="use a gs:// directory"):
    prepare.prepare(
        [path],
        str(tmp_path / "b"),
        SMALL,
        beam_options=["--runner=DataflowRunner", "--project=p"],
    )
