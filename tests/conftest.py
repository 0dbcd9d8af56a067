"""Shared fixtures: small protein files made in the test, and helpers."""

import gzip
import importlib.util
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_HAS_T5X = importlib.util.find_spec("t5x") is not None


def pytest_collection_modifyitems(config, items):
  del config
  skip = pytest.mark.skip(
      reason="needs T5X, which is not installed (see README: Install T5X)"
  )
  for item in items:
    if "t5x" in item.keywords and not _HAS_T5X:
      item.add_marker(skip)


def write_fasta(path, records, *, gz=False, newline="\n"):
  """Writes (header, sequence-lines) records as FASTA; returns the path."""
  lines = []
  for header, body in records:
    if header is not None:
      lines.append(f">{header}")
    lines.extend(body)
  text = newline.join(lines) + newline
  opener = gzip.open if gz else open
  with opener(path, "wt", newline="") as f:
    f.write(text)
  return str(path)
