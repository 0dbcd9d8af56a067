"""The benchmark's readers on small real slices of the public files.

The fixtures under tests/data/ are records of the files as their publishers
distribute them (tests/data/SOURCES.md names each source and license).
Expected labels are read here from the files' own letters, independently of
the readers, or written out by hand.
"""

import csv
import json
import os

import numpy as np
import pytest

from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import formats

DATA = os.path.join(os.path.dirname(__file__), "data")


def _data(name):
  return os.path.join(DATA, name)


def _rows(name):
  with open(_data(name), newline="") as f:
    rows = list(csv.reader(f))
  return [[c.strip() for c in rows[0]]] + rows[1:]


def _ids(letters, alphabet):
  return [alphabet.index(c) for c in letters]


# ---------------------------------------------------------- secondary structure


def test_netsurfp_layout_as_prottrans_publishes_it():
  with open(_data("cb513_netsurfp.csv")) as f:
    assert f.readline().startswith("input, dssp3, dssp8, disorder")
  header, *rows = _rows("cb513_netsurfp.csv")
  column = {name: i for i, name in enumerate(header)}
  for states, alphabet in ((3, formats.DSSP3), (8, formats.DSSP8)):
    examples = formats.read_secondary_structure(
        _data("cb513_netsurfp.csv"), states=states
    )
    assert len(examples) == len(rows) == 2
    for example, row in zip(examples, rows):
      assert example.sequence == row[column["input"]].replace(" ", "")
      letters = row[column[f"dssp{states}"]].split()
      disorder = [float(v) for v in row[column["disorder"]].split()]
      want = [
          c if keep else -1
          for c, keep in zip(_ids(letters, alphabet), disorder)
      ]
      assert example.label.tolist() == want
      assert len(example.sequence) == len(letters) >= 20


def test_casp12_seq_sst3_sst8_layout():
  _, *rows = _rows("casp12_seq_sst3_sst8.csv")
  ss3 = formats.read_secondary_structure(_data("casp12_seq_sst3_sst8.csv"))
  ss8 = formats.read_secondary_structure(
      _data("casp12_seq_sst3_sst8.csv"), states=8
  )
  assert [e.sequence for e in ss3] == [r[0] for r in rows]
  assert "X" in ss3[0].sequence  # An unknown residue, kept as X.
  assert [e.label.tolist() for e in ss3] == [
      _ids(r[1], formats.DSSP3) for r in rows
  ]
  assert [e.label.tolist() for e in ss8] == [
      _ids(r[2], formats.DSSP8) for r in rows
  ]
  assert [e.id for e in ss3] == [
      "casp12_seq_sst3_sst8.csv:2",
      "casp12_seq_sst3_sst8.csv:3",
  ]


def test_flip_secondary_structure_fastas():
  path = _data("flip_secondary_structure/sampled.fasta")
  got = {
      split: formats.read_flip_secondary_structure(path, split)
      for split in ("train", "valid", "test")
  }
  assert {s: [e.id for e in v] for s, v in got.items()} == {
      "train": ["1amt-C"],
      "valid": ["2nnu-B"],
      "test": ["6jk2-A"],
  }
  (train,) = got["train"]
  assert train.sequence == "XAPAAAAQAVAGLAPVAAEQF"
  # CCHHHHHHHHHHCHHHHHHHC, mask 101111...: residue 2 unresolved.
  assert train.label.tolist() == [2, -1] + [0] * 10 + [2] + [0] * 7 + [2]
  assert got["valid"][0].label.tolist()[:5] == [-1, -1, 2, 2, 0]
  assert (got["test"][0].label >= 0).all()


def test_flip_secondary_structure_errors(tmp_path):
  with open(_data("flip_secondary_structure/sampled.fasta")) as f:
    text = f.read()
  labels = tmp_path / "sampled.fasta"
  labels.write_text(text.replace("CCHHHHHHHHHHCHHHHHHHC", "CCHHHH"))
  for name in ("sequences.fasta", "mask.fasta"):
    with open(_data(f"flip_secondary_structure/{name}")) as f:
      (tmp_path / name).write_text(f.read())
  with pytest.raises(
      ValueError,
      match=r"sampled.fasta line 1 \(id 1amt-C\): label has 6 states, "
      "sequence has 21",
  ):
    formats.read_flip_secondary_structure(str(labels), "train")
  (tmp_path / "sequences.fasta").write_text(">other\nMKT\n")
  with pytest.raises(ValueError, match="no sequence of 1amt-C"):
    formats.read_flip_secondary_structure(str(labels), "train")


# ----------------------------------------------------------------------- GB1


def test_flip_gb1_csv_and_fasta_give_the_same_splits():
  _, *rows = _rows("flip_gb1_three_vs_rest.csv")
  for split, want in (
      ("train", [0, 1]),
      ("valid", [2]),
      ("test", [3, 4]),
  ):
    csv_split = formats.read_flip(_data("flip_gb1_three_vs_rest.csv"), split)
    fasta_split = formats.read_flip(
        _data("flip_gb1_three_vs_rest.fasta"), split
    )
    expected = [(rows[i][0], np.float32(rows[i][1])) for i in want]
    for examples in (csv_split, fasta_split):
      assert [(e.sequence, e.label) for e in examples] == expected
      assert all(len(e.sequence) == 265 for e in examples)
  ids = [
      e.id
      for e in formats.read_flip(_data("flip_gb1_three_vs_rest.fasta"), "test")
  ]
  assert ids == ["Sequence2990", "Sequence2991"]


def test_flip_fasta_errors(tmp_path):
  with open(_data("flip_gb1_three_vs_rest.fasta")) as f:
    text = f.read()
  bad = tmp_path / "gb1.fasta"
  bad.write_text(text.replace(" SET=train VALIDATION=True", ""))
  with pytest.raises(
      ValueError,
      match=r"gb1.fasta line 5 \(id Sequence12\): no SET=, VALIDATION= in the "
      "header",
  ):
    formats.read_flip(str(bad), "train")
  bad.write_text(text.replace("TARGET=1.0 ", "TARGET 1.0 "))
  with pytest.raises(ValueError, match="header word 'TARGET' is not KEY=VALUE"):
    formats.read_flip(str(bad), "train")
  bad.write_text("MKT\n" + text)
  with pytest.raises(ValueError, match="gb1.fasta line 1: text before"):
    formats.read_flip(str(bad), "train")


# --------------------------------------------------------------- fluorescence


def test_fluorescence_csv_and_tape_json():
  _, *rows = _rows("tape_fluorescence_valid.csv")
  from_csv = formats.read_regression(_data("tape_fluorescence_valid.csv"))
  from_json = formats.read_regression(_data("tape_fluorescence_valid.json"))
  expected = [(r[0], np.float32(r[1])) for r in rows]
  assert [(e.sequence, e.label) for e in from_csv] == expected
  assert [(e.sequence, e.label) for e in from_json] == expected
  assert [e.id for e in from_json] == ["0", "1", "2", "3"]
  assert all(e.label.shape == () for e in from_json)


def test_tape_json_errors_and_lmdb(tmp_path):
  with open(_data("tape_fluorescence_valid.json")) as f:
    records = json.load(f)
  path = tmp_path / "fluorescence_valid.json"
  bad = [dict(r) for r in records]
  bad[2]["protein_length"] += 1
  path.write_text(json.dumps(bad))
  with pytest.raises(
      ValueError,
      match=r"fluorescence_valid.json record 3 \(id 2\): protein_length is "
      r"\d+, the sequence has \d+ residues",
  ):
    formats.read_regression(str(path))
  bad = [dict(r) for r in records]
  bad[1]["log_fluorescence"] = [1.0, 2.0]
  path.write_text("\n".join(json.dumps(r) for r in bad))  # JSON lines.
  with pytest.raises(ValueError, match=r"line 2 \(id 1\): log_fluorescence is"):
    formats.read_regression(str(path))
  (tmp_path / "fluorescence_valid.lmdb").mkdir()
  with pytest.raises(ValueError, match="LMDB database .* is not read"):
    formats.read_regression(str(tmp_path / "fluorescence_valid.lmdb"))


# ----------------------------------------------------------------------- DSSP

# The slice's residues (chain break `!` after the twelfth) and 8 states.
DSSP_SEQUENCE = "HHHGTENLYFQG" + "ATMAAQS"
DSSP_STATES8 = "   HHHHHHT  " + " HHHHHH"


def test_dssp_sequence_states_and_reduction():
  path = _data("7k7w_slice.dssp")
  (ss8,) = formats.read_dssp_secondary_structure(path, states=8)
  (ss3,) = formats.read_dssp_secondary_structure(path, states=3)
  assert ss8.id == ss3.id == "7K7W_A"
  assert ss8.sequence == DSSP_SEQUENCE
  assert ss8.label.tolist() == _ids(
      DSSP_STATES8.replace(" ", "C"), formats.DSSP8
  )
  # H stays H, T and coil are C.
  assert ss3.label.tolist() == _ids("CCCHHHHHHCCC" + "CHHHHHH", formats.DSSP3)


def test_dssp_8_to_3_reduction_of_every_state(tmp_path):
  with open(_data("7k7w_slice.dssp")) as f:
    lines = f.read().splitlines(keepends=True)
  # States G H I B E S T, DSSP 4's P, blank on the first nine residues; a
  # bridged cysteine (lower case) on the first.
  for i, state in enumerate("GHIBESTP "):
    line = lines[4 + i]
    lines[4 + i] = line[:16] + state + line[17:]
  lines[4] = lines[4][:13] + "a" + lines[4][14:]
  path = tmp_path / "x.dssp"
  path.write_text("".join(lines))
  (ss8,) = formats.read_dssp_secondary_structure(str(path), states=8)
  (ss3,) = formats.read_dssp_secondary_structure(str(path), states=3)
  assert ss8.sequence[0] == "C"
  assert ss8.label.tolist()[:9] == _ids("GHIBESTCC", formats.DSSP8)
  assert ss3.label.tolist()[:9] == _ids("HHHEECCCC", formats.DSSP3)


def test_dssp_contacts():
  (example,) = formats.read_dssp_contacts(_data("7k7w_slice.dssp"))
  labels = example.label
  assert labels.shape == (19, 19) and labels.dtype == np.int8
  assert (labels == labels.T).all() and (np.diag(labels) == 1).all()
  # C-alpha atoms of residues 1, 2 and 19 (lines 1, 2, 20 of the table),
  # copied from the file: 1-2 neighbours (3.8 A), 1-19 far apart.
  ca = {
      0: (40.6, 19.1, 18.3),
      1: (37.9, 16.6, 17.4),
      18: (19.4, 20.6, 16.8),
  }
  with open(_data("7k7w_slice.dssp")) as f:
    table = f.read().splitlines()[4:]
  rows = [line for line in table if line[13] != "!"]
  for i, xyz in ca.items():
    assert tuple(float(v) for v in rows[i][115:136].split()) == xyz
  assert labels[0, 1] == 1 and labels[0, 18] == 0
  # A helix: residues i and i + 3 lie about 5 A apart.
  assert all(labels[i, i + 3] == 1 for i in range(13, 16))


def test_dssp_errors(tmp_path):
  path = tmp_path / "x.dssp"
  path.write_text("HEADER something\nnot a table\n")
  with pytest.raises(ValueError, match="x.dssp line 1: not DSSP output"):
    formats.read_dssp_contacts(str(path))
  with open(_data("7k7w_slice.dssp")) as f:
    lines = f.read().splitlines(keepends=True)
  lines[6] = lines[6][:16] + "Q" + lines[6][17:]
  path.write_text("".join(lines))
  with pytest.raises(
      ValueError, match=r"x.dssp line 7: unknown DSSP state 'Q'"
  ):
    formats.read_dssp_secondary_structure(str(path))
  lines[6] = lines[6][:118] + "  ab.c" + lines[6][124:]
  path.write_text("".join(lines))
  with pytest.raises(ValueError, match="x.dssp line 7: C-alpha coordinates"):
    formats.read_dssp_contacts(str(path))


# ------------------------------------------------------------- other layouts


def test_a_file_of_no_layout_is_refused_with_file_row_and_reason(tmp_path):
  path = tmp_path / "mystery.csv"
  path.write_text("protein,structure\nMKT,CCH\n")
  with pytest.raises(
      ValueError,
      match=r"mystery.csv row 1: no 3-state secondary-structure layout: "
      r"columns \['protein', 'structure'\]; expected NetSurfP-2.0",
  ):
    formats.read_secondary_structure(str(path))
  with pytest.raises(
      ValueError, match=r"mystery.csv row 1: no layout of a value per protein"
  ):
    formats.read_regression(str(path))
  with pytest.raises(ValueError, match=r"mystery.csv: no column 'sequence'"):
    formats.read_flip(str(path), "train")


# ------------------------------------------------------------ tasks, by name


def test_load_task_reads_every_task_from_the_real_slices():
  ssp = {
      "train": "flip_secondary_structure/sampled.fasta",
      "valid": "flip_secondary_structure/sampled.fasta",
      "test": {
          "casp12": "casp12_seq_sst3_sst8.csv",
          "cb513": "cb513_netsurfp.csv",
          "dssp": "7k7w_slice.dssp",
      },
  }
  layouts = {
      "ssp3": ssp,
      "ssp8": {
          "train": "cb513_netsurfp.csv",
          "valid": None,
          "test": {"casp12": "casp12_seq_sst3_sst8.csv"},
      },
      "gb1": {
          "train": "flip_gb1_three_vs_rest.fasta",
          "valid": "flip_gb1_three_vs_rest.csv",
          "test": {"three_vs_rest": "flip_gb1_three_vs_rest.csv"},
      },
      "fluorescence": {
          "train": "tape_fluorescence_valid.json",
          "valid": "tape_fluorescence_valid.csv",
          "test": {"tape": "tape_fluorescence_valid.csv"},
      },
      "contact": {
          "train": "7k7w_slice.dssp",
          "valid": "7k7w_slice.dssp",
          "test": {"casp14": "7k7w_slice.dssp"},
      },
  }
  sizes = {}
  for name, files in layouts.items():
    splits = datasets.load_task(name, DATA, files)
    sizes[name] = [len(splits["train"]) + len(splits["valid"])] + [
        len(v) for v in splits["test"].values()
    ]
  assert sizes == {
      "ssp3": [2, 2, 2, 1],
      "ssp8": [2, 2],
      "gb1": [3, 2],
      "fluorescence": [8, 4],
      "contact": [2, 1],
  }
  with pytest.raises(ValueError, match="3 states only; ssp8 needs 8"):
    datasets.load_task("ssp8", DATA, ssp)


def test_cli_reads_the_slices_through_a_layout_file(tmp_path):
  from ankh3_tasks.downstream import __main__ as cli  # pylint: disable=g-import-not-at-top

  layout = {
      "gb1": {
          "train": "flip_gb1_three_vs_rest.fasta",
          "valid": "flip_gb1_three_vs_rest.fasta",
          "test": {"three_vs_rest": "flip_gb1_three_vs_rest.fasta"},
      },
      "contact": {
          "train": "7k7w_slice.dssp",
          "valid": "7k7w_slice.dssp",
          "test": {"casp14": "7k7w_slice.dssp"},
      },
  }
  files = tmp_path / "layout.json"
  files.write_text(json.dumps(layout))
  fasta = tmp_path / "all.fasta"
  flags = [f"--data_dir={DATA}", f"--files={files}", f"--write_fasta={fasta}"]
  assert cli.main(["--tasks=gb1,contact", *flags]) == 0
  sequences = fasta.read_text().split()[1::2]
  # Five GB1 variants and the DSSP chain, each once.
  assert len(sequences) == 6 and DSSP_SEQUENCE in sequences
  with pytest.raises(ValueError, match="Task 'ssp3': 3 file"):
    cli.main(["--tasks=ssp3", *flags])  # Not in the file: the default names.
  files.write_text(json.dumps({"ssp4": layout["gb1"]}))
  with pytest.raises(ValueError, match=r"unknown tasks \['ssp4'\]"):
    cli.main(["--tasks=gb1", *flags])
