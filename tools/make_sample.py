"""Writes the bundled sample: synthetic proteins of realistic make-up.

The proteins are drawn, not real: each starts with M, its residues follow the
amino-acid composition of UniProtKB/Swiss-Prot (release statistics, in percent
below) with rare X, and its length is log-normal (median 280) clipped to
30..1500, close to UniRef50's spread. The output is fixed by the seed.

  python tools/make_sample.py   # rewrites ankh3_tasks/data/sample_*.fasta.gz
"""

import gzip
import os

import numpy as np

# UniProtKB/Swiss-Prot amino-acid composition, percent.
COMPOSITION = {
    "A": 8.25,
    "R": 5.53,
    "N": 4.06,
    "D": 5.45,
    "C": 1.37,
    "Q": 3.93,
    "E": 6.75,
    "G": 7.07,
    "H": 2.27,
    "I": 5.96,
    "L": 9.66,
    "K": 5.84,
    "M": 2.42,
    "F": 3.86,
    "P": 4.70,
    "S": 6.56,
    "T": 5.34,
    "W": 1.08,
    "Y": 2.92,
    "V": 6.87,
    "X": 0.01,
}
SPLITS = {"train": 3000, "validation": 300}
MIN_LENGTH, MAX_LENGTH = 30, 1500
OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "ankh3_tasks", "data")


def proteins(rng: np.random.Generator, count: int) -> list[str]:
  letters = np.array(list(COMPOSITION))
  p = np.array(list(COMPOSITION.values()))
  p /= p.sum()
  lengths = np.clip(
      np.round(rng.lognormal(np.log(280), 0.65, count)), MIN_LENGTH, MAX_LENGTH
  ).astype(int)
  return ["M" + "".join(rng.choice(letters, n - 1, p=p)) for n in lengths]


def main() -> None:
  rng = np.random.default_rng(20250101)
  number = 0
  for split, count in SPLITS.items():
    path = os.path.join(OUT_DIR, f"sample_{split}.fasta.gz")
    # mtime=0 keeps the file byte-identical across runs.
    with gzip.GzipFile(path, "wb", mtime=0) as raw:
      for sequence in proteins(rng, count):
        number += 1
        name = f"S{number:05d}"
        lines = [
            f">UniRef50_{name} Synthetic protein n=1 Tax=none RepID={name}"
        ]
        lines += [sequence[i : i + 60] for i in range(0, len(sequence), 60)]
        raw.write(("\n".join(lines) + "\n").encode())
    print(f"wrote {count} proteins to {os.path.relpath(path)}")


if __name__ == "__main__":
  main()
