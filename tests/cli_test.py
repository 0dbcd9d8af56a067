"""Tests that the command lines end a user's mistake with one line."""

import json

import pytest

from ankh3_tasks import cli
from conftest import write_fasta


def _run(capsys, main, *argv):
  status = cli.run(main, list(argv))
  captured = capsys.readouterr()
  assert "Traceback" not in captured.err
  return status, captured.err


def test_bugs_keep_their_traceback_and_users_can_ask_for_it(monkeypatch):
  def broken(argv):
    del argv
    raise RuntimeError("a bug")

  def mistaken(argv):
    del argv
    raise ValueError("a mistake")

  with pytest.raises(RuntimeError, match="a bug"):
    cli.run(broken)
  assert cli.run(mistaken) == 1
  monkeypatch.setenv("ANKH3_TRACEBACK", "1")
  with pytest.raises(ValueError, match="a mistake"):
    cli.run(mistaken)


def test_embed_names_the_problem_before_any_work(tmp_path, capsys):
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  flags = ["--checkpoint=unused", "--gin_file=unused"]
  missing = tmp_path / "missing.fasta"
  status, err = _run(
      capsys, embed.main, *flags, f"--input={missing}", "--output=x.npz"
  )
  assert status == 1 and err == f"error: No such input: {missing}\n"
  fasta = write_fasta(tmp_path / "in.fasta", [("p1", ["MK"]), ("p1", ["M"])])
  status, err = _run(
      capsys, embed.main, *flags, f"--input={fasta}", "--output=x.txt"
  )
  assert status == 1 and "must end in .npz, .h5 or .hdf5" in err
  status, err = _run(
      capsys, embed.main, *flags, f"--input={fasta}", "--output=x.npz"
  )
  assert status == 1 and "duplicate ids" in err and "p1" in err


def test_inspect_without_a_data_directory(capsys, monkeypatch):
  from ankh3_tasks import inspect  # pylint: disable=g-import-not-at-top

  monkeypatch.delenv("ANKH3_DATA_DIR", raising=False)
  status, err = _run(capsys, inspect.main, "ankh3_uniref50_multitask", "-n1")
  assert status == 1
  assert "environment variable ANKH3_DATA_DIR=DIR (every command)" in err


def test_completions_with_duplicate_ids_are_refused(tmp_path, capsys):
  from ankh3_tasks import complete  # pylint: disable=g-import-not-at-top

  lines = [
      {
          "inputs": {"id": "p1", "prefix": "MKT", "continuation": "AY"},
          "prediction_tokens": [8, 22, 1],
      }
  ] * 2
  path = tmp_path / "x-predict.jsonl-00000-of-00001"
  path.write_text("".join(json.dumps(line) + "\n" for line in lines))
  out = tmp_path / "out.fasta"
  status, err = _run(
      capsys,
      complete.main,
      "to_fasta",
      f"--predictions={path}",
      f"--output={out}",
  )
  assert status == 1 and "duplicate ids" in err and "'p1'" in err
  assert not out.exists()


@pytest.mark.t5x
def test_embed_with_the_gin_file_of_another_model(tmp_path, capsys,
                                                   monkeypatch):
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top
  from conftest import init_params  # pylint: disable=g-import-not-at-top
  from conftest import small_ankh3_model  # pylint: disable=g-import-not-at-top

  wider = init_params(small_ankh3_model(emb_dim=48))
  monkeypatch.setattr(embed, "load_model", lambda *a, **k: small_ankh3_model())
  monkeypatch.setattr(checkpoints, "load_params", lambda path: wider)
  fasta = write_fasta(tmp_path / "in.fasta", [("p1", ["MKT"])])
  status, err = _run(
      capsys,
      embed.main,
      "--checkpoint=unused",
      "--gin_file=unused",
      f"--input={fasta}",
      f"--output={tmp_path / 'x.npz'}",
  )
  assert status == 1
  assert "Config mismatch in emb_dim: the gin model has 32, the " in err
  assert "checkpoint has 48" in err
