r"""The downstream benchmark end to end on real public files, subsampled.

  python benchmarks/downstream_real_data.py --data_dir=DATA \
    --checkpoint=/tmp/ankh3_tiny/checkpoint_500 \
    --gin_file=gin/models/ankh3_tiny.gin --output_dir=/tmp/ankh3_real_bench

A check that the whole path (public files as published -> readers ->
embeddings -> ConvBERT heads -> table) works on real proteins, with the
model's embeddings beside the one-hot baseline; it says nothing about
Ankh3's quality, which needs a Large or XL model and the full data
(docs/downstream.md). `--data_dir` holds the files as their publishers
distribute them, under these names:

  flip/gb1_splits.zip: J-SNACKKB/FLIP
    @ 62cace8735f5610e2743cf06ce0f944b37fffaa6 : splits/gb1/splits.zip
  ssp/CB513_HHblits.csv: omarperacha/ps4-dataset
    @ e1820264e0762fb44d496f53e08cdcb7ddf92598
    : ps4_data/data/cb513/CB513_HHblits.csv
  ssp/casp12_dataset.csv: 4gungnand/Af3-cb513
    @ 1419fff2b8340f5af2ff09f7611071aeb90a8fbd
    : Data/Original/casp12_dataset.csv
  fluorescence/tape_fluorescence_valid.csv: nadavbra/protein_bert
    @ 83198c99f18147c126f16f504e53e2201a6256e4
    : protein_benchmarks/fluorescence.valid.csv
  contacts/6uf2.dssp, contacts/7k7w.dssp: Eryk96/CASP-Datasets
    @ 23ac712d8912f895b6b7ad5c0a6d406345cad4e3 : data/casp14/dssp/

The script writes, under `--output_dir/data/`, a subsample of each file in
its published layout (rows copied verbatim, the header kept) and a
`layout.json` naming them (`--files` of the benchmark), then runs
`python -m ankh3_tasks.downstream` on them with the one-hot baseline beside
the model, and writes `summary.md`: per row the model, the baseline, their
difference and, for scale, published numbers of the same task and metric
(`ankh3_tasks/downstream/published.json`; their test sets are the full
published ones, not these subsamples).

Tasks, splits and subsampling (defaults; every number is a flag):

* GB1: FLIP `three_vs_rest` (CSV): `--gb1` train / valid / test rows drawn
  from FLIP's train (validation empty), validation (True) and test rows.
* SSP3, SSP8: trained on CB513 proteins (NetSurfP-2.0 layout, masked by
  `disorder`) of at most `--max_train_length` residues, `--ssp_train` of
  them drawn; 5% of those held out for validation by a hash of the sequence
  (the benchmark's rule); tested on all 21 CASP12 proteins (`seq,sst3,sst8`).
* Fluorescence: TAPE's validation split (5,362 GFP variants) cut in two by
  the SHA-256 of the sequence: the first 8 bytes as a fraction below 0.5
  train side, the rest test side; `--fluorescence` train / valid / test rows
  drawn from the train side (train, valid) and the test side (test).
* Contacts: DSSP C-alpha contacts; trained on 6uf2 (its one chain is also
  the validation set: there is no third protein), tested on 7k7w.

Draws use `numpy.random.default_rng(0)` over the rows in file order, so the
same files give the same subsample. The heads train with the paper's
settings except `--epochs` and `--warmup_steps` (the paper's 1,000 warm-up
steps would outlast these small training sets).
"""

import argparse
import hashlib
import shutil
import json
import os
import sys
import time
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ankh3_tasks.downstream import __main__ as cli
from ankh3_tasks.downstream import formats
from ankh3_tasks.downstream import report

# Files under --data_dir (see the module docstring for their sources).
GB1_ZIP = "flip/gb1_splits.zip"
GB1_MEMBER = "splits/three_vs_rest.csv"
CB513 = "ssp/CB513_HHblits.csv"
CASP12 = "ssp/casp12_dataset.csv"
FLUORESCENCE = "fluorescence/tape_fluorescence_valid.csv"
CONTACT_TRAIN = "contacts/6uf2.dssp"
CONTACT_TEST = "contacts/7k7w.dssp"


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(x) for x in text.split(",") if x.strip())


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--checkpoint", help="embed with this checkpoint")
  parser.add_argument("--gin_file", help="its model gin file")
  parser.add_argument(
      "--embeddings",
      action="append",
      default=[],
      help="LABEL=PATH instead of --checkpoint (as the benchmark takes it)",
  )
  parser.add_argument("--model_name", default="Ankh3-tiny (ours)")
  parser.add_argument("--task_tokens", default="NLU")
  parser.add_argument(
      "--gb1", type=_ints, default=(300, 60, 300), help="train,valid,test"
  )
  parser.add_argument(
      "--fluorescence",
      type=_ints,
      default=(300, 60, 300),
      help="train,valid,test",
  )
  parser.add_argument("--ssp_train", type=int, default=300)
  parser.add_argument("--max_train_length", type=int, default=400)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--warmup_steps", type=int, default=10)
  parser.add_argument("--seeds", default="7,0,42")
  parser.add_argument("--no_progress", action="store_true")
  return parser.parse_args(argv)


def _draw(indices: Sequence[int], n: int, rng: np.random.Generator):
  """`n` of `indices` (all if fewer), in their order."""
  if n >= len(indices):
    return list(indices)
  return sorted(rng.choice(indices, size=n, replace=False).tolist())


def _write(path: str, header: str, lines: Sequence[str]) -> int:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(header + "".join(lines))
  return len(lines)


def _lines(text: str) -> tuple[str, list[str]]:
  lines = text.splitlines(keepends=True)
  return lines[0], lines[1:]


def _fraction(sequence: str) -> float:
  digest = hashlib.sha256(sequence.encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def prepare(args: argparse.Namespace) -> dict[str, Any]:
  """Writes the subsampled files and layout.json; returns what was drawn."""
  rng = np.random.default_rng(0)
  src = lambda name: os.path.join(args.data_dir, name)
  out = os.path.join(args.output_dir, "data")
  drawn = {}

  # GB1: FLIP's three_vs_rest CSV, from the split archive.
  with zipfile.ZipFile(src(GB1_ZIP)) as archive:
    text = archive.read(GB1_MEMBER).decode("utf-8")
  header, rows = _lines(text)
  kinds = [row.rstrip("\r\n").split(",")[2:] for row in rows]
  by_split = {
      "train": [i for i, k in enumerate(kinds) if k == ["train", ""]],
      "valid": [i for i, k in enumerate(kinds) if k == ["train", "True"]],
      "test": [i for i, k in enumerate(kinds) if k[0] == "test"],
  }
  keep = []
  for (split, indices), n in zip(by_split.items(), args.gb1):
    chosen = _draw(indices, n, rng)
    drawn[f"gb1 {split}"] = f"{len(chosen)} of {len(indices)}"
    keep += chosen
  _write(
      os.path.join(out, "gb1/three_vs_rest.csv"),
      header,
      [rows[i] for i in sorted(keep)],
  )

  # SSP: CB513 proteins to train on, all of CASP12 to test on.
  with open(src(CB513), encoding="utf-8") as f:
    header, rows = _lines(f.read())
  lengths = [
      len(e.sequence) for e in formats.read_secondary_structure(src(CB513))
  ]
  short = [i for i, n in enumerate(lengths) if n <= args.max_train_length]
  chosen = _draw(short, args.ssp_train, rng)
  drawn["ssp train (CB513)"] = (
      f"{len(chosen)} of {len(short)} proteins of at most "
      f"{args.max_train_length} residues ({len(rows)} in all)"
  )
  _write(
      os.path.join(out, "ssp/cb513_sample.csv"),
      header,
      [rows[i] for i in chosen],
  )
  with open(src(CASP12), encoding="utf-8") as f:
    header, rows = _lines(f.read())
  drawn["ssp test (CASP12)"] = f"all {len(rows)}"
  _write(os.path.join(out, "ssp/casp12_dataset.csv"), header, rows)

  # Fluorescence: TAPE's validation split cut in two by a hash.
  with open(src(FLUORESCENCE), encoding="utf-8") as f:
    header, rows = _lines(f.read())
  sides = [_fraction(row.split(",")[0]) < 0.5 for row in rows]
  train_side = [i for i, side in enumerate(sides) if side]
  test_side = [i for i, side in enumerate(sides) if not side]
  n_train, n_valid, n_test = args.fluorescence
  train_valid = _draw(train_side, n_train + n_valid, rng)
  order = rng.permutation(len(train_valid))
  valid = sorted(train_valid[i] for i in order[:n_valid])
  train = sorted(train_valid[i] for i in order[n_valid:])
  test = _draw(test_side, n_test, rng)
  drawn["fluorescence halves"] = (
      f"train side {len(train_side)}, test side {len(test_side)} of {len(rows)}"
  )
  drawn["fluorescence train / valid / test"] = (
      f"{len(train)} / {len(valid)} / {len(test)}"
  )
  for name, indices in (("train", train), ("valid", valid), ("test", test)):
    _write(
        os.path.join(out, f"fluorescence/tape_valid_{name}.csv"),
        header,
        [rows[i] for i in indices],
    )

  # Contacts: the two DSSP files, whole.
  for name in (CONTACT_TRAIN, CONTACT_TEST):
    os.makedirs(os.path.dirname(os.path.join(out, name)), exist_ok=True)
    shutil.copyfile(src(name), os.path.join(out, name))
  drawn["contact train / valid / test"] = "6uf2 / 6uf2 / 7k7w"

  layout = {
      "gb1": {
          "train": "gb1/three_vs_rest.csv",
          "valid": "gb1/three_vs_rest.csv",
          "test": {"three_vs_rest": "gb1/three_vs_rest.csv"},
      },
      "fluorescence": {
          "train": "fluorescence/tape_valid_train.csv",
          "valid": "fluorescence/tape_valid_valid.csv",
          "test": {"tape_valid_half": "fluorescence/tape_valid_test.csv"},
      },
      "contact": {
          "train": CONTACT_TRAIN,
          "valid": CONTACT_TRAIN,
          "test": {"casp14": CONTACT_TEST},
      },
  }
  for name in ("ssp3", "ssp8"):
    layout[name] = {
        "train": "ssp/cb513_sample.csv",
        "valid": None,
        "test": {"casp12": "ssp/casp12_dataset.csv"},
    }
  with open(os.path.join(out, "layout.json"), "w") as f:
    json.dump(layout, f, indent=1)
  with open(os.path.join(out, "drawn.json"), "w") as f:
    json.dump(drawn, f, indent=1)
  return drawn


# Published models shown for scale: Ankh3 with [NLU]; Ankh-Large for
# contacts, where no Ankh3 number was found (published.json).
_SCALE_MODELS = ("Ankh3-Large", "Ankh3-XL")
_SCALE_CONTACT_MODELS = ("Ankh-Large",)


def _for_scale(published: Sequence[dict], row: dict) -> str:
  """Published numbers of the row's task and metric, their test set named.

  The same test set only, but for fluorescence: ours is half of TAPE's
  validation split, the published numbers are on TAPE's test set.
  """
  models = _SCALE_CONTACT_MODELS if row["task"] == "contact" else _SCALE_MODELS
  cells = []
  for e in published:
    if (
        e["task"] != row["task"]
        or e["metric"] != row["metric"]
        or e["model"] not in models
        or e.get("task_token") not in (None, "NLU")
    ):
      continue
    if row["task"] != "fluorescence" and e["test_set"] != row["test_set"]:
      continue
    token = f" [{e['task_token']}]" if e.get("task_token") else ""
    cells.append(f"{e['model']}{token} {e['value']:.2f} ({e['test_set']})")
  return "; ".join(cells)


def summary(results: dict[str, Any], drawn: dict[str, Any]) -> str:
  """Model, baseline, difference, and published numbers for scale."""
  table = results["table"]
  columns = table["columns"]
  ours = [c for c in columns if c.startswith(f"{results['model_name']} [")]
  ours = [c for c in ours if not c.endswith(f" − {report.ONE_HOT}")]
  published = report.load_published()["results"]
  lines = [
      "| task | test set (proteins) | metric | "
      + " | ".join(ours)
      + f" | {report.ONE_HOT_COLUMN} | "
      + " | ".join(f"{c} − one-hot" for c in ours)
      + " | published, for scale (model, test set) |",
      "|---|---|---|" + "---|" * (2 * len(ours) + 2),
  ]
  sizes = {}
  for by_task in results["results"].values():
    for task, result in by_task.items():
      for key, n in result["sizes"].items():
        sizes[(task, key)] = n
  for row in table["rows"]:
    cell = lambda c, row=row: report.format_cell(row.get(c))
    n = sizes.get((row["task"], f"test/{row['test_set']}"), "?")
    lines.append(
        f"| {row['task']} | {row['test_set']} ({n}) | {row['metric']} | "
        + " | ".join(cell(c) for c in ours)
        + f" | {cell(report.ONE_HOT_COLUMN)} | "
        + " | ".join(cell(f"{c} − {report.ONE_HOT}") for c in ours)
        + f" | {_for_scale(published, row)} |"
    )
  lines.append("")
  lines.append("Subsample: " + "; ".join(f"{k}: {v}" for k, v in drawn.items()))
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
  args = _parse_args(argv)
  begin = time.time()
  drawn = prepare(args)
  print(json.dumps(drawn, indent=1))
  data = os.path.join(args.output_dir, "data")
  flags = [
      "--tasks=all",
      f"--data_dir={data}",
      f"--files={os.path.join(data, 'layout.json')}",
      f"--output_dir={args.output_dir}",
      f"--model_name={args.model_name}",
      f"--epochs={args.epochs}",
      f"--warmup_steps={args.warmup_steps}",
      f"--seeds={args.seeds}",
  ]
  if args.checkpoint:
    flags += [
        f"--checkpoint={args.checkpoint}",
        f"--gin_file={args.gin_file}",
        f"--task_tokens={args.task_tokens}",
    ]
  flags += [f"--embeddings={e}" for e in args.embeddings]
  if args.no_progress:
    flags.append("--no_progress")
  status = cli.main(flags)
  with open(os.path.join(args.output_dir, "results.json")) as f:
    results = json.load(f)
  text = summary(results, drawn)
  text += f"\nWall time: {time.time() - begin:.0f} s.\n"
  with open(os.path.join(args.output_dir, "summary.md"), "w") as f:
    f.write(text)
  print(text)
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
