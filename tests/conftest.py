"""Shared fixtures: small protein files made in the test, and helpers."""

import gzip
import importlib.util
import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_HAS_T5X = importlib.util.find_spec("t5x") is not None
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# A small Ankh3 for tests that need T5X: SwiGLU, untied, 64 buckets.
SMALL_ANKH3 = dict(
    vocab_size=256,
    dtype="float32",
    emb_dim=32,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=1,
    head_dim=16,
    mlp_dim=64,
    mlp_activations=("silu", "linear"),
    dropout_rate=0.0,
    logits_via_embedding=False,
)


def small_ankh3_config(**overrides):
  """`network.Ankh3Config` of `SMALL_ANKH3`, with overrides (needs T5X)."""
  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top

  return network.Ankh3Config(**{**SMALL_ANKH3, **overrides})


def small_ankh3_model(**overrides):
  """A T5X `EncoderDecoderModel` of `small_ankh3_config(**overrides)`."""
  from t5x import adafactor  # pylint: disable=g-import-not-at-top
  from t5x import models  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top

  vocab = vocabularies.Ankh3Vocabulary()
  return models.EncoderDecoderModel(
      module=network.Transformer(small_ankh3_config(**overrides)),
      input_vocabulary=vocab,
      output_vocabulary=vocab,
      optimizer_def=adafactor.Adafactor(),
  )


def init_params(model, seed=0):
  """Random initial parameters of `model`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  return model.get_initial_variables(
      jax.random.PRNGKey(seed),
      {"encoder_input_tokens": (2, 24), "decoder_input_tokens": (2, 12)},
      {"encoder_input_tokens": jnp.int32, "decoder_input_tokens": jnp.int32},
  )["params"]


def flatten(tree, prefix=""):
  """{"/encoder/layers_0/...": array} of a nested dict of parameters."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  flat = {}
  for key, value in tree.items():
    flat.update(flatten(value, f"{prefix}/{key}"))
  return flat


def scalars(directory, tag):
  """{step: value} of one scalar in T5X's TensorBoard files (last wins)."""
  import glob  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  values = {}
  for path in sorted(glob.glob(os.path.join(str(directory), "events.out.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def run_python(*args, cwd=REPO, timeout=600, check=True):
  """Runs `python args...`; with `check`, fails the test with its stderr."""
  run = subprocess.run(
      [sys.executable, *args],
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=timeout,
  )
  if check:
    assert run.returncode == 0, run.stderr[-5000:]
  return run


def run_module(module, *flags, cwd=REPO, timeout=600, check=True):
  """Runs `python -m module flags...`; fails the test with its stderr."""
  return run_python(
      "-m", module, *flags, cwd=cwd, timeout=timeout, check=check
  )


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, worker_id):
  """The README's main command, run once per test session (needs T5X).

  The embedded default: the tiny Ankh3, 500 steps on the bundled sample.
  With pytest-xdist the workers share one run: the first to get the lock
  trains, the others wait and read it. Returns the model directory and
  T5X's log.
  """
  import filelock  # pylint: disable=g-import-not-at-top

  root = tmp_path_factory.getbasetemp()
  if worker_id != "master":
    root = root.parent  # Shared by the workers of this session.
  model_dir = root / "default_run"
  log = root / "default_run.log"
  with filelock.FileLock(str(root / "default_run.lock")):
    if not log.exists():
      run = run_module(
          "t5x.train",
          "--gin_file=gin/experiments/ankh3_tiny_sample.gin",
          f'--gin.MODEL_DIR="{model_dir}"',
          timeout=900,
      )
      log.write_text(run.stderr)
  return model_dir, log.read_text()


@pytest.fixture(scope="session")
def tiny_checkpoint(default_run):
  """The last checkpoint of the embedded default (step 500)."""
  return default_run[0] / "checkpoint_500"
