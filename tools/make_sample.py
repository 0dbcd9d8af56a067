"""Writes the bundled sample: real UniProtKB proteins, split for training.

The source is the example database of MMseqs2 (20,000 UniProtKB entries,
3,183 from Swiss-Prot and 16,817 from TrEMBL), as the Debian package
`mmseqs2-examples` ships it (`usr/share/doc/mmseqs2/example-data/DB.fasta.gz`;
upstream `soedinglab/MMseqs2`, `examples/DB.fasta`). The sequences are
UniProt's, under CC BY 4.0 (ankh3_tasks/data/README.md).

The sample keeps proteins of 30 to 1,000 residues, one copy of each
sequence, and draws them with a fixed seed. The validation proteins are
drawn first; a training protein that shares any stretch of `SHARED_KMER`
residues with one of them is left out, so no held-out protein (nor a close
fragment of it) is seen in training. Output is byte-identical across runs:

  python tools/make_sample.py --source DB.fasta.gz
  # rewrites ankh3_tasks/data/sample_{train,validation}.fasta.gz and
  # examples/proteins.fasta (the first validation proteins)
"""

import argparse
import gzip
import hashlib
import os
from collections.abc import Iterable, Sequence

import numpy as np

from ankh3_tasks import sources

SPLITS = {"validation": 300, "train": 3000}
MIN_LENGTH, MAX_LENGTH = 30, 1000
SHARED_KMER = 15
SEED = 20261205
# The source file the sample was made from, to check it is the same one.
SOURCE_SHA256 = (
    "92a65aa435f5d3e0f33eb47d87910fe7fc6033a28bf4ed1367094377d791d567"
)
_REPO = os.path.join(os.path.dirname(__file__), "..")
OUT_DIR = os.path.join(_REPO, "ankh3_tasks", "data")
EXAMPLES = os.path.join(_REPO, "examples", "proteins.fasta")
NUM_EXAMPLES = 8


def _kmers(sequence: str, k: int) -> Iterable[str]:
  return (sequence[i : i + k] for i in range(len(sequence) - k + 1))


def draw(
    records: Sequence[tuple[str, str]], rng: np.random.Generator
) -> dict[str, list[tuple[str, str]]]:
  """Splits (id, sequence) records into disjoint validation and train sets.

  Args:
    records: unique sequences, in file order.
    rng: the draw's generator.

  Returns:
    {split: [(id, sequence), ...]} with `SPLITS` sizes.

  Raises:
    ValueError: if the source has too few proteins for the sizes.
  """
  order = rng.permutation(len(records))
  want_validation = SPLITS["validation"]
  validation = [records[i] for i in order[:want_validation]]
  held_out = set()
  for _, sequence in validation:
    held_out.update(_kmers(sequence, SHARED_KMER))
  train = []
  for i in order[want_validation:]:
    if len(train) == SPLITS["train"]:
      break
    if not any(k in held_out for k in _kmers(records[i][1], SHARED_KMER)):
      train.append(records[i])
  if len(validation) < want_validation or len(train) < SPLITS["train"]:
    raise ValueError(
        f"the source gives {len(validation)} validation and {len(train)} "
        f"training proteins; the sample needs {want_validation} and "
        f"{SPLITS['train']}."
    )
  return {"validation": validation, "train": train}


def read_source(path: str) -> list[tuple[str, str]]:
  """The source's proteins of `MIN_LENGTH`..`MAX_LENGTH`, each sequence once."""
  stats = sources.ReadStats(os.path.basename(path))
  seen = set()
  records = []
  for record_id, sequence in sources.read_fasta(path, stats):
    if MIN_LENGTH <= len(sequence) <= MAX_LENGTH and sequence not in seen:
      seen.add(sequence)
      records.append((record_id, sequence))
  print(stats.summary())
  return records


def _fasta(records: Sequence[tuple[str, str]]) -> bytes:
  lines = []
  for record_id, sequence in records:
    lines.append(f">{record_id}")
    lines += [sequence[i : i + 60] for i in range(0, len(sequence), 60)]
  return ("\n".join(lines) + "\n").encode()


def write_fasta(path: str, records: Sequence[tuple[str, str]]) -> None:
  # mtime=0 keeps the file byte-identical across runs.
  with gzip.GzipFile(path, "wb", mtime=0) as raw:
    raw.write(_fasta(records))


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
      "--source", required=True, help="MMseqs2's example DB.fasta(.gz)."
  )
  parser.add_argument("--output_dir", default=OUT_DIR)
  parser.add_argument("--examples", default=EXAMPLES)
  args = parser.parse_args(argv)
  with open(args.source, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  if digest != SOURCE_SHA256:
    print(
        f"warning: {args.source} has SHA-256 {digest}, not the sample's "
        f"source {SOURCE_SHA256}; the sample will differ."
    )
  splits = draw(read_source(args.source), np.random.default_rng(SEED))
  for split, records in splits.items():
    path = os.path.join(args.output_dir, f"sample_{split}.fasta.gz")
    write_fasta(path, records)
    residues = sum(len(s) for _, s in records)
    print(
        f"wrote {len(records)} proteins ({residues} residues) to "
        f"{os.path.relpath(path)}"
    )
  with open(args.examples, "wb") as f:
    f.write(_fasta(splits["validation"][:NUM_EXAMPLES]))
  print(
      f"wrote {NUM_EXAMPLES} validation proteins to "
      f"{os.path.relpath(args.examples)}"
  )


if __name__ == "__main__":
  main()
