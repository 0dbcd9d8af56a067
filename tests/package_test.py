"""Tests of the package as a whole: what importing it costs."""

import subprocess
import sys

from conftest import REPO


def _loaded_after(statement):
  code = f"import sys; {statement}; print(sorted(sys.modules))"
  run = subprocess.run(
      [sys.executable, "-c", code],
      cwd=REPO,
      capture_output=True,
      text=True,
      check=True,
  )
  return run.stdout


def test_the_package_and_its_gin_path_load_no_tensorflow():
  for statement in (
      "import ankh3_tasks",
      "from ankh3_tasks import gin_search_path",
  ):
    loaded = _loaded_after(statement)
    assert "'tensorflow'" not in loaded and "'seqio'" not in loaded, statement
  # The check can fail: a module that needs TensorFlow does load it.
  assert "'tensorflow'" in _loaded_after("from ankh3_tasks import sources")
