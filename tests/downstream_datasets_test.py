"""Tests of the benchmark readers: round trips and named errors."""

import csv
import gzip
import json
import os

import numpy as np
import pytest

from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import formats


def _write(path, text, gz=False):
  opener = gzip.open if gz else open
  with opener(path, "wt", newline="") as f:
    f.write(text)
  return str(path)


def _write_csv(path, rows, gz=False):
  opener = gzip.open if gz else open
  with opener(path, "wt", newline="") as f:
    csv.writer(f).writerows(rows)
  return str(path)


def _labels(examples):
  return [e.label.tolist() for e in examples]


# --------------------------------------------------------- secondary structure

SS_ROWS = [
    ["input", "dssp3", "dssp8", "disorder"],
    [
        "MKTAYIAK",
        "CCHHHEEC",
        "CGHIBEST",
        "1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0",
    ],
    # Spaced sequence and 3-state label; 8 states with DSSP's blank and `-`
    # for coil; the mask as a list.
    ["G S H", "C E H", "- S", "[1.0, 1.0, 1.0]"],
]


@pytest.mark.parametrize("gz", [False, True])
def test_secondary_structure_round_trip(tmp_path, gz):
  path = _write_csv(tmp_path / ("ss.csv" + ".gz" * gz), SS_ROWS, gz=gz)
  name = os.path.basename(path)
  ss3 = formats.read_secondary_structure(path, mask_column="disorder")
  assert [e.id for e in ss3] == [f"{name}:2", f"{name}:3"]
  assert [e.sequence for e in ss3] == ["MKTAYIAK", "GSH"]
  # HEC: H 0, E 1, C 2; the last two residues of the first are disordered.
  assert _labels(ss3) == [[2, 2, 0, 0, 0, 1, -1, -1], [2, 1, 0]]
  assert all(e.label.dtype == np.int32 for e in ss3)
  ss8 = formats.read_secondary_structure(path, states=8, mask_column="")
  # GHIBESTC: G 0, H 1, I 2, B 3, E 4, S 5, T 6, C 7; no mask.
  assert _labels(ss8) == [[7, 0, 1, 2, 3, 4, 5, 6], [7, 7, 5]]
  # The NetSurfP-2.0 layout masks by `disorder` unless told otherwise.
  default = formats.read_secondary_structure(path, states=8)
  assert _labels(default) == [[7, 0, 1, 2, 3, 4, -1, -1], [7, 7, 5]]


def test_secondary_structure_ids_and_other_columns(tmp_path):
  path = _write_csv(
      tmp_path / "ss.tsv",
      [["seq", "q3", "keep", "id"], ["MKT", "HHE", "101", "1ABC_A"]],
  )
  with open(path) as f:
    text = f.read().replace(",", "\t")
  _write(path, text)
  (example,) = formats.read_secondary_structure(
      path, sequence_column="seq", label_column="q3", mask_column="keep"
  )
  assert example.id == "1ABC_A"
  assert example.label.tolist() == [0, -1, 1]


def _bad_ss(tmp_path, row, states=3, **kwargs):
  rows = [
      ["id", "input", "dssp3", "dssp8", "disorder"],
      ["ok", "MKTAYIAK", "CCHHHEEC", "CGHIBEST", "1 1 1 1 1 1 1 1"],
      ["1ABC_A"] + row,
  ]
  path = _write_csv(tmp_path / "ss.csv", rows)
  with pytest.raises(ValueError) as error:
    formats.read_secondary_structure(path, states=states, **kwargs)
  return str(error.value)


@pytest.mark.parametrize(
    "row, kwargs, reason",
    [
        (
            ["MKTAYIAK", "CCHHHEE", "CGHIBEST", "1 1 1 1 1 1 1 1"],
            {},
            "label has 7 states, sequence has 8 residues",
        ),
        (
            ["MKTAYIAK", "CCHXHEEC", "CGHIBEST", "1 1 1 1 1 1 1 1"],
            {},
            "unknown 3-state label 'X' at residue 4",
        ),
        (  # An 8-state letter in the 3-state column.
            ["MKTAYIAK", "CCHGHEEC", "CGHIBEST", "1 1 1 1 1 1 1 1"],
            {},
            "unknown 3-state label 'G'",
        ),
        (
            ["MKTAYIAK", "CCHHHEEC", "CGHIBESQ", "1 1 1 1 1 1 1 1"],
            {"states": 8},
            "unknown 8-state label 'Q' at residue 8",
        ),
        (
            ["MKTAYIAK", "CCHHHEEC", "CGHIBEST", "1 1 1 1 1 1 1"],
            {"mask_column": "disorder"},
            "disorder has 7 values, sequence has 8 residues",
        ),
        (
            ["MKTAYIAK", "CCHHHEEC", "CGHIBEST", "1 1 1 x 1 1 1 1"],
            {"mask_column": "disorder"},
            "disorder value 'x' is not a number",
        ),
        (
            ["MK1AYIAK", "CCHHHEEC", "CGHIBEST", "1 1 1 1 1 1 1 1"],
            {},
            "invalid characters '1'",
        ),
        (["MKTAYIAK", "CCHHHEEC"], {}, "fewer fields than the 5 of the header"),
    ],
)
def test_secondary_structure_errors_name_file_row_id_and_reason(
    tmp_path, row, kwargs, reason
):
  message = _bad_ss(tmp_path, row, **kwargs)
  assert "ss.csv row 3 (id 1ABC_A): " in message
  assert reason in message


def test_secondary_structure_missing_column(tmp_path):
  path = _write_csv(tmp_path / "ss.csv", [["input", "dssp3"], ["MK", "CC"]])
  with pytest.raises(
      ValueError, match=r"ss.csv row 1: no 8-state secondary-structure layout"
  ):
    formats.read_secondary_structure(path, states=8)
  with pytest.raises(ValueError, match=r"ss.csv: no column 'dssp8'"):
    formats.read_secondary_structure(
        path, states=8, sequence_column="input", label_column="dssp8"
    )
  with pytest.raises(ValueError, match=r"no column 'disorder'"):
    formats.read_secondary_structure(path, mask_column="disorder")
  with pytest.raises(ValueError, match="states must be 3 or 8"):
    formats.read_secondary_structure(path, states=4)


# --------------------------------------------------------------- regression


def test_regression_csv_round_trip_and_errors(tmp_path):
  path = _write_csv(
      tmp_path / "fl.csv",
      [
          ["primary", "log_fluorescence", "num_mutations"],
          ["SKGEEL", "3.5", "1"],
          ["skgeea", "-1.25", "2"],
      ],
      gz=True,
  )
  examples = formats.read_regression_csv(path)
  assert [(e.id, e.sequence) for e in examples] == [
      ("fl.csv:2", "SKGEEL"),
      ("fl.csv:3", "SKGEEA"),
  ]
  assert [e.label.shape for e in examples] == [(), ()]
  assert [e.label.dtype for e in examples] == [np.float32] * 2
  assert [float(e.label) for e in examples] == [3.5, -1.25]
  with pytest.raises(ValueError, match=r"fl.csv: no column 'target'"):
    formats.read_regression_csv(path, value_column="target")
  for bad in ("abc", "nan", ""):
    path = _write_csv(
        tmp_path / "bad.csv",
        [["id", "primary", "log_fluorescence"], ["p1", "MK", "1"]]
        + [["GFP_7", "MKT", bad]],
    )
    with pytest.raises(ValueError) as error:
      formats.read_regression_csv(path)
    assert (
        f"bad.csv row 3 (id GFP_7): log_fluorescence value {bad!r} is not a "
        "finite number"
        in str(error.value)
    )


# --------------------------------------------------------------------- FLIP

FLIP_ROWS = [
    ["sequence", "target", "set", "validation"],
    ["MKTA", "1.0", "train", "False"],
    ["MKTC", "2.0", "train", "True"],
    ["MKTD", "3.0", "test", ""],
    ["MKTE", "4.0", "train", "False"],
]


def test_flip_splits(tmp_path):
  path = _write_csv(tmp_path / "three_vs_rest.csv", FLIP_ROWS)
  got = {
      split: [
          (e.sequence, float(e.label)) for e in formats.read_flip(path, split)
      ]
      for split in ("train", "valid", "test")
  }
  assert got == {
      "train": [("MKTA", 1.0), ("MKTE", 4.0)],
      "valid": [("MKTC", 2.0)],
      "test": [("MKTD", 3.0)],
  }
  assert [e.id for e in formats.read_flip(path, "test")] == [
      "three_vs_rest.csv:4"
  ]
  with pytest.raises(ValueError, match="split must be train, valid or test"):
    formats.read_flip(path, "validation")


@pytest.mark.parametrize(
    "row, reason",
    [
        (
            ["MKTF", "5.0", "dev", "False"],
            "set is 'dev', not 'train' or 'test'",
        ),
        (["MKTF", "5.0", "train", "maybe"], "validation value 'maybe' is not"),
        (["MKTF", "high", "train", "False"], "target value 'high' is not a"),
    ],
)
def test_flip_errors(tmp_path, row, reason):
  path = _write_csv(tmp_path / "gb1.csv", FLIP_ROWS + [row])
  with pytest.raises(ValueError) as error:
    formats.read_flip(path, "train")
  assert "gb1.csv row 6: " + reason in str(error.value)


# ----------------------------------------------------------------- contacts

# A hairpin of 8 residues (Angstrom): 0-3 along x at y = 0, 4-7 back at y = 5.
HAIRPIN = np.array(
    [[3.8 * i, 0.0, 0.0] for i in range(4)]
    + [[3.8 * (7 - i), 5.0, 0.0] for i in range(4, 8)]
)
# Residue 5 has no coordinates. Distances by hand: along a strand 3.8, 7.6
# (contact), 11.4 (none); across, 5.0 (i + j = 7), sqrt(3.8^2 + 5^2) = 6.3
# (i + j = 6 or 8), sqrt(7.6^2 + 5^2) = 9.1 (i + j = 5 or 9, none).
HAIRPIN_CONTACTS = [
    [1, 1, 1, 0, 0, -1, 1, 1],
    [1, 1, 1, 1, 0, -1, 1, 1],
    [1, 1, 1, 1, 1, -1, 1, 0],
    [0, 1, 1, 1, 1, -1, 0, 0],
    [0, 0, 1, 1, 1, -1, 1, 0],
    [-1, -1, -1, -1, -1, -1, -1, -1],
    [1, 1, 1, 0, 1, -1, 1, 1],
    [1, 1, 0, 0, 0, -1, 1, 1],
]
HAIRPIN_MASK = "+++++-++"


def test_contacts_from_ca():
  valid = np.array([c == "+" for c in HAIRPIN_MASK])
  ca = HAIRPIN.copy()
  ca[5] = np.nan  # Not read: residue 5 is not valid.
  labels = formats.contacts_from_ca(ca, valid)
  assert labels.dtype == np.int8
  assert labels.tolist() == HAIRPIN_CONTACTS
  # The threshold is strict: 7.6 is a contact below 8, not below 7.6.
  assert formats.contacts_from_ca(ca, valid, threshold=7.6)[0, 2] == 0
  with pytest.raises(ValueError, match="expected \\[L, 3\\]"):
    formats.contacts_from_ca(ca[:, :2], valid)
  with pytest.raises(ValueError, match=r"residue\(s\) \[5\] are valid"):
    formats.contacts_from_ca(ca, np.ones(8, bool))


def _proteinnet_lines(
    record_id, sequence, ca, mask, scale=100.0, secondary=True
):
  """A ProteinNet record; coordinates in picometres (`scale` per Angstrom)."""
  atoms = []
  for i, point in enumerate(ca):
    if mask[i] == "-":
      atoms += [[0.0, 0.0, 0.0]] * 3  # ProteinNet writes zeros.
    else:  # N at the origin and C far off: only CA may be read.
      atoms += [[0.0, 0.0, 0.0], list(point * scale), [9e4 * i, -7e3, 1e3]]
  atoms = np.array(atoms)
  lines = ["[ID]", record_id, "[PRIMARY]", sequence, "[EVOLUTIONARY]"]
  lines += ["\t".join(["0.5"] * len(sequence))] * 21
  if secondary:
    lines += ["[SECONDARY]", "L" * len(sequence)]
  lines.append("[TERTIARY]")
  # Integers in picometres, written as ProteinNet does (`1526.`).
  lines += ["\t".join(f"{v:.0f}." for v in atoms[:, axis]) for axis in range(3)]
  lines += ["[MASK]", mask]
  return lines


def _two_records():
  line = np.array([[3.8 * i, 0.0, 0.0] for i in range(7)])
  return (
      _proteinnet_lines("TBM#T0001", "ACDEFGHI", HAIRPIN, HAIRPIN_MASK)
      + [""]
      + _proteinnet_lines("FM#T0002", "MKTAYIA", line, "+" * 7, secondary=False)
  )  # No blank line at the end.


@pytest.mark.parametrize("gz", [False, True])
def test_proteinnet_round_trip(tmp_path, gz):
  path = _write(tmp_path / "testing", "\n".join(_two_records()), gz=gz)
  first, second = formats.read_proteinnet(path)
  assert (first.id, first.sequence) == ("TBM#T0001", "ACDEFGHI")
  assert first.label.dtype == np.int8
  assert first.label.tolist() == HAIRPIN_CONTACTS
  assert (second.id, second.sequence) == ("FM#T0002", "MKTAYIA")
  # A straight line at 3.8: contacts up to 2 apart (7.6 < 8), not 3 (11.4).
  i, j = np.indices((7, 7))
  assert second.label.tolist() == (abs(i - j) <= 2).astype(int).tolist()


def _line_of(lines, header, offset):
  return lines.index(header) + 1 + offset  # 1-based line numbers


def test_proteinnet_errors_name_file_line_id_and_reason(tmp_path):
  def read_error(lines):
    path = _write(tmp_path / "testing", "\n".join(lines) + "\n")
    with pytest.raises(ValueError) as error:
      formats.read_proteinnet(path)
    return str(error.value)

  good = _proteinnet_lines("TBM#T0001", "ACDEFGHI", HAIRPIN, HAIRPIN_MASK)
  lines = list(good)
  y = _line_of(lines, "[TERTIARY]", 2)
  lines[y - 1] = lines[y - 1].rsplit("\t", 1)[0]  # 23 values
  assert (
      f"testing line {y} (id TBM#T0001): TERTIARY y line has 23 values, "
      "expected 3 atoms x 8 residues = 24"
      in read_error(lines)
  )
  lines = list(good)
  x = _line_of(lines, "[TERTIARY]", 1)
  lines[x - 1] = lines[x - 1].replace("380.", "3.8e", 1)
  assert (
      f"testing line {x} (id TBM#T0001): TERTIARY x value '3.8e' is not a "
      "number"
      in read_error(lines)
  )
  lines = list(good)
  lines[-1] = "+++++++"
  assert (
      f"testing line {len(lines)} (id TBM#T0001): MASK has 7 residues, "
      "sequence has 8"
      in read_error(lines)
  )
  lines[-1] = "+++++x++"
  assert "MASK holds letters other than '+' and '-'" in read_error(lines)
  # The same record with the tertiary section missing.
  start = lines.index("[TERTIARY]")
  lines = good[:start] + good[start + 4 :]
  assert "testing line 1 (id TBM#T0001): no [TERTIARY] section" in read_error(
      lines
  )
  # Coordinates in Angstrom where picometres belong.
  lines = _proteinnet_lines(
      "TBM#T0001", "ACDEFGHI", HAIRPIN * 100, HAIRPIN_MASK, scale=100.0
  )
  assert "median 380 apart; expected about 3.8 Angstrom" in read_error(lines)


def _json_record(**fields):
  ca = [None if c == "-" else list(p) for p, c in zip(HAIRPIN, HAIRPIN_MASK)]
  record = {"id": "T1024", "sequence": "ACDEFGHI", "ca": ca}
  record.update(fields)
  return {k: v for k, v in record.items() if v is not None}


def test_contact_json_lines_and_array(tmp_path):
  tertiary = [
      [[0.0, 0.0, 0.0], list(p), [9.0 * i, 0.0, 0.0]]
      for i, p in enumerate(HAIRPIN)
  ]
  records = [
      _json_record(),
      # TAPE's field names; residue 5 has coordinates but is masked.
      {
          "primary": "ACDEFGHI",
          "tertiary": tertiary,
          "valid_mask": [c == "+" for c in HAIRPIN_MASK],
      },
  ]
  path = _write(
      tmp_path / "casp14.jsonl.gz",
      "\n".join(json.dumps(r) for r in records) + "\n\n",
      gz=True,
  )
  examples = formats.read_contact_json(path)
  assert [e.id for e in examples] == ["T1024", "casp14.jsonl.gz:2"]
  assert [e.label.tolist() for e in examples] == [HAIRPIN_CONTACTS] * 2
  path = _write(tmp_path / "casp14.json", json.dumps(records, indent=1))
  examples = formats.read_contact_json(path)
  assert [e.id for e in examples] == ["T1024", "casp14.json:2"]
  assert [e.label.tolist() for e in examples] == [HAIRPIN_CONTACTS] * 2


@pytest.mark.parametrize(
    "record, reason",
    [
        (
            _json_record(sequence="ACDEFGH"),
            "coordinates of 8 residues, sequence has 7",
        ),
        (
            _json_record(valid_mask=[True] * 8),
            "residue 6 is marked valid but has no finite coordinates",
        ),
        (
            _json_record(valid_mask=[True] * 7),
            "valid_mask has 7 values, sequence has 8 residues",
        ),
        (
            _json_record(ca=[[0.0, 1.0]] * 8),
            "ca is not a [L, 3] list of numbers",
        ),
        (
            _json_record(ca=[list(p * 100) for p in HAIRPIN]),
            "median 380 apart; expected about 3.8 Angstrom",
        ),
        (_json_record(ca=None), "no 'ca' (or 'tertiary') coordinates"),
    ],
)
def test_contact_json_errors(tmp_path, record, reason):
  good = json.dumps(_json_record(id="T1000"))
  path = _write(tmp_path / "c.jsonl", good + "\n" + json.dumps(record) + "\n")
  with pytest.raises(ValueError) as error:
    formats.read_contact_json(path)
  assert "c.jsonl line 2 (id T1024): " in str(error.value)
  assert reason in str(error.value)


def test_contact_json_bad_json(tmp_path):
  path = _write(tmp_path / "c.jsonl", '{"id": "T1"}\n{"id": \n')
  with pytest.raises(ValueError, match=r"c.jsonl line 2: not a JSON object"):
    formats.read_contact_json(path)


# --------------------------------------------------------------------- tasks


def test_task_table():
  assert {
      n: (s.kind, s.num_outputs, s.metric) for n, s in datasets.TASKS.items()
  } == {
      "ssp3": ("residue", 3, "accuracy"),
      "ssp8": ("residue", 8, "accuracy"),
      "fluorescence": ("protein", 1, "spearman"),
      "gb1": ("protein", 1, "spearman"),
      "contact": ("contact", 1, "contact"),
  }
  assert set(datasets.DEFAULT_FILES) == set(datasets.TASKS)


def _ssp_file(path, sequences):
  rows = [["input", "dssp3", "dssp8", "disorder"]]
  for s in sequences:
    rows.append([
        s,
        "C" * len(s),
        "T" * len(s),
        " ".join(["1.0"] * (len(s) - 1) + ["0.0"]),
    ])
  return _write_csv(path, rows)


def test_load_task_ssp_holds_out_valid_and_masks_disorder(tmp_path):
  rng = np.random.default_rng(0)
  sequences = [
      "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=12))
      for _ in range(200)
  ]
  sequences += sequences[:20]  # Copies stay on the side of their original.
  (tmp_path / "secondary_structure").mkdir()
  _ssp_file(tmp_path / "secondary_structure/training_hhblits.csv", sequences)
  _ssp_file(tmp_path / "secondary_structure/CASP12.csv", ["MKT"])
  _ssp_file(tmp_path / "secondary_structure/CASP14.csv", ["GSHM", "AC"])
  splits = datasets.load_task("ssp8", str(tmp_path))
  train, valid = splits["train"], splits["valid"]
  assert len(train) + len(valid) == 220
  assert 1 <= len(valid) <= 30
  assert not {e.sequence for e in train} & {e.sequence for e in valid}
  again = datasets.load_task("ssp8", str(tmp_path))
  assert [e.id for e in again["valid"]] == [e.id for e in valid]
  assert sorted(splits["test"]) == ["casp12", "casp14"]
  # T is 6 of GHIBESTC; the last residue is disordered.
  assert [e.label.tolist() for e in splits["test"]["casp14"]] == [
      [6, 6, 6, -1],
      [6, -1],
  ]
  os.remove(tmp_path / "secondary_structure/CASP14.csv")
  with pytest.raises(ValueError) as error:
    datasets.load_task("ssp3", str(tmp_path))
  message = str(error.value)
  assert "1 file(s) missing" in message
  assert "training_hhblits.csv\n" in message
  assert "test casp12: " in message
  assert "CASP14.csv  (missing)" in message


def test_load_task_gb1_fluorescence_and_contact(tmp_path):
  (tmp_path / "gb1").mkdir()
  _write_csv(tmp_path / "gb1/three_vs_rest.csv", FLIP_ROWS)
  gb1 = datasets.load_task("gb1", str(tmp_path))
  assert [len(gb1["train"]), len(gb1["valid"])] == [2, 1]
  assert [e.sequence for e in gb1["test"]["three_vs_rest"]] == ["MKTD"]

  table = [["seq", "y"], ["MKT", "0.5"]]
  absolute = _write_csv(tmp_path / "a.csv", table)
  files = {
      "train": absolute,  # Absolute paths are kept.
      "valid": absolute,
      "test": {"tape_fluorescence": absolute},
  }
  fluorescence = datasets.load_task(
      "fluorescence",
      "/elsewhere",
      files=files,
      sequence_column="seq",
      value_column="y",
  )
  assert float(fluorescence["test"]["tape_fluorescence"][0].label) == 0.5

  _write(tmp_path / "testing", "\n".join(_two_records()))
  _write(tmp_path / "c.jsonl", json.dumps(_json_record()) + "\n")
  contact = datasets.load_task(
      "contact",
      str(tmp_path),
      files={
          "train": "testing",
          "valid": "testing",
          "test": {"proteinnet": "testing", "casp14": "c.jsonl"},
      },
  )
  assert [e.id for e in contact["test"]["proteinnet"]] == [
      "TBM#T0001",
      "FM#T0002",
  ]
  assert contact["test"]["casp14"][0].label.tolist() == HAIRPIN_CONTACTS
  with pytest.raises(ValueError, match="Unknown task 'ssp4'"):
    datasets.load_task("ssp4", str(tmp_path))
