"""notebooks/inspect_tasks.ipynb: runs top to bottom, and is stored bare."""

import json
import os
import sys

import pytest

from conftest import REPO

NOTEBOOK = os.path.join(REPO, "notebooks", "inspect_tasks.ipynb")
# A kernel of its own, so that no `python3` kernel spec of the user or the
# system (which may point at another interpreter) is picked instead.
KERNEL_NAME = "ankh3-notebook-test"


def _code_cells(notebook):
  return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def test_notebook_is_stored_without_outputs():
  with open(NOTEBOOK, encoding="utf-8") as f:
    notebook = json.load(f)
  cells = _code_cells(notebook)
  assert cells
  for n, cell in enumerate(cells):
    source = "".join(cell["source"])[:60]
    assert cell["outputs"] == [], f"code cell {n} has outputs: {source!r}"
    assert cell["execution_count"] is None, (
        f"code cell {n} has an execution count: {source!r}"
    )


def _kernel_dir(tmp_path):
  """A Jupyter data directory with a kernel spec of this interpreter."""
  kernel = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
  kernel.mkdir(parents=True)
  spec = {
      "argv": [
          sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"
      ],
      "display_name": "Python (ankh3 notebook test)",
      "language": "python",
  }
  (kernel / "kernel.json").write_text(json.dumps(spec))
  return tmp_path / "jupyter"


@pytest.mark.slow
def test_notebook_runs_on_the_bundled_sample(tmp_path, monkeypatch):
  nbclient = pytest.importorskip(
      "nbclient", reason="needs nbclient (pip install -e '.[test]')"
  )
  nbformat = pytest.importorskip(
      "nbformat", reason="needs nbformat (pip install -e '.[test]')"
  )
  pytest.importorskip(
      "ipykernel", reason="needs ipykernel (pip install -e '.[test]')"
  )
  # The bundled sample, the built-in table, no network, no display.
  monkeypatch.delenv("ANKH3_DATA_DIR", raising=False)
  monkeypatch.delenv("ANKH3_TOKENIZER", raising=False)
  monkeypatch.setenv("JUPYTER_PATH", str(_kernel_dir(tmp_path)))
  monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
  # The kernel imports the package from this checkout even if not installed.
  monkeypatch.setenv(
      "PYTHONPATH",
      os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
  )

  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      notebook,
      kernel_name=KERNEL_NAME,
      timeout=300,  # per cell
      resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
  )
  client.execute()  # Raises CellExecutionError, naming the cell, on an error.

  outputs = [o for c in _code_cells(notebook) for o in c["outputs"]]
  errors = [o for o in outputs if o["output_type"] == "error"]
  assert not errors, errors
  data = [o.get("data", {}) for o in outputs]
  html = "".join(d.get("text/html", "") for d in data)
  text = "".join(o.get("text", "") for o in outputs)
  assert "install step skipped" in text  # The Colab cell did nothing.
  assert 'class="badge nlu"' in html and 'class="sent"' in html
  assert 'class="badge s2s"' in html
  assert "tokenizer id" in html and "DEMO tokenizer" in text
  assert sum("image/png" in d for d in data) >= 4  # the four plots
  assert "2 ids differ from the built-in table" in text
