"""The downstream benchmark's tasks, and where their files lie.

`TASKS` says what each task predicts; `DEFAULT_FILES` where its public files
lie under a data directory; `load_task` reads a task's train, valid and test
splits with the readers of `formats`, picking the reader by the file's
name (and a CSV's layout by its header):

* `ssp3`, `ssp8`: `.csv` / `.tsv` NetSurfP-2.0 or `seq,sst3,sst8`;
  `.fasta` FLIP's `sampled.fasta` (3 states); `.dssp` DSSP states;
* `fluorescence`: `.csv` / `.tsv` `primary,log_fluorescence` or `seq,label`;
  `.json` / `.jsonl` TAPE's JSON;
* `gb1`: FLIP's split CSV, or its FASTA (`.fasta`);
* `contact`: `.json` / `.jsonl` C-alpha JSON; `.dssp` DSSP C-alpha; any
  other name ProteinNet text.
"""

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import tensorflow as tf

from ankh3_tasks import sources
from ankh3_tasks.downstream import formats
from ankh3_tasks.downstream import kinds


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a benchmark task predicts; its kind says how it is scored.

  Attributes:
    name: key in `TASKS`.
    kind: a key of `kinds.KINDS`: `residue` (a class per residue), `protein`
      (a value per protein) or `contact` (a logit per residue pair).
    num_outputs: classes per residue, or 1.
  """

  name: str
  kind: str
  num_outputs: int

  def __post_init__(self):
    kinds.get(self.kind)  # An unknown kind fails here, naming the kinds.

  @property
  def metric(self) -> str:
    """The kind's name for `metrics.compute` (`kinds.TaskKind.metric`)."""
    return kinds.get(self.kind).metric


TASKS: dict[str, TaskSpec] = {
    "ssp3": TaskSpec("ssp3", "residue", 3),
    "ssp8": TaskSpec("ssp8", "residue", 8),
    "fluorescence": TaskSpec("fluorescence", "protein", 1),
    "gb1": TaskSpec("gb1", "protein", 1),
    "contact": TaskSpec("contact", "contact", 1),
}

# The NetSurfP-2.0 files as the Ankh authors publish them (Hugging Face
# `proteinea/secondary_structure_prediction`). There is no validation file:
# `load_task` holds out about `SSP_VALID_FRACTION` of the training proteins.
_SSP_FILES = {
    "train": "secondary_structure/training_hhblits.csv",
    "valid": None,
    "test": {
        "casp12": "secondary_structure/CASP12.csv",
        "casp14": "secondary_structure/CASP14.csv",
    },
}
DEFAULT_FILES: dict[str, dict[str, Any]] = {
    "ssp3": _SSP_FILES,
    "ssp8": _SSP_FILES,
    # TAPE's splits (Hugging Face `proteinea/fluorescence`).
    "fluorescence": {
        "train": "fluorescence/fluorescence_train.csv",
        "valid": "fluorescence/fluorescence_valid.csv",
        "test": {"tape_fluorescence": "fluorescence/fluorescence_test.csv"},
    },
    # FLIP's `three_vs_rest` split file (splits.zip) holds all three splits.
    "gb1": {
        "train": "gb1/three_vs_rest.csv",
        "valid": "gb1/three_vs_rest.csv",
        "test": {"three_vs_rest": "gb1/three_vs_rest.csv"},
    },
    # ProteinNet text files (CASP12 release: training_30, validation,
    # testing) and CASP14 targets converted to JSON lines
    # (`read_contact_json`).
    "contact": {
        "train": "contact/training_30",
        "valid": "contact/validation",
        "test": {
            "proteinnet": "contact/testing",
            "casp14": "contact/casp14.jsonl",
        },
    },
}
# NetSurfP-2.0 ships no validation split (TAPE drew one at random); this
# fraction of the training proteins, chosen by a hash of the sequence, is held
# out instead.
SSP_VALID_FRACTION = 0.05

# --------------------------------------------------------------- tasks


def _hold_out(
    examples: Sequence[formats.Example], fraction: float
) -> tuple[list[formats.Example], list[formats.Example]]:
  """Splits off the proteins whose sequence hashes below `fraction`.

  The choice depends on the sequence alone: it does not change with the file
  order, and copies of one sequence stay on one side.
  """
  kept, held = [], []
  for example in examples:
    digest = hashlib.sha256(example.sequence.encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2.0**64
    (held if draw < fraction else kept).append(example)
  return kept, held


def _reader(name: str, options: Mapping[str, Any]) -> Callable[..., Any]:
  """Returns `read(path, split) -> list[formats.Example]` for a task.

  The file's name picks the reader (see the table above); `options` go to
  the reader of CSV (SSP, fluorescence), FLIP or ProteinNet files.
  """
  kind = lambda path: sources.strip_gz(path).rsplit(".", 1)[-1]
  if name in ("ssp3", "ssp8"):
    states = TASKS[name].num_outputs

    def read_ssp(path, split):
      if kind(path) == "dssp":
        return formats.read_dssp_secondary_structure(path, states=states)
      if kind(path) in ("fasta", "fa"):
        if states != 3:
          raise ValueError(
              f"{path}: FLIP's secondary-structure split has 3 states only; "
              f"{name} needs {states}."
          )
        return formats.read_flip_secondary_structure(path, split)
      return formats.read_secondary_structure(path, states=states, **options)

    return read_ssp
  if name == "fluorescence":
    return lambda path, split: formats.read_regression(path, **options)
  if name == "gb1":
    return lambda path, split: formats.read_flip(path, split, **options)

  def read_contacts(path, split):
    del split
    if kind(path) in ("json", "jsonl"):
      return formats.read_contact_json(path)
    if kind(path) == "dssp":
      return formats.read_dssp_contacts(path)
    return formats.read_proteinnet(path, **options)

  return read_contacts


def _join(data_dir: str, path: str) -> str:
  if os.path.isabs(path) or "://" in path:
    return path
  return os.path.join(data_dir, path)


def load_task(
    name: str,
    data_dir: str,
    files: Optional[Mapping[str, Any]] = None,
    **reader_options: Any,
) -> dict[str, Any]:
  """Reads the train, valid and test splits of a benchmark task.

  With the default layout, `load_task("ssp3", "/data/bench")` reads
  `/data/bench/secondary_structure/training_hhblits.csv` for training and
  `CASP12.csv`, `CASP14.csv` beside it for the tests.

  Choices where the papers and data are silent:
  * SSP: NetSurfP-2.0 has no validation file; about `SSP_VALID_FRACTION` of
    the training proteins, chosen by a hash of the sequence, are held out
    (`"valid": None` in the layout). Residues of NetSurfP-2.0 files are
    masked by the `disorder` column, as the Ankh authors' benchmark code
    does (`mask_column=""` reads them unmasked).
  * GB1: FLIP's `three_vs_rest` file gives all three splits (`read_flip`);
    FLIP's secondary-structure `sampled.fasta` likewise for SSP3.
  * The file's name picks its reader (the table at the top of this module).

  Args:
    name: a key of `TASKS`.
    data_dir: the directory the relative paths of the layout are under.
    files: the layout, shaped like `DEFAULT_FILES[name]`: `{"train": PATH,
      "valid": PATH (or None for ssp), "test": {TEST_SET: PATH, ...}}`;
      `DEFAULT_FILES[name]` when None.
    **reader_options: passed to the task's reader (column names, say).

  Returns:
    `{"train": [Example], "valid": [Example], "test": {TEST_SET:
    [Example]}}`.

  Raises:
    ValueError: for an unknown task, a missing file (listing every file the
      layout expects), or a bad record.
  """
  layout, paths = check_files(name, data_dir, files)
  read = _reader(name, reader_options)
  train = read(paths["train"], "train")
  if "valid" in paths:
    valid = read(paths["valid"], "valid")
  else:
    train, valid = _hold_out(train, SSP_VALID_FRACTION)
  test = {key: read(paths[f"test {key}"], "test") for key in layout["test"]}
  return {"train": train, "valid": valid, "test": test}


def check_files(
    name: str, data_dir: str, files: Optional[Mapping[str, Any]] = None
) -> tuple[Mapping[str, Any], dict[str, str]]:
  """Checks that every file of a task's layout exists; see `load_task`.

  Returns:
    The layout and the path of each role (`train`, `valid`, `test KEY`).

  Raises:
    ValueError: for an unknown task, or missing files (listing every file
      the layout expects).
  """
  if name not in TASKS:
    raise ValueError(f"Unknown task {name!r}; tasks: {sorted(TASKS)}.")
  layout = DEFAULT_FILES[name] if files is None else files
  wanted = [("train", layout["train"]), ("valid", layout.get("valid"))]
  wanted += [(f"test {k}", v) for k, v in layout["test"].items()]
  if layout.get("valid") is None and name not in ("ssp3", "ssp8"):
    raise ValueError(f"Task {name!r} needs a valid file in its layout.")
  paths = {role: _join(data_dir, p) for role, p in wanted if p is not None}
  missing = [p for p in paths.values() if not tf.io.gfile.exists(p)]
  if missing:
    expected = "\n".join(
        f"  {role}: {path}" + ("" if path not in missing else "  (missing)")
        for role, path in paths.items()
    )
    raise ValueError(
        f"Task {name!r}: {len(missing)} file(s) missing. Expected:\n"
        f"{expected}\nPut the files there (the names of DEFAULT_FILES in "
        "ankh3_tasks/downstream/datasets.py), or from Python pass files= "
        "with their paths."
    )
  return layout, paths
