"""Readers of the downstream benchmark's data sets (the paper's Table 5).

Every reader takes one file (local or `gs://`, gzipped or not: gzip is
recognised by content) and returns a list of `Example`s. Bad input never
passes silently: the first bad record stops the read with a `ValueError` that
names the file, the record (row or line number, and its id when the file has
one) and the reason, e.g.

  ss.csv row 17 (id 1ABC_A): label has 120 states, sequence has 121 residues

Row numbers of CSV files are line numbers: the header is row 1. Sequences are
cleaned as the pretraining readers clean them (`sources.clean_sequence`:
whitespace removed, upper case, one terminal `*` dropped; letters outside the
vocabulary's residues reject the record).

Labels (what each kind of `kinds` expects):

* per-residue tasks (`ssp3`, `ssp8`): int32 [L] class ids, -1 where a residue
  is not labelled (excluded by a mask column). 3-state ids follow NetSurfP-2.0
  and TAPE: `DSSP3 = "HEC"` (H 0, E 1, C 2); 8-state ids `DSSP8 = "GHIBESTC"`
  (G 0, H 1, I 2, B 3, E 4, S 5, T 6, C 7). Coil is also read from `-`, ` `,
  `_` and `L` (DSSP's blank, ProteinNet's `L`); any other letter is an error.
* per-protein tasks (`fluorescence`, `gb1`): float32 scalars (shape ()).
* contacts: int8 [L, L]; 1 where the C-alpha atoms of two residues lie less
  than 8 Angstrom apart, 0 where not, -1 where either residue has no
  coordinates. Every pair is labelled, the diagonal and near neighbours
  included; the metric picks the pairs it scores (`metrics.contact_precision`).

`load_task` reads a task's splits from a data directory laid out as
`DEFAULT_FILES` says (the public files under their published names).
"""

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from ankh3_tasks import sources
from ankh3_tasks.downstream import kinds

DSSP3 = "HEC"
DSSP8 = "GHIBESTC"
# Other spellings of coil: DSSP's blank, `-` and `_` of many exports,
# ProteinNet's `L` (loop).
COIL_ALIASES = "- _L"
# A contact: C-alpha atoms closer than this (Angstrom), as TAPE labels
# ProteinNet (`np.less(distance, 8.0)`).
CONTACT_THRESHOLD = 8.0
# ProteinNet stores coordinates in picometres.
_PICOMETRES_PER_ANGSTROM = 100.0
# Consecutive C-alpha atoms lie 3.8 Angstrom apart (2.9 in cis peptides); a
# median outside this range means the coordinates are in other units.
_CA_STEP_RANGE = (2.0, 6.0)

_WHITESPACE_RE = re.compile(r"\s+")
_SECTION_RE = re.compile(r"\[([A-Z]+)\]")
_MASK_SPLIT_RE = re.compile(r"[\s,;\[\]]+")


@dataclasses.dataclass(frozen=True, eq=False)
class Example:
  """One protein of a benchmark split.

  Attributes:
    id: the record's id (from the file, else `FILE:ROW` or `FILE:LINE`).
    sequence: the cleaned sequence, one letter per residue.
    label: int32 [L] class ids (-1: not labelled) for per-residue tasks,
      a float32 scalar for per-protein tasks, int8 [L, L] for contacts.
  """

  id: str
  sequence: str
  label: np.ndarray


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


# --------------------------------------------------------------- reading


def _table_rows(
    path: str, columns: Sequence[str], id_column: Optional[str]
) -> Iterator[tuple[str, str, dict[str, str]]]:
  """Yields (where, record id, fields) for each row of a CSV or TSV file.

  `where` names the file, the row and (from `id_column`) the id, for errors.
  """
  name = os.path.basename(path)
  delimiter = "\t" if sources.strip_gz(path).endswith(".tsv") else ","
  # Titin has over 34,000 residues; lift csv's 131,072-character field cap.
  csv.field_size_limit(1 << 30)
  with sources.open_text(path) as f:
    reader = csv.DictReader(f, delimiter=delimiter)
    names = reader.fieldnames or []
    for column in columns:
      if column not in names:
        raise ValueError(
            f"{path}: no column {column!r}; columns: {list(names)}."
        )
    if id_column is None:
      id_column = "id" if "id" in names else None
    elif id_column not in names:
      raise ValueError(
          f"{path}: no id column {id_column!r}; columns: {list(names)}."
      )
    for fields in reader:
      row = reader.line_num
      where = f"{path} row {row}"
      record_id = (fields.get(id_column) or "").strip() if id_column else ""
      if record_id:
        where = f"{where} (id {record_id})"
      else:
        record_id = f"{name}:{row}"
      if None in fields or None in fields.values():
        more = "more" if None in fields else "fewer"
        raise ValueError(
            f"{where}: {more} fields than the {len(names)} of the header."
        )
      yield where, record_id, fields


def _sequence(raw: str, where: str) -> str:
  sequence, reason, detail = sources.clean_sequence(raw)
  if reason:
    raise ValueError(f"{where}: {reason}" + (f" {detail}" if detail else ""))
  return sequence


def _state_table(states: int) -> dict[str, str]:
  alphabet = DSSP3 if states == 3 else DSSP8
  table = {letter: chr(ord("0") + i) for i, letter in enumerate(alphabet)}
  for alias in COIL_ALIASES:
    table[alias] = table["C"]
  return table


def _states(text: str, states: int, length: int, where: str) -> np.ndarray:
  """Encodes a label string (`CCHHE`, or `C C H H E`) as class ids."""
  if len(text) != length:
    # Space-separated states (`C C H`), or stray whitespace at the ends.
    compact = _WHITESPACE_RE.sub("", text)
    if compact:
      text = compact
  if len(text) != length:
    raise ValueError(
        f"{where}: label has {len(text)} states, sequence has {length} "
        "residues."
    )
  table = _state_table(states)
  unknown = sorted(set(text) - set(table))
  if unknown:
    alphabet = DSSP3 if states == 3 else DSSP8
    raise ValueError(
        f"{where}: unknown {states}-state label {unknown[0]!r} at residue "
        f"{text.index(unknown[0]) + 1}; expected one of {alphabet!r} (coil "
        f"also as {COIL_ALIASES!r})."
    )
  digits = text.translate(str.maketrans(table)).encode("ascii")
  return (np.frombuffer(digits, np.uint8) - ord("0")).astype(np.int32)


def _mask(text: str, length: int, where: str, column: str) -> np.ndarray:
  """Reads a mask (`1101`, `1.0 1.0 0.0`, `[1, 1, 0]`): True = labelled."""
  text = text.strip()
  if len(text) == length and set(text) <= {"0", "1"}:
    return np.array([c == "1" for c in text], dtype=bool)
  tokens = [t for t in _MASK_SPLIT_RE.split(text) if t]
  values = []
  for token in tokens:
    try:
      value = float(token)
    except ValueError:
      value = math.nan
    if math.isnan(value):
      raise ValueError(f"{where}: {column} value {token!r} is not a number.")
    values.append(value)
  if len(values) != length:
    raise ValueError(
        f"{where}: {column} has {len(values)} values, sequence has {length} "
        "residues."
    )
  return np.array(values) != 0


def _number(text: str, where: str, column: str) -> np.ndarray:
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value):
    raise ValueError(
        f"{where}: {column} value {text!r} is not a finite number."
    )
  return np.array(value, dtype=np.float32)


def read_secondary_structure(
    path: str,
    *,
    states: int = 3,
    sequence_column: str = "input",
    label_column: Optional[str] = None,
    mask_column: Optional[str] = None,
    id_column: Optional[str] = None,
) -> list[Example]:
  """Reads per-residue secondary structure from a CSV (or TSV) file.

  The NetSurfP-2.0 files of the Ankh authors have columns `input`, `dssp3`,
  `dssp8`, `disorder` (and `cb513_mask`). A row `MKTAYIAK,CCHHHEEC,...` reads
  as labels `[2 2 0 0 0 1 1 2]` (3 states, `HEC`); with
  `mask_column="disorder"` and `disorder` = `1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0`
  as `[2 2 0 0 0 1 -1 -1]`.

  Args:
    path: the file.
    states: 3 or 8.
    sequence_column: column of the sequences.
    label_column: column of the label strings; `dssp3` or `dssp8` by default.
    mask_column: optional column saying which residues are labelled: a string
      of `0`/`1` or numbers separated by spaces or commas (brackets allowed);
      0 excludes the residue (label -1). The Ankh authors mask with
      `disorder` (0.0: unresolved).
    id_column: column of the ids; `id` when present, else `FILE:ROW`.

  Returns:
    The proteins, in file order, with int32 [L] labels.

  Raises:
    ValueError: at the first bad record (a label or mask whose length differs
      from the sequence, an unknown label letter, a bad sequence), or a
      missing column.
  """
  if states not in (3, 8):
    raise ValueError(f"states must be 3 or 8, not {states}.")
  label_column = label_column or f"dssp{states}"
  columns = [sequence_column, label_column] + (
      [mask_column] if mask_column else []
  )
  examples = []
  for where, record_id, fields in _table_rows(path, columns, id_column):
    sequence = _sequence(fields[sequence_column], where)
    label = _states(fields[label_column], states, len(sequence), where)
    if mask_column:
      keep = _mask(fields[mask_column], len(sequence), where, mask_column)
      label[~keep] = -1
    examples.append(Example(record_id, sequence, label))
  return examples


def read_regression_csv(
    path: str,
    *,
    sequence_column: str = "primary",
    value_column: str = "log_fluorescence",
    id_column: Optional[str] = None,
) -> list[Example]:
  """Reads a value per protein from a CSV (or TSV) file.

  The defaults are the columns of TAPE's fluorescence files: a row
  `SKGEELFTG...,3.82` reads as `Example(id, "SKGEELFTG...", 3.82)`.

  Args:
    path: the file.
    sequence_column: column of the sequences.
    value_column: column of the values.
    id_column: column of the ids; `id` when present, else `FILE:ROW`.

  Returns:
    The proteins, in file order, with float32 scalar labels.

  Raises:
    ValueError: at the first bad record (a bad sequence, a value that is not
      a finite number), or a missing column.
  """
  examples = []
  columns = [sequence_column, value_column]
  for where, record_id, fields in _table_rows(path, columns, id_column):
    sequence = _sequence(fields[sequence_column], where)
    value = _number(fields[value_column], where, value_column)
    examples.append(Example(record_id, sequence, value))
  return examples


def _flag(text: str, where: str, column: str) -> bool:
  value = text.strip().lower()
  if value in ("true", "1"):
    return True
  if value in ("false", "0", ""):
    return False
  raise ValueError(f"{where}: {column} value {text!r} is not True or False.")


def read_flip(
    path: str,
    split: str,
    *,
    sequence_column: str = "sequence",
    value_column: str = "target",
    set_column: str = "set",
    validation_column: str = "validation",
    id_column: Optional[str] = None,
) -> list[Example]:
  """Reads one split of a FLIP split file (`sequence,target,set,validation`).

  `train` is the rows of set `train` whose `validation` is not True, `valid`
  the rows of set `train` whose `validation` is True, `test` the rows of set
  `test` (their `validation`, empty in FLIP's files, is not read).

  Args:
    path: the split file, e.g. FLIP's `gb1/three_vs_rest.csv`.
    split: `train`, `valid` or `test`.
    sequence_column: column of the sequences.
    value_column: column of the values.
    set_column: column saying `train` or `test`.
    validation_column: column marking the held-out training rows (`True`,
      `False`, `1`, `0` or empty).
    id_column: column of the ids; `id` when present, else `FILE:ROW`.

  Returns:
    The split's proteins, in file order, with float32 scalar labels.

  Raises:
    ValueError: for an unknown split, and at the first bad record (a bad
      sequence or value, a set other than train or test, a validation flag
      that is not a boolean), or a missing column.
  """
  if split not in ("train", "valid", "test"):
    raise ValueError(f"split must be train, valid or test, not {split!r}.")
  columns = [sequence_column, value_column, set_column]
  if split != "test":
    columns.append(validation_column)
  examples = []
  for where, record_id, fields in _table_rows(path, columns, id_column):
    kind = fields[set_column].strip()
    if kind not in ("train", "test"):
      raise ValueError(
          f"{where}: {set_column} is {kind!r}, not 'train' or 'test'."
      )
    if kind == "test":
      wanted = split == "test"
    else:
      held_out = _flag(fields[validation_column], where, validation_column)
      wanted = split == ("valid" if held_out else "train")
    if wanted:
      sequence = _sequence(fields[sequence_column], where)
      value = _number(fields[value_column], where, value_column)
      examples.append(Example(record_id, sequence, value))
  return examples


# --------------------------------------------------------------- contacts


def contacts_from_ca(
    ca: np.ndarray, valid: np.ndarray, threshold: float = CONTACT_THRESHOLD
) -> np.ndarray:
  """Labels residue pairs as contacts from C-alpha coordinates.

  Args:
    ca: float [L, 3] coordinates in Angstrom; rows of invalid residues are not
      read (NaN is fine there).
    valid: bool [L], whether a residue has coordinates.
    threshold: a contact is a distance strictly below this (Angstrom).

  Returns:
    int8 [L, L]: 1 contact, 0 not, -1 where either residue is invalid. The
    diagonal of a valid residue is 1 (distance 0).

  Raises:
    ValueError: for shapes other than [L, 3] and [L], or a valid residue
      without finite coordinates.
  """
  ca = np.asarray(ca, dtype=np.float64)
  valid = np.asarray(valid, dtype=bool)
  if ca.ndim != 2 or ca.shape[1] != 3:
    raise ValueError(f"ca has shape {ca.shape}; expected [L, 3].")
  if valid.shape != ca.shape[:1]:
    raise ValueError(
        f"valid has shape {valid.shape}; expected [{ca.shape[0]}] (ca has "
        f"{ca.shape[0]} residues)."
    )
  bad = np.flatnonzero(valid & ~np.isfinite(ca).all(axis=1))
  if bad.size:
    raise ValueError(
        f"residue(s) {bad.tolist()} are valid but have no finite coordinates."
    )
  ca = np.where(valid[:, None], ca, 0.0)
  squared = np.zeros((len(ca), len(ca)))
  for axis in range(3):  # One [L, L] at a time, not [L, L, 3].
    squared += np.square(ca[:, None, axis] - ca[None, :, axis])
  labels = (squared < threshold**2).astype(np.int8)
  labels[~(valid[:, None] & valid[None, :])] = -1
  return labels


def _check_angstrom(ca: np.ndarray, valid: np.ndarray, where: str) -> None:
  """Fails when consecutive C-alpha atoms are not about 3.8 Angstrom apart."""
  both = valid[1:] & valid[:-1]
  if not both.any():
    return
  steps = np.linalg.norm(ca[1:][both] - ca[:-1][both], axis=-1)
  median = float(np.median(steps))
  low, high = _CA_STEP_RANGE
  if not low <= median <= high:
    raise ValueError(
        f"{where}: consecutive C-alpha atoms lie a median {median:.4g} apart; "
        "expected about 3.8 Angstrom (picometres would give about 380)."
    )


def _contact_example(
    record_id: str,
    sequence: str,
    ca: np.ndarray,
    valid: np.ndarray,
    where: str,
) -> Example:
  bad = np.flatnonzero(valid & ~np.isfinite(ca).all(axis=1))
  if bad.size:
    raise ValueError(
        f"{where}: residue {bad[0] + 1} is marked valid but has no finite "
        "coordinates."
    )
  _check_angstrom(ca, valid, where)
  return Example(record_id, sequence, contacts_from_ca(ca, valid))


def read_proteinnet(path: str) -> list[Example]:
  """Reads contact maps from a ProteinNet text file.

  A record is a block of sections, records separated by a blank line:

    [ID]
    TBM#T0866
    [PRIMARY]
    MKTAYIAK...
    [EVOLUTIONARY]        (21 lines; not read)
    [TERTIARY]
    x values: 3L numbers, atoms N, CA, C of each residue in order
    y values
    z values              (picometres)
    [MASK]
    ++--+...              (`-`: residue without coordinates)

  Other sections (`[EVOLUTIONARY]`, `[SECONDARY]`) are skipped. C-alpha
  coordinates are divided by 100 (picometres to Angstrom) and labelled by
  `contacts_from_ca`.

  Args:
    path: the file (e.g. `casp12/testing`).

  Returns:
    The proteins, in file order, with int8 [L, L] contact labels.

  Raises:
    ValueError: at the first bad record: a missing or repeated section, a
      TERTIARY line without 3L numbers, a MASK of the wrong length or with
      letters other than `+` and `-`, a bad sequence, coordinates that are not
      about 3.8 Angstrom apart once converted; each names the line.
  """
  examples = []
  record = None
  with sources.open_text(path) as f:
    for number, line in enumerate(f, start=1):
      text = line.rstrip("\r\n")
      if not text.strip():
        if record is not None:
          examples.append(_proteinnet_example(path, record))
          record = None
        continue
      match = _SECTION_RE.fullmatch(text.strip())
      if match:
        section = match.group(1)
        if record is not None and section == "ID":  # No blank line between.
          examples.append(_proteinnet_example(path, record))
          record = None
        if record is None:
          record = {"line": number, "sections": {}}
        if section in record["sections"]:
          raise ValueError(
              f"{path} line {number}: a second [{section}] in the record "
              f"that starts on line {record['line']}."
          )
        record["sections"][section] = []
        record["current"] = section
      elif record is None:
        raise ValueError(
            f"{path} line {number}: text outside a record (a record starts "
            "with [ID])."
        )
      else:
        record["sections"][record["current"]].append((number, text))
  if record is not None:
    examples.append(_proteinnet_example(path, record))
  return examples


def _proteinnet_example(path: str, record: Mapping[str, Any]) -> Example:
  sections = record["sections"]
  start = record["line"]
  ids = sections.get("ID", [])
  record_id = ids[0][1].strip() if ids else f"{os.path.basename(path)}:{start}"
  where = f"{path} line {start} (id {record_id})"
  for section, lines in (("ID", 1), ("PRIMARY", 1), ("TERTIARY", 3)):
    if section not in sections:
      raise ValueError(f"{where}: no [{section}] section.")
    if len(sections[section]) != lines:
      raise ValueError(
          f"{where}: [{section}] has {len(sections[section])} lines, "
          f"expected {lines}."
      )
  if "MASK" not in sections or len(sections["MASK"]) != 1:
    raise ValueError(f"{where}: no [MASK] line.")
  sequence = _sequence(sections["PRIMARY"][0][1], where)
  length = len(sequence)
  axes = []
  for axis, (number, text) in zip("xyz", sections["TERTIARY"]):
    at = f"{path} line {number} (id {record_id})"
    values = text.split()
    if len(values) != 3 * length:
      raise ValueError(
          f"{at}: TERTIARY {axis} line has {len(values)} values, expected "
          f"3 atoms x {length} residues = {3 * length}."
      )
    try:
      axes.append(np.array(values, dtype=np.float64))
    except ValueError:
      bad = next(v for v in values if not _is_float(v))
      raise ValueError(
          f"{at}: TERTIARY {axis} value {bad!r} is not a number."
      ) from None
  atoms = np.stack(axes, axis=-1)  # [3L, 3]: N, CA, C of each residue.
  ca = atoms[1::3] / _PICOMETRES_PER_ANGSTROM
  number, mask = sections["MASK"][0]
  at = f"{path} line {number} (id {record_id})"
  mask = mask.strip()
  if len(mask) != length:
    raise ValueError(
        f"{at}: MASK has {len(mask)} residues, sequence has {length}."
    )
  if set(mask) - {"+", "-"}:
    raise ValueError(f"{at}: MASK holds letters other than '+' and '-'.")
  valid = np.array([c == "+" for c in mask], dtype=bool)
  return _contact_example(record_id, sequence, ca, valid, where)


def _is_float(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def read_contact_json(path: str) -> list[Example]:
  """Reads contact maps from JSON lines (or a JSON array) of C-alpha atoms.

  The layout to convert CASP14 targets to; one object per protein:

    {"id": "T1024", "sequence": "MKT...", "ca": [[x, y, z], ..., null],
     "valid_mask": [true, ..., false]}

  * `ca`: [L, 3] C-alpha coordinates in Angstrom; `null` (or a null
    coordinate) for a residue without them. TAPE's `tertiary` ([L, 3, 3]: N,
    CA, C in Angstrom) is read instead when there is no `ca`.
  * `valid_mask` (optional): [L] booleans; false excludes a residue. Without
    it, the residues with coordinates are valid.
  * `sequence` may be named `primary` (TAPE); `id` may be absent (the id is
    then `FILE:LINE`, or `FILE:N` for the N-th object of an array).

  The file is JSON lines (one object per line, blank lines skipped) unless it
  starts with `[`, when it is one JSON array.

  Args:
    path: the file.

  Returns:
    The proteins, in file order, with int8 [L, L] contact labels.

  Raises:
    ValueError: at the first bad record: invalid JSON, a missing field,
      coordinates or a mask whose length differs from the sequence, a valid
      residue without coordinates, coordinates not about 3.8 Angstrom apart
      (picometres, say), a bad sequence.
  """
  with sources.open_text(path) as f:
    text = f.read()
  name = os.path.basename(path)
  records = []
  if text.lstrip().startswith("["):
    try:
      objects = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON: {e}") from None
    for number, obj in enumerate(objects, start=1):
      records.append((f"{path} record {number}", f"{name}:{number}", obj))
  else:
    for number, line in enumerate(text.splitlines(), start=1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} line {number}: not a JSON object: {e.msg}."
        ) from None
      records.append((f"{path} line {number}", f"{name}:{number}", obj))
  return [_json_example(*record) for record in records]


def _json_example(where: str, default_id: str, obj: Any) -> Example:
  if not isinstance(obj, dict):
    raise ValueError(f"{where}: expected a JSON object, got {obj!r:.40}.")
  record_id = str(obj.get("id") or "")
  if record_id:
    where = f"{where} (id {record_id})"
  else:
    record_id = default_id
  key = "sequence" if "sequence" in obj else "primary"
  if not isinstance(obj.get(key), str):
    raise ValueError(f"{where}: no 'sequence' (or 'primary') string.")
  sequence = _sequence(obj[key], where)
  length = len(sequence)
  if "ca" in obj:
    ca = _coordinates(obj["ca"], (3,), where, "ca")
  elif "tertiary" in obj:
    ca = _coordinates(obj["tertiary"], (3, 3), where, "tertiary")[:, 1]
  else:
    raise ValueError(f"{where}: no 'ca' (or 'tertiary') coordinates.")
  if len(ca) != length:
    raise ValueError(
        f"{where}: coordinates of {len(ca)} residues, sequence has {length}."
    )
  has_coordinates = np.isfinite(ca).all(axis=1)
  if obj.get("valid_mask") is None:
    valid = has_coordinates
  else:
    mask = obj["valid_mask"]
    if not isinstance(mask, list) or any(v not in (0, 1) for v in mask):
      raise ValueError(f"{where}: valid_mask is not a list of booleans.")
    if len(mask) != length:
      raise ValueError(
          f"{where}: valid_mask has {len(mask)} values, sequence has "
          f"{length} residues."
      )
    valid = np.array(mask, dtype=bool)
  return _contact_example(record_id, sequence, ca, valid, where)


def _coordinates(value: Any, tail: tuple[int, ...], where: str, key: str):
  """Reads [L, *tail] numbers, a null row or number becoming NaN."""
  if not isinstance(value, list):
    raise ValueError(f"{where}: {key} is not a list.")
  missing = np.full(tail, np.nan).tolist()
  rows = [missing if row is None else row for row in value]
  try:
    array = np.array(rows, dtype=np.float64)
  except (TypeError, ValueError):
    array = None
  if array is None or array.shape != (len(rows),) + tail:
    shape = "[L, " + ", ".join(map(str, tail)) + "]"
    raise ValueError(f"{where}: {key} is not a {shape} list of numbers.")
  return array


# --------------------------------------------------------------- tasks


def _hold_out(
    examples: Sequence[Example], fraction: float
) -> tuple[list[Example], list[Example]]:
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
  """Returns `read(path, split) -> list[Example]` for a task."""
  if name in ("ssp3", "ssp8"):
    options = {"mask_column": "disorder", **options}
    states = TASKS[name].num_outputs
    return lambda path, split: read_secondary_structure(
        path, states=states, **options
    )
  if name == "fluorescence":
    return lambda path, split: read_regression_csv(path, **options)
  if name == "gb1":
    return lambda path, split: read_flip(path, split, **options)

  def read_contacts(path, split):
    del split
    if sources.strip_gz(path).endswith((".json", ".jsonl")):
      return read_contact_json(path, **options)
    return read_proteinnet(path, **options)

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
    (`"valid": None` in the layout). Residues are masked by the `disorder`
    column, as the Ankh authors' benchmark code does (pass
    `mask_column=None` for files without one).
  * GB1: FLIP's `three_vs_rest` file gives all three splits (`read_flip`).
  * Contacts: files named `.json` / `.jsonl` (maybe `.gz`) are read by
    `read_contact_json`, the rest as ProteinNet text.

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
