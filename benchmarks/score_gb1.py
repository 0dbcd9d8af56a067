r"""Zero-shot GB1 fitness from masked marginals: `ankh3_tasks.score` on FLIP.

  python benchmarks/score_gb1.py --checkpoint=MODEL_DIR/checkpoint_300 \
    --gin_file=gin/models/ankh3_tiny.gin --flip_zip=gb1_splits.zip \
    [--split=one_vs_rest] [--keep=DIR] [--score_flag=--max_length=128]

FLIP's GB1 landscape (Dallago et al. 2021, from Wu et al. 2016; the
`gb1_splits.zip` of github.com/J-SNACKKB/FLIP, AFL-3.0) holds 8,733 variants
of a 265-residue GB1 construct at four sites (V39, D40, G41, V54) with a
measured fitness (`target`). Every split file lists all of them, with its
own `set` (train / test). This script writes the wild type as FASTA and the
variants as a CSV (`mutant` such as `V39A:D40G`, `target`, `set`), runs
`python -m ankh3_tasks.score --variants` on them and prints Spearman's rho
between `masked_marginal` and `target`, over all variants and over the
split's test set. No training: the model's zero-shot preference only.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import zipfile

from scipy import stats

from ankh3_tasks.downstream import formats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The four mutated sites of Wu et al. (2016), 1-based in FLIP's construct,
# and their wild-type residues.
SITES = {39: "V", 40: "D", 41: "G", 54: "V"}


def read_split(flip_zip: str, split: str, directory: str) -> list[dict]:
  """Every row of a FLIP GB1 split, read by the benchmark's FLIP reader."""
  with zipfile.ZipFile(flip_zip) as z:
    name = next(n for n in z.namelist() if n.endswith(f"/{split}.csv"))
    path = z.extract(name, directory)
  return [
      {"sequence": ex.sequence, "target": float(ex.label), "set": part}
      for part in ("train", "valid", "test")
      for ex in formats.read_flip(path, part)
  ]


def wild_type(rows: list[dict]) -> str:
  """The sequence with the wild-type residue at every site."""
  for row in rows:
    s = row["sequence"]
    if all(s[p - 1] == a for p, a in SITES.items()):
      return s
  raise ValueError("No wild-type row (V39 D40 G41 V54) in the split.")


def mutant(wt: str, sequence: str) -> str:
  """`V39A:D40G`: the substitutions that make `sequence` from `wt`."""
  if len(sequence) != len(wt):
    raise ValueError(f"Length {len(sequence)}, not {len(wt)}.")
  return ":".join(
      f"{a}{i + 1}{b}" for i, (a, b) in enumerate(zip(wt, sequence)) if a != b
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--gin_file", required=True)
  parser.add_argument("--flip_zip", required=True, help="gb1_splits.zip")
  parser.add_argument("--split", default="one_vs_rest")
  parser.add_argument("--keep", help="directory to keep the files in")
  parser.add_argument(
      "--score_flag",
      action="append",
      default=[],
      help="extra flag for ankh3_tasks.score (repeatable)",
  )
  args = parser.parse_args()
  directory = args.keep or tempfile.mkdtemp()
  os.makedirs(directory, exist_ok=True)
  rows = read_split(args.flip_zip, args.split, directory)
  wt = wild_type(rows)
  fasta = os.path.join(directory, "gb1_wild_type.fasta")
  variants = os.path.join(directory, "gb1_variants.csv")
  out = os.path.join(directory, "gb1_scores.tsv")
  with open(fasta, "w") as f:
    f.write(f">GB1\n{wt}\n")
  with open(variants, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["mutant", "target", "set"])
    for row in rows:
      writer.writerow([mutant(wt, row["sequence"]), row["target"], row["set"]])
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "ankh3_tasks.score",
          f"--checkpoint={args.checkpoint}",
          f"--gin_file={args.gin_file}",
          f"--input={fasta}",
          f"--output={os.path.join(directory, 'gb1_wild_type.tsv')}",
          f"--variants={variants}",
          f"--variants_output={out}",
          *args.score_flag,
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      check=False,
  )
  if run.returncode:
    sys.exit(run.stderr[-3000:])
  print(run.stdout.strip())
  with open(out) as f:
    scored = list(csv.DictReader(f, delimiter="\t"))
  for name, subset in (
      ("all variants", scored),
      (f"{args.split} test set", [r for r in scored if r["set"] == "test"]),
  ):
    rho, p = stats.spearmanr(
        [float(r["masked_marginal"]) for r in subset],
        [float(r["target"]) for r in subset],
    )
    print(f"{name}: n={len(subset)}, Spearman rho={rho:.4f} (p={p:.2g})")


if __name__ == "__main__":
  main()
