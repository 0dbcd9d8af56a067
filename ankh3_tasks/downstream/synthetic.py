r"""Writes small synthetic benchmark data in the public layouts, to try things.

  python -m ankh3_tasks.downstream.synthetic --output_dir=/tmp/ankh3_bench_data

writes every file `datasets.DEFAULT_FILES` names, small, in the public
formats (NetSurfP CSV, TAPE CSV, FLIP split file, ProteinNet text, JSON
lines), so `python -m ankh3_tasks.downstream --data_dir=...` runs end to end
without downloads. Labels are known functions of the sequence:

  ssp3 / ssp8    each residue's state follows its amino acid (`state3`,
                 `state8`)
  fluorescence   the share of hydrophobic residues (AILMFVW), plus noise
  gb1            the same share, on variants of one parent protein at four
                 sites (as GB1's V39, D40, G41, V54)
  contact        C-alpha atoms of a random walk of 3.8 Angstrom steps,
                 seeded by the sequence (for smoke runs: not learnable)

Random sequences, not biology: a head that learns them shows the harness
works, nothing about a model.
"""

import argparse
import csv
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Optional

import numpy as np

from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import formats

AMINO = "ACDEFGHIKLMNPQRSTVWY"
HELIX, STRAND = frozenset("AELMQKRH"), frozenset("VIYFWT")
HYDROPHOBIC = frozenset("AILMFVW")
# Sizes: proteins per split.
SIZES = {"train": 120, "valid": 24, "test": 48}


def state3(residue: str) -> str:
  """H, E or C by amino acid: `A` -> `H`, `V` -> `E`, `G` -> `C`."""
  return "H" if residue in HELIX else "E" if residue in STRAND else "C"


def state8(residue: str) -> str:
  """One of `GHIBESTC` by amino acid (its index in `AMINO` modulo 8)."""
  return formats.DSSP8[AMINO.index(residue) % 8]


def _protein(rng: np.random.Generator, low: int, high: int) -> str:
  return "".join(rng.choice(list(AMINO), int(rng.integers(low, high + 1))))


def _hydrophobic_protein(rng: np.random.Generator) -> str:
  share = rng.uniform(0.1, 0.9)
  polar = [a for a in AMINO if a not in HYDROPHOBIC]
  return "".join(
      rng.choice(sorted(HYDROPHOBIC))
      if rng.random() < share
      else rng.choice(polar)
      for _ in range(int(rng.integers(20, 50)))
  )


def _share(sequence: str) -> float:
  return float(np.mean([r in HYDROPHOBIC for r in sequence]))


def _csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def _ss_rows(rng: np.random.Generator, n: int) -> list[list[str]]:
  rows = []
  for _ in range(n):
    sequence = _protein(rng, 20, 60)
    rows.append([
        sequence,
        "".join(state3(r) for r in sequence),
        "".join(state8(r) for r in sequence),
        " ".join("1.0" for _ in sequence),
    ])
  return rows


def _ca_trace(sequence: str) -> np.ndarray:
  """A random walk of 3.8 Angstrom steps, seeded by the sequence."""
  seed = int.from_bytes(hashlib.sha256(sequence.encode()).digest()[:8], "big")
  rng = np.random.default_rng(seed)
  steps = rng.normal(size=(len(sequence), 3))
  steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
  return np.cumsum(steps, axis=0)


def _proteinnet(path: str, rng: np.random.Generator, n: int, name: str) -> None:
  """ProteinNet text records; coordinates in picometres, N = CA = C."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for i in range(n):
      sequence = _protein(rng, 30, 80)
      ca = _ca_trace(sequence) * 100.0  # Angstrom -> picometres.
      atoms = np.repeat(ca, 3, axis=0)  # N, CA, C per residue.
      mask = "".join("-" if rng.random() < 0.05 else "+" for _ in sequence)
      f.write(f"[ID]\n{name}_{i}\n[PRIMARY]\n{sequence}\n[TERTIARY]\n")
      for axis in range(3):
        f.write("\t".join(f"{v:.1f}" for v in atoms[:, axis]) + "\n")
      f.write(f"[MASK]\n{mask}\n\n")


def write(output_dir: str, seed: int = 0) -> dict[str, str]:
  """Writes every file of `datasets.DEFAULT_FILES`; returns role -> path."""
  rng = np.random.default_rng(seed)
  written = {}

  def path(relative: str) -> str:
    full = os.path.join(output_dir, relative)
    written[relative] = full
    return full

  ss_header = ["input", "dssp3", "dssp8", "disorder"]
  ss = datasets.DEFAULT_FILES["ssp3"]
  _csv(path(ss["train"]), ss_header, _ss_rows(rng, SIZES["train"]))
  for relative in ss["test"].values():
    _csv(path(relative), ss_header, _ss_rows(rng, SIZES["test"]))

  fluorescence = datasets.DEFAULT_FILES["fluorescence"]
  for split in ("train", "valid"):
    rows = []
    for _ in range(SIZES[split]):
      sequence = _hydrophobic_protein(rng)
      rows.append([sequence, f"{_share(sequence) + rng.normal(0, 0.01):.4f}"])
    _csv(path(fluorescence[split]), ["primary", "log_fluorescence"], rows)
  rows = []
  for _ in range(SIZES["test"]):
    sequence = _hydrophobic_protein(rng)
    rows.append([sequence, f"{_share(sequence) + rng.normal(0, 0.01):.4f}"])
  _csv(
      path(fluorescence["test"]["tape_fluorescence"]),
      ["primary", "log_fluorescence"],
      rows,
  )

  parent = list(_protein(rng, 56, 56))
  rows = []
  for split, n in SIZES.items():
    for _ in range(n):
      variant = list(parent)
      for site in (38, 39, 40, 53):
        variant[site] = rng.choice(list(AMINO))
      sequence = "".join(variant)
      kind = "test" if split == "test" else "train"
      validation = "True" if split == "valid" else "False"
      rows.append([sequence, f"{_share(sequence):.4f}", kind, validation])
  _csv(
      path(datasets.DEFAULT_FILES["gb1"]["train"]),
      ["sequence", "target", "set", "validation"],
      rows,
  )

  contact = datasets.DEFAULT_FILES["contact"]
  _proteinnet(path(contact["train"]), rng, SIZES["train"], "train")
  _proteinnet(path(contact["valid"]), rng, SIZES["valid"], "valid")
  _proteinnet(path(contact["test"]["proteinnet"]), rng, SIZES["test"], "test")
  with open(path(contact["test"]["casp14"]), "w") as f:
    for i in range(SIZES["test"]):
      sequence = _protein(rng, 30, 80)
      ca = _ca_trace(sequence).round(3).tolist()
      f.write(json.dumps({"id": f"T{i}", "sequence": sequence, "ca": ca}))
      f.write("\n")
  return written


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.downstream.synthetic",
      description="Writes small synthetic benchmark data.",
  )
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  written = write(args.output_dir, args.seed)
  print(f"wrote {len(written)} files under {args.output_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
