"""Tests of the install scripts, tools/setup.sh and tools/install_t5x.sh.

They run the scripts against trees made here and, for the real (not dry)
runs, a stand-in `python` on PATH that logs its arguments and writes into
each tree it is asked to install, as pip's in-tree build does.
"""

import os
import re
import stat
import subprocess

import pytest

from conftest import REPO

_PINS = {}
with open(os.path.join(REPO, "requirements", "t5x-git.txt")) as _f:
  for _line in _f:
    _match = re.match(r"^([a-z0-9]+) @ git\+.*@([0-9a-f]{40})$", _line.strip())
    if _match:
      _PINS[_match.group(1)] = _match.group(2)

_FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_PYTHON_LOG"
if [[ "$*" == "-m pip install --no-deps"* ]]; then
  for arg in "$@"; do
    if [[ -d "$arg" ]]; then
      mkdir "$arg/pip-was-here.egg-info" || exit 9
    fi
  done
fi
"""


def _script(name, *args, env=None, cwd=REPO):
  return subprocess.run(
      ["bash", os.path.join(REPO, "tools", name), *args],
      cwd=cwd,
      capture_output=True,
      text=True,
      env=env,
      timeout=60,
  )


def _trees(root, commits):
  """DIR/t5x, DIR/airio, DIR/jestimator; commits: name -> marker or None."""
  for name in _PINS:
    tree = root / name
    (tree / name).mkdir(parents=True)
    (tree / "setup.py").write_text("# a stand-in\n")
    if commits.get(name) is not None:
      (tree / ".snapshot-commit").write_text(commits[name] + "\n")
  return root


def _read_only(root):
  for directory, _, files in os.walk(root):
    for name in files:
      os.chmod(os.path.join(directory, name), stat.S_IRUSR | stat.S_IRGRP)
    os.chmod(directory, stat.S_IRUSR | stat.S_IXUSR)


def _writable(root):
  for directory, _, _ in os.walk(root):
    os.chmod(directory, stat.S_IRWXU)


def test_the_tested_commits_are_read_from_the_file():
  assert set(_PINS) == {"t5x", "airio", "jestimator"}
  assert _PINS["t5x"].startswith("cc342d4")


def test_snapshot_commit_is_read_where_there_is_no_git(tmp_path):
  trees = _trees(
      tmp_path,
      {"t5x": _PINS["t5x"], "airio": "0" * 40, "jestimator": None},
  )
  run = _script("install_t5x.sh", "--checkouts", str(trees), "--dry-run")
  assert run.returncode == 0, run.stderr
  assert f"{trees}/t5x" not in run.stderr  # At the tested commit: quiet.
  assert f"warning: {trees}/airio is at {'0' * 40}; tested with" in run.stderr
  assert f"cannot tell the commit of {trees}/jestimator" in run.stderr
  assert ".snapshot-commit" in run.stderr


def test_git_checkout_reports_its_head(tmp_path):
  trees = _trees(tmp_path, dict(_PINS))
  t5x = trees / "t5x"
  # A git checkout's HEAD wins over a stale .snapshot-commit.
  git = ["git", "-C", str(t5x), "-c", "user.name=t", "-c", "user.email=t@t"]
  subprocess.run([*git, "init", "-q"], check=True)
  subprocess.run([*git, "add", "-A"], check=True)
  subprocess.run([*git, "commit", "-qm", "x"], check=True)
  head = subprocess.run(
      [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
  ).stdout.strip()
  run = _script("install_t5x.sh", "--checkouts", str(trees), "--dry-run")
  assert run.returncode == 0, run.stderr
  assert f"warning: {t5x} is at {head}; tested with {_PINS['t5x']}" in (
      run.stderr
  )


def test_dry_run_builds_from_copies_and_editable_in_place(tmp_path):
  trees = _trees(tmp_path, dict(_PINS))
  run = _script("install_t5x.sh", "--checkouts", str(trees), "--dry-run")
  assert run.returncode == 0, run.stderr
  assert run.stderr == ""
  lines = [line.rstrip() for line in run.stdout.splitlines()]
  assert lines[0].startswith("python -m pip install -c requirements/")
  install = lines[-1].split()
  assert install[:4] == ["python", "-m", "pip", "install"]
  assert "-e" not in install
  copies = install[5:]
  assert [os.path.basename(p) for p in copies] == list(_PINS)
  assert not any(p.startswith(str(trees)) for p in copies)
  for name, copy in zip(_PINS, copies):
    assert f"cp -R {trees}/{name} {copy}" in lines

  run = _script(
      "install_t5x.sh", "--checkouts", str(trees), "--editable", "--dry-run"
  )
  assert run.returncode == 0, run.stderr
  want = " ".join(f"-e {trees}/{name}" for name in _PINS)
  assert run.stdout.splitlines()[-1].rstrip().endswith(want)


def test_a_read_only_tree_is_left_as_it_was(tmp_path):
  trees = _trees(tmp_path / "trees", dict(_PINS))
  before = sorted(
      os.path.relpath(os.path.join(d, f), trees)
      for d, dirs, files in os.walk(trees)
      for f in files + dirs
  )
  _read_only(trees)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "python").write_text(_FAKE_PYTHON)
  (bin_dir / "python").chmod(0o755)
  log = tmp_path / "python.log"
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  env = {
      **os.environ,
      "PATH": f"{bin_dir}:{os.environ['PATH']}",
      "FAKE_PYTHON_LOG": str(log),
      "TMPDIR": str(scratch),
  }
  try:
    run = _script("install_t5x.sh", "--checkouts", str(trees), env=env)
    after = sorted(
        os.path.relpath(os.path.join(d, f), trees)
        for d, dirs, files in os.walk(trees)
        for f in files + dirs
    )
  finally:
    _writable(trees)
  assert run.returncode == 0, run.stderr
  calls = log.read_text().splitlines()
  assert calls[0].startswith("-m pip install -c requirements/constraints.txt")
  assert calls[1].startswith("-m pip install --no-deps ")
  # The stand-in pip wrote into what it was given: copies, not the trees.
  assert after == before
  assert not list(scratch.iterdir())  # The copies are gone afterwards.


def test_editable_needs_checkouts():
  for name in ("install_t5x.sh", "setup.sh"):
    run = _script(name, "--editable", "--dry-run")
    assert run.returncode == 2
    assert "--editable needs --checkouts DIR" in run.stderr


def test_missing_tree_names_what_was_expected(tmp_path):
  trees = _trees(tmp_path, dict(_PINS))
  (trees / "airio" / "setup.py").unlink()
  run = _script("install_t5x.sh", "--checkouts", str(trees), "--dry-run")
  assert run.returncode == 1
  assert f"{trees}/airio is not a checkout of airio" in run.stderr
  assert _PINS["airio"] in run.stderr


@pytest.mark.parametrize(
    "flags, extras",
    [((), "test"), (("--hf",), "test,hf")],
)
def test_setup_dry_run_prints_the_t5x_pip_commands(tmp_path, flags, extras):
  trees = _trees(tmp_path / "trees", dict(_PINS))
  run = _script("setup.sh", *flags, "--dry-run")
  assert run.returncode == 0, run.stderr
  lines = [line.rstrip() for line in run.stdout.splitlines()]
  quoted = extras.replace(",", "\\,")  # As printf %q writes it.
  assert lines == [
      "python -m pip install -c requirements/constraints.txt"
      f" -e .\\[{quoted}\\]",
      "python -m pip install -c requirements/constraints.txt -e .\\[t5x\\]",
      "python -m pip install --no-deps -r requirements/t5x-git.txt",
  ]
  # Relative checkouts are taken from where the script was called.
  run = _script(
      "setup.sh", "--checkouts", trees.name, "--dry-run", cwd=tmp_path
  )
  assert run.returncode == 0, run.stderr
  assert f"cp -R {trees}/t5x " in run.stdout
