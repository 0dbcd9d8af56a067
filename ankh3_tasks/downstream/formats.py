"""Readers of the downstream benchmark's public files (the paper's Table 5).

The files are read as their publishers distribute them:

* NetSurfP-2.0 CSV as ProtTrans and the Ankh authors distribute it (`input,
  dssp3, dssp8, disorder, cb513_mask`; names may follow ", ", values may be
  space-separated), and the `seq,sst3,sst8` CSV of CASP12 and the PDB
  secondary-structure sets: `read_secondary_structure` (3 and 8 states);
* FLIP's secondary-structure split, `sampled.fasta` (labels, `SET=
  VALIDATION=` in the header) with `sequences.fasta` and `mask.fasta`
  beside it: `read_flip_secondary_structure` (3 states);
* FLIP split files, CSV (`sequence,target,set,validation`) or FASTA
  (`>ID TARGET= SET= VALIDATION=`): `read_flip` (a value per protein);
* TAPE's fluorescence records: its JSON (`primary`, `log_fluorescence`,
  `protein_length`, `num_mutations`, `id`), the same fields as CSV, or the
  `seq,label` CSV: `read_regression` (a value per protein);
* DSSP output (`.dssp`, the classic format of DSSP 2 to 4):
  `read_dssp_secondary_structure` (8 states and their 3-state reduction),
  `read_dssp_contacts` (C-alpha contacts);
* ProteinNet text records (`read_proteinnet`) and JSON lines of C-alpha
  coordinates (`read_contact_json`): contacts.

Every reader takes one file (local or `gs://`, gzipped or not: gzip is
recognised by content) and returns a list of `Example`s. Bad input never
passes silently: the first bad record stops the read with a `ValueError` that
names the file, the record (row or line number, and its id when the file has
one) and the reason, e.g.

  ss.csv row 17 (id 1ABC_A): label has 120 states, sequence has 121 residues

and a file in none of the layouts above is refused the same way, e.g.
`x.csv row 1: no secondary-structure layout: ...`. Row numbers of CSV files
are line numbers: the header is row 1. Sequences are cleaned as the
pretraining readers clean them (`sources.clean_sequence`: whitespace
removed, upper case, one terminal `*` dropped; letters outside the
vocabulary's residues reject the record).

Labels (what each kind of `kinds` expects):

* per-residue tasks (`ssp3`, `ssp8`): int32 [L] class ids, -1 where a residue
  is not labelled (excluded by a mask). 3-state ids follow NetSurfP-2.0
  and TAPE: `DSSP3 = "HEC"` (H 0, E 1, C 2); 8-state ids `DSSP8 = "GHIBESTC"`
  (G 0, H 1, I 2, B 3, E 4, S 5, T 6, C 7). Coil is also read from `-`, ` `,
  `_` and `L` (DSSP's blank, ProteinNet's `L`); any other letter is an error.
  DSSP's 8 states become 3 by the standard reduction (`DSSP8_TO_3`: G, H,
  I -> H; B, E -> E; S, T, coil -> C).
* per-protein tasks (`fluorescence`, `gb1`): float32 scalars (shape ()).
* contacts: int8 [L, L]; 1 where the C-alpha atoms of two residues lie less
  than 8 Angstrom apart, 0 where not, -1 where either residue has no
  coordinates. Every pair is labelled, the diagonal and near neighbours
  included; the metric picks the pairs it scores (`metrics.contact_precision`).
"""

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from ankh3_tasks import sources

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
    # NetSurfP-2.0 files as ProtTrans distributes them name their columns
    # after ", " (`input, dssp3, ...`): names are read stripped.
    names = [n.strip() for n in reader.fieldnames or []]
    reader.fieldnames = names
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


@dataclasses.dataclass(frozen=True)
class SecondaryStructureLayout:
  """The columns of a published secondary-structure CSV layout.

  Attributes:
    name: how errors name the layout.
    sequence: column of the sequences.
    labels: column of the 3-state and of the 8-state labels.
    mask: column saying which residues are labelled (None: all are).
  """

  name: str
  sequence: str
  labels: Mapping[int, str]
  mask: Optional[str] = None


SECONDARY_STRUCTURE_LAYOUTS = (
    # NetSurfP-2.0 as ProtTrans and the Ankh authors distribute it; residues
    # with `disorder` 0.0 are unresolved and, as in the Ankh authors'
    # benchmark code, not labelled.
    SecondaryStructureLayout(
        "NetSurfP-2.0", "input", {3: "dssp3", 8: "dssp8"}, "disorder"
    ),
    # CASP12 as in circulation, and the PDB secondary-structure sets
    # (`pdb_id,chain_code,seq,sst8,sst3,...`).
    SecondaryStructureLayout("seq,sst3,sst8", "seq", {3: "sst3", 8: "sst8"}),
)


def _header(path: str) -> list[str]:
  """The stripped column names of a CSV (or TSV) file."""
  delimiter = "\t" if sources.strip_gz(path).endswith(".tsv") else ","
  with sources.open_text(path) as f:
    row = next(csv.reader(f, delimiter=delimiter), [])
  return [name.strip() for name in row]


def secondary_structure_layout(
    path: str, states: int
) -> SecondaryStructureLayout:
  """The layout of `SECONDARY_STRUCTURE_LAYOUTS` a CSV file's header has.

  Raises:
    ValueError: naming the file, row 1 and the layouts, if none fits.
  """
  names = _header(path)
  for layout in SECONDARY_STRUCTURE_LAYOUTS:
    if layout.sequence in names and layout.labels[states] in names:
      return layout
  known = "; ".join(
      f"{layout.name} ({layout.sequence}, "
      + ", ".join(layout.labels.values())
      + ")"
      for layout in SECONDARY_STRUCTURE_LAYOUTS
  )
  raise ValueError(
      f"{path} row 1: no {states}-state secondary-structure layout: columns "
      f"{names}; expected {known}, or name the columns."
  )


def read_secondary_structure(
    path: str,
    *,
    states: int = 3,
    sequence_column: Optional[str] = None,
    label_column: Optional[str] = None,
    mask_column: Optional[str] = None,
    id_column: Optional[str] = None,
) -> list[Example]:
  """Reads per-residue secondary structure from a CSV (or TSV) file.

  Without column names the layout is that of the header
  (`SECONDARY_STRUCTURE_LAYOUTS`): the NetSurfP-2.0 files (`input`, `dssp3`,
  `dssp8`, `disorder`, `cb513_mask`; residues with `disorder` 0 are not
  labelled; `cb513_mask` is not read) or `seq,sst3,sst8`. A row
  `MKTAYIAK,CCHHHEEC,...` reads as labels `[2 2 0 0 0 1 1 2]` (3 states,
  `HEC`); with `disorder` = `1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0` as
  `[2 2 0 0 0 1 -1 -1]`. Values may be space-separated (`M K T`, `C C H`),
  as ProtTrans writes them.

  Args:
    path: the file.
    states: 3 or 8.
    sequence_column: column of the sequences; the layout's if None.
    label_column: column of the label strings; the layout's if None.
    mask_column: column saying which residues are labelled: a string of
      `0`/`1` or numbers separated by spaces or commas (brackets allowed);
      0 excludes the residue (label -1). The layout's if None and the file
      has it (NetSurfP-2.0: `disorder`); `""` for none.
    id_column: column of the ids; `id` when present, else `FILE:ROW`.

  Returns:
    The proteins, in file order, with int32 [L] labels.

  Raises:
    ValueError: at the first bad record (a label or mask whose length differs
      from the sequence, an unknown label letter, a bad sequence), a missing
      column, or a header of no known layout (without column names).
  """
  if states not in (3, 8):
    raise ValueError(f"states must be 3 or 8, not {states}.")
  if sequence_column is None or label_column is None:
    layout = secondary_structure_layout(path, states)
    sequence_column = sequence_column or layout.sequence
    label_column = label_column or layout.labels[states]
    if mask_column is None and layout.mask in _header(path):
      mask_column = layout.mask
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


# Published CSV layouts of a value per protein: (name, sequence, value).
REGRESSION_LAYOUTS = (
    # TAPE's fields (its JSON and LMDB records; Hugging Face
    # `proteinea/fluorescence` as CSV).
    ("TAPE", "primary", "log_fluorescence"),
    # protein_bert's benchmark files (e.g. `fluorescence.valid.csv`).
    ("seq,label", "seq", "label"),
)


def read_regression_csv(
    path: str,
    *,
    sequence_column: Optional[str] = None,
    value_column: Optional[str] = None,
    id_column: Optional[str] = None,
) -> list[Example]:
  """Reads a value per protein from a CSV (or TSV) file.

  Without column names the layout is that of the header
  (`REGRESSION_LAYOUTS`): TAPE's `primary,log_fluorescence` or
  `seq,label`. A row `SKGEELFTG...,3.82` reads as
  `Example(id, "SKGEELFTG...", 3.82)`.

  Args:
    path: the file.
    sequence_column: column of the sequences; the layout's if None.
    value_column: column of the values; the layout's if None.
    id_column: column of the ids; `id` when present, else `FILE:ROW`.

  Returns:
    The proteins, in file order, with float32 scalar labels.

  Raises:
    ValueError: at the first bad record (a bad sequence, a value that is not
      a finite number), a missing column, or a header of no known layout.
  """
  if sequence_column is None or value_column is None:
    names = _header(path)
    for _, sequence, value in REGRESSION_LAYOUTS:
      if (sequence_column or sequence) in names and (
          value_column or value
      ) in names:
        sequence_column = sequence_column or sequence
        value_column = value_column or value
        break
    else:
      if sequence_column or value_column:
        # One column named: the other is TAPE's; `_table_rows` names what
        # is missing.
        _, sequence, value = REGRESSION_LAYOUTS[0]
        sequence_column = sequence_column or sequence
        value_column = value_column or value
    if sequence_column is None or value_column is None:
      known = "; ".join(f"{n} ({s}, {v})" for n, s, v in REGRESSION_LAYOUTS)
      raise ValueError(
          f"{path} row 1: no layout of a value per protein: columns "
          f"{names}; expected {known}, or name the columns."
      )
  examples = []
  columns = [sequence_column, value_column]
  for where, record_id, fields in _table_rows(path, columns, id_column):
    sequence = _sequence(fields[sequence_column], where)
    value = _number(fields[value_column], where, value_column)
    examples.append(Example(record_id, sequence, value))
  return examples


def read_tape_json(
    path: str, *, value_key: str = "log_fluorescence"
) -> list[Example]:
  """Reads a value per protein from TAPE's JSON files (or JSON lines).

  TAPE's raw data (e.g. `fluorescence_valid.json`) is a JSON array of
  records with the fields of its LMDB files:

    {"id": "1", "primary": "SKGEELFTG...", "protein_length": 237,
     "log_fluorescence": [3.82], "num_mutations": 3}

  The value may be a number or a list of one; `protein_length`, when
  present, must be the sequence's length; `num_mutations` is not read.

  Args:
    path: the file: a JSON array, or one object per line.
    value_key: the field of the value (TAPE stability: `stability_score`).

  Returns:
    The proteins, in file order, with float32 scalar labels.

  Raises:
    ValueError: at the first bad record (invalid JSON, a missing field, a
      length that disagrees, a value that is not one finite number).
  """
  examples = []
  for where, default_id, obj in _json_records(path):
    record_id, where = _json_id(where, default_id, obj)
    if not isinstance(obj.get("primary"), str):
      raise ValueError(f"{where}: no 'primary' string (TAPE's sequence).")
    sequence = _sequence(obj["primary"], where)
    length = obj.get("protein_length")
    if length is not None and length != len(sequence):
      raise ValueError(
          f"{where}: protein_length is {length}, the sequence has "
          f"{len(sequence)} residues."
      )
    if value_key not in obj:
      raise ValueError(f"{where}: no {value_key!r} field.")
    value = obj[value_key]
    if isinstance(value, list) and len(value) == 1:
      value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(
          f"{where}: {value_key} is {value!r:.40}, not a number (or a list "
          "of one)."
      )
    examples.append(
        Example(record_id, sequence, _number(str(value), where, value_key))
    )
  return examples


def _is_lmdb(path: str) -> bool:
  stripped = path.rstrip("/")
  return stripped.endswith(".lmdb") or tf.io.gfile.exists(
      os.path.join(stripped, "data.mdb")
  )


def read_regression(path: str, **options: Any) -> list[Example]:
  """Reads a value per protein from any layout of `read_regression_csv` or
  `read_tape_json` (`.json`, `.jsonl`; maybe gzipped).

  TAPE's LMDB files are refused: their records are Python pickles, and
  unpickling a file runs code; TAPE publishes the same records as JSON.

  Raises:
    ValueError: for LMDB, and as the readers do.
  """
  if _is_lmdb(path):
    raise ValueError(
        f"{path}: an LMDB database (TAPE's pickled records) is not read: "
        "unpickling runs code. Use TAPE's JSON files of the same split (the "
        "same fields: primary, log_fluorescence, ...)."
    )
  if sources.strip_gz(path).endswith((".json", ".jsonl")):
    return read_tape_json(path, **options)
  return read_regression_csv(path, **options)


def _flag(text: str, where: str, column: str) -> bool:
  value = text.strip().lower()
  if value in ("true", "1"):
    return True
  if value in ("false", "0", ""):
    return False
  raise ValueError(f"{where}: {column} value {text!r} is not True or False.")


def _is_fasta(path: str) -> bool:
  return sources.strip_gz(path).endswith((".fasta", ".fa", ".faa", ".fas"))


def _fasta_records(path: str) -> Iterator[tuple[int, str, str]]:
  """Yields (header line number, header, body) of each record, strictly.

  Raises:
    ValueError: for text before the first header, or a header without body.
  """
  header, start, lines = None, 0, []
  with sources.open_text(path) as f:
    for number, line in enumerate(f, start=1):
      if line.startswith(">"):
        if header is not None:
          yield start, header, "".join(lines)
        header, start, lines = line[1:].strip(), number, []
      elif line.strip():
        if header is None:
          raise ValueError(
              f"{path} line {number}: text before the first '>' header."
          )
        lines.append(line.strip())
  if header is not None:
    yield start, header, "".join(lines)


def _fasta_fields(path: str) -> Iterator[tuple[str, str, dict[str, str]]]:
  """FLIP's FASTA records as table rows: (where, id, fields).

  `>Sequence0 TARGET=1.0 SET=train VALIDATION=False` gives the id
  `Sequence0` and the fields `target`, `set`, `validation` (keys lower
  case) and `sequence` (the record's body).
  """
  for number, header, body in _fasta_records(path):
    words = header.split()
    record_id = words[0] if words and "=" not in words[0] else ""
    where = f"{path} line {number}"
    if record_id:
      where = f"{where} (id {record_id})"
    else:
      record_id = f"{os.path.basename(path)}:{number}"
    fields = {}
    for word in words[1 if words and "=" not in words[0] else 0 :]:
      key, sep, value = word.partition("=")
      if not sep:
        raise ValueError(
            f"{where}: header word {word!r} is not KEY=VALUE (FLIP: "
            "TARGET= SET= VALIDATION=)."
        )
      fields[key.lower()] = value
    if not body:
      raise ValueError(f"{where}: a header without a sequence.")
    fields["sequence"] = body
    yield where, record_id, fields


def _flip_rows(
    path: str, columns: Sequence[str], id_column: Optional[str]
) -> Iterator[tuple[str, str, dict[str, str]]]:
  """FLIP's rows from its CSV or its FASTA (by the file's name)."""
  if not _is_fasta(path):
    yield from _table_rows(path, columns, id_column)
    return
  for where, record_id, fields in _fasta_fields(path):
    missing = [c for c in columns if c not in fields]
    if missing:
      raise ValueError(
          f"{where}: no {', '.join(c.upper() + '=' for c in missing)} in "
          "the header (FLIP: >ID TARGET=... SET=... VALIDATION=...)."
      )
    yield where, record_id, fields


def _wanted(
    fields: Mapping[str, str],
    split: str,
    where: str,
    set_column: str,
    validation_column: str,
) -> bool:
  """Whether a FLIP row belongs to `split` (see `read_flip`)."""
  kind = fields[set_column].strip()
  if kind not in ("train", "test"):
    raise ValueError(
        f"{where}: {set_column} is {kind!r}, not 'train' or 'test'."
    )
  if kind == "test":
    return split == "test"
  held_out = _flag(fields[validation_column], where, validation_column)
  return split == ("valid" if held_out else "train")


def _check_split(split: str) -> None:
  if split not in ("train", "valid", "test"):
    raise ValueError(f"split must be train, valid or test, not {split!r}.")


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
  """Reads one split of a FLIP split file, CSV or FASTA.

  FLIP publishes each split (e.g. `gb1/splits/three_vs_rest`) twice: a CSV
  `sequence,target,set,validation` and a FASTA whose headers carry the same
  fields, `>Sequence0 TARGET=1.0 SET=train VALIDATION=False` (read by the
  name: `.fasta`, `.fa`; the column arguments then name header keys, in
  lower case). `train` is the rows of set `train` whose `validation` is not
  True, `valid` the rows of set `train` whose `validation` is True, `test`
  the rows of set `test` (their `validation`, empty in FLIP's CSVs, is not
  read).

  Args:
    path: the split file, e.g. FLIP's `gb1/three_vs_rest.csv`.
    split: `train`, `valid` or `test`.
    sequence_column: column of the sequences.
    value_column: column of the values.
    set_column: column saying `train` or `test`.
    validation_column: column marking the held-out training rows (`True`,
      `False`, `1`, `0` or empty).
    id_column: column of the ids; `id` when present, else `FILE:ROW` (FASTA:
      the header's first word).

  Returns:
    The split's proteins, in file order, with float32 scalar labels.

  Raises:
    ValueError: for an unknown split, and at the first bad record (a bad
      sequence or value, a set other than train or test, a validation flag
      that is not a boolean), or a missing column or header field.
  """
  _check_split(split)
  columns = [sequence_column, value_column, set_column]
  if split != "test":
    columns.append(validation_column)
  examples = []
  for where, record_id, fields in _flip_rows(path, columns, id_column):
    if _wanted(fields, split, where, set_column, validation_column):
      sequence = _sequence(fields[sequence_column], where)
      value = _number(fields[value_column], where, value_column)
      examples.append(Example(record_id, sequence, value))
  return examples


def _fasta_by_id(path: str) -> dict[str, tuple[str, str]]:
  """id (first word of the header) -> (where, body) of a FASTA file."""
  records = {}
  for number, header, body in _fasta_records(path):
    record_id = header.split(maxsplit=1)[0] if header.strip() else ""
    where = f"{path} line {number} (id {record_id})"
    if not record_id:
      raise ValueError(f"{path} line {number}: a header without an id.")
    if record_id in records:
      raise ValueError(
          f"{where}: id {record_id} also on {records[record_id][0]}."
      )
    records[record_id] = (where, body)
  return records


def read_flip_secondary_structure(
    path: str,
    split: str,
    *,
    sequences_path: Optional[str] = None,
    mask_path: Optional[str] = None,
) -> list[Example]:
  """Reads one split of FLIP's secondary-structure split (3 states).

  FLIP's `secondary_structure/splits.zip` holds `sampled.fasta`, whose
  records are 3-state labels (`>1es5-A SET=train VALIDATION=False`, then
  `CCCEEEH...`), and beside it `sequences.fasta` (the residues) and
  `mask.fasta` (`0`/`1` per residue, 0: unresolved, not labelled), matched
  by id. Splits as in `read_flip`.

  Args:
    path: the labels file (`sampled.fasta`).
    split: `train`, `valid` or `test`.
    sequences_path: the residues; `sequences.fasta` beside `path` if None.
    mask_path: the masks; `mask.fasta` beside `path` if None, if it exists.

  Returns:
    The split's proteins, in file order, with int32 [L] labels.

  Raises:
    ValueError: for an unknown split, and at the first bad record (a label
      or mask whose length differs from the sequence, an id missing from the
      sequences, a bad set or validation field).
  """
  _check_split(split)
  directory = os.path.dirname(path)
  sequences = _fasta_by_id(
      sequences_path or os.path.join(directory, "sequences.fasta")
  )
  if mask_path is None:
    beside = os.path.join(directory, "mask.fasta")
    mask_path = beside if tf.io.gfile.exists(beside) else None
  masks = _fasta_by_id(mask_path) if mask_path else {}
  columns = ["set"] + (["validation"] if split != "test" else [])
  examples = []
  for where, record_id, fields in _flip_rows(path, columns, None):
    if not _wanted(fields, split, where, "set", "validation"):
      continue
    if record_id not in sequences:
      raise ValueError(
          f"{where}: no sequence of {record_id} in the sequences file."
      )
    at, raw = sequences[record_id]
    sequence = _sequence(raw, at)
    label = _states(fields["sequence"], 3, len(sequence), where)
    if mask_path:
      if record_id not in masks:
        raise ValueError(f"{where}: no mask of {record_id} in {mask_path}.")
      at, text = masks[record_id]
      label[~_mask(text, len(sequence), at, "mask")] = -1
    examples.append(Example(record_id, sequence, label))
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


# DSSP's 8 states to 3, the standard reduction (NetSurfP-2.0, TAPE): helices
# (3-10, alpha, pi) -> H, strand and bridge -> E, the rest -> C. DSSP 4's
# polyproline helix `P` is coil in both.
DSSP8_TO_3 = {"G": "H", "H": "H", "I": "H", "B": "E", "E": "E"}
_DSSP_TABLE = "  #  RESIDUE AA STRUCTURE"


@dataclasses.dataclass(frozen=True)
class _DsspChain:
  where: str
  id: str
  sequence: str
  states: str  # 8 states, `C` for coil.
  ca: np.ndarray  # float64 [L, 3], Angstrom.


def _dssp_chains(path: str) -> list[_DsspChain]:
  """The chains of a DSSP file (classic format), breaks (`!`) left out.

  Residue lines hold, at fixed columns, the chain (12), the amino acid (14;
  lower case: a cysteine in a disulphide bridge), the state (17; blank:
  coil) and the C-alpha coordinates under `X-CA  Y-CA  Z-CA`.
  """
  with sources.open_text(path) as f:
    lines = f.read().splitlines()
  name = os.path.basename(path)
  pdb_id = ""
  table = None
  for number, line in enumerate(lines, start=1):
    if line.startswith("HEADER"):  # `HEADER ... 6UF2   .`: the PDB id.
      words = line.rstrip(" .").split()
      pdb_id = words[-1] if len(words) > 1 and len(words[-1]) == 4 else ""
    if line.startswith(_DSSP_TABLE):
      table = number
      break
  if table is None:
    raise ValueError(
        f"{path} line 1: not DSSP output: no residue table (a line starting "
        f"{_DSSP_TABLE.strip()!r})."
    )
  header = lines[table - 1]
  if "X-CA" not in header:
    raise ValueError(f"{path} line {table}: no X-CA column in the header.")
  x = header.index("X-CA") + 4  # Values end where their labels end.
  spans = [(x - 7, x), (x, x + 7), (x + 7, x + 14)]
  chains = {}
  for number, line in enumerate(lines[table:], start=table + 1):
    if not line.strip() or line[13:14] == "!":
      continue
    where = f"{path} line {number}"
    if len(line) < x + 14:
      raise ValueError(
          f"{where}: a residue line of {len(line)} characters; the C-alpha "
          f"columns end at {x + 14}."
      )
    try:
      ca = [float(line[a:b]) for a, b in spans]
    except ValueError:
      raise ValueError(
          f"{where}: C-alpha coordinates {line[x - 7 : x + 14]!r} are not "
          "three numbers."
      ) from None
    residue = line[13]
    residue = "C" if residue.islower() else residue
    state = line[16]
    if state not in DSSP8 and state not in " P":
      raise ValueError(
          f"{where}: unknown DSSP state {state!r}; expected one of "
          f"{DSSP8[:-1]!r}, 'P' or blank."
      )
    chain = line[11]
    chains.setdefault(chain, (number, [], [], []))
    _, residues, states, coordinates = chains[chain]
    residues.append(residue)
    states.append("C" if state in " P" else state)
    coordinates.append(ca)
  if not chains:
    raise ValueError(f"{path} line {table}: the residue table is empty.")
  result = []
  for chain, (number, residues, states, coordinates) in chains.items():
    chain_id = f"{pdb_id or name}_{chain.strip() or number}"
    where = f"{path} line {number} (id {chain_id})"
    result.append(
        _DsspChain(
            where,
            chain_id,
            _sequence("".join(residues), where),
            "".join(states),
            np.array(coordinates, dtype=np.float64),
        )
    )
  return result


def read_dssp_secondary_structure(
    path: str, *, states: int = 3
) -> list[Example]:
  """Reads secondary structure from DSSP output, one example per chain.

  The 8 states are DSSP's (blank: coil `C`); 3 states are their standard
  reduction (`DSSP8_TO_3`): a chain `HHHGGTTEEB ` reads as 8-state
  `[1 1 1 0 0 6 6 4 4 3 7]` and 3-state `[0 0 0 0 0 2 2 1 1 1 2]`. Chain
  breaks (`!`) are left out: the sequence is the residues DSSP lists.

  Args:
    path: a `.dssp` file.
    states: 3 or 8.

  Returns:
    The chains, in file order, ids `PDBID_CHAIN`, with int32 [L] labels.

  Raises:
    ValueError: for a file without DSSP's residue table, and at the first
      bad residue line (naming it).
  """
  if states not in (3, 8):
    raise ValueError(f"states must be 3 or 8, not {states}.")
  examples = []
  for chain in _dssp_chains(path):
    text = chain.states
    if states == 3:
      text = "".join(DSSP8_TO_3.get(c, "C") for c in text)
    label = _states(text, states, len(chain.sequence), chain.where)
    examples.append(Example(chain.id, chain.sequence, label))
  return examples


def read_dssp_contacts(path: str) -> list[Example]:
  """Reads C-alpha contact maps from DSSP output, one example per chain.

  DSSP lists the C-alpha coordinates (Angstrom) of every residue it keeps;
  a contact is a pair closer than 8 Angstrom (`contacts_from_ca`). Chain
  breaks (`!`) are left out, so residues missing from the structure are
  missing from the sequence too.

  Returns:
    The chains, in file order, ids `PDBID_CHAIN`, with int8 [L, L] labels.

  Raises:
    ValueError: as `read_dssp_secondary_structure`, and for coordinates not
      about 3.8 Angstrom apart.
  """
  return [
      _contact_example(
          chain.id,
          chain.sequence,
          chain.ca,
          np.ones(len(chain.ca), dtype=bool),
          chain.where,
      )
      for chain in _dssp_chains(path)
  ]


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
  return [_json_example(*record) for record in _json_records(path)]


def _json_records(path: str) -> list[tuple[str, str, Any]]:
  """(where, default id, object) of a JSON array or of JSON lines.

  The file is JSON lines (one object per line, blank lines skipped) unless it
  starts with `[`, when it is one JSON array.
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
  return records


def _json_id(where: str, default_id: str, obj: Any) -> tuple[str, str]:
  """A JSON record's id (its `id`, else `default_id`) and where it is."""
  if not isinstance(obj, dict):
    raise ValueError(f"{where}: expected a JSON object, got {obj!r:.40}.")
  record_id = str(obj.get("id") or "")
  if record_id:
    return record_id, f"{where} (id {record_id})"
  return default_id, where


def _json_example(where: str, default_id: str, obj: Any) -> Example:
  record_id, where = _json_id(where, default_id, obj)
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
