"""A run killed at any moment resumes from its last complete checkpoint.

`t5x.train` on the embedded default (the tiny Ankh3 on the bundled sample,
fixed seeds, the dataset position saved with each checkpoint) is killed with
SIGKILL while Orbax writes a checkpoint (its temporary directory exists) and
again between checkpoints, and started again on the same MODEL_DIR each time,
as `python -m tpu_launch watch` does after a preemption or a crash. The run
must reach the last step with the parameters and metrics of a run that was
never interrupted.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ankh3_tasks import gin_search_path
from conftest import REPO
from conftest import flatten
from conftest import scalars

pytestmark = [pytest.mark.t5x, pytest.mark.slow]

EXPERIMENT = "gin/experiments/ankh3_tiny_sample.gin"
LOSS = "loss_per_nonpadding_target_token"
STEPS = 12
PERIOD = 4  # Checkpoints (and train metrics) at 4, 8 and 12.
_TIMEOUT = 300.0


def _command(model_dir, *flags):
  return [
      sys.executable,
      "-m",
      "t5x.train",
      f"--gin_file={EXPERIMENT}",
      f'--gin.MODEL_DIR="{model_dir}"',
      f"--gin.TRAIN_STEPS={STEPS}",
      f"--gin.CHECKPOINT_PERIOD={PERIOD}",
      f"--gin.STATS_PERIOD={PERIOD}",
      "--gin.EVAL_PERIOD=100",  # Evaluates once, at the last step.
      "--gin.EVAL_STEPS=1",
      "--gin.CHECKPOINTS_TO_KEEP=None",
      "--gin.SAVE_DATASET=True",
      "--gin.TRAIN_DATA_SEED=0",
      "--gin.RANDOM_SEED=0",
      *flags,
  ]


def _start(model_dir, log, *flags, cwd=REPO):
  return subprocess.Popen(
      _command(model_dir, *flags),
      cwd=cwd,
      stdout=log,
      stderr=subprocess.STDOUT,
      start_new_session=True,
  )


def _run(model_dir, log_path, *flags, cwd=REPO):
  """Trains to the end; returns the log."""
  with open(log_path, "w") as log:
    process = _start(model_dir, log, *flags, cwd=cwd)
    try:
      returncode = process.wait(timeout=_TIMEOUT)
    finally:
      _kill(process)
  with open(log_path) as f:
    text = f.read()
  assert returncode == 0, text[-5000:]
  return text


def _kill(process):
  """SIGKILL to the run and anything it started (the run's own group)."""
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)
  process.wait()


def _run_until(model_dir, log_path, condition):
  """Starts the run and kills it with SIGKILL once `condition()` holds.

  Returns:
    The log.
  """
  with open(log_path, "w") as log:
    process = _start(model_dir, log)
    deadline = time.monotonic() + _TIMEOUT
    try:
      while not condition():
        assert process.poll() is None, f"the run ended first: {log_path}"
        assert time.monotonic() < deadline, f"timed out: {log_path}"
        time.sleep(0.005)
    finally:
      _kill(process)
  with open(log_path) as f:
    return f.read()


def _complete(model_dir, step):
  return os.path.exists(
      os.path.join(model_dir, f"checkpoint_{step}", "commit_success.txt")
  )


def _temporary(model_dir, step):
  """The Orbax temporary directories of checkpoint `step` now present."""
  return glob.glob(
      os.path.join(model_dir, f"checkpoint_{step}.orbax-checkpoint-tmp*")
  )


def _restored_from(log):
  found = re.findall(r"Restoring checkpoint from \S*checkpoint_(\d+)", log)
  return int(found[-1]) if found else None


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """A run that was never interrupted."""
  model_dir = tmp_path_factory.mktemp("reference")
  _run(model_dir, model_dir.parent / "reference.log")
  return model_dir


def test_killed_run_resumes_from_the_last_complete_checkpoint(
    reference, tmp_path
):
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  model_dir = str(tmp_path / "run")
  # 1. Killed while checkpoint 8 is being written: Orbax's temporary
  # directory is there, checkpoint_8 is not.
  _run_until(
      model_dir,
      tmp_path / "1.log",
      lambda: (
          _complete(model_dir, PERIOD) and _temporary(model_dir, 2 * PERIOD)
      ),
  )
  assert _temporary(model_dir, 2 * PERIOD)
  assert not os.path.exists(os.path.join(model_dir, f"checkpoint_{2 * PERIOD}"))

  # 2. Resumes from checkpoint 4, never from the partial 8; killed between
  # checkpoints, as soon as checkpoint 8 is complete (steps 9-12 run).
  log = _run_until(
      model_dir, tmp_path / "2.log", lambda: _complete(model_dir, 2 * PERIOD)
  )
  assert _restored_from(log) == PERIOD, log[-3000:]
  assert not os.path.exists(os.path.join(model_dir, f"checkpoint_{STEPS}"))

  stopped = str(tmp_path / "stopped")
  shutil.copytree(model_dir, stopped)

  # 3. Resumes from checkpoint 8 and finishes; from another directory, with
  # the package's own gin search path, as an installed package is used.
  elsewhere = ["--gin_search_paths=" + gin_search_path.gin_search_path()]
  log = _run(model_dir, tmp_path / "3.log", *elsewhere, cwd=tmp_path)
  assert _restored_from(log) == 2 * PERIOD, log[-3000:]
  assert f"Starting main loop over steps {2 * PERIOD}-{STEPS}" in log
  assert _complete(model_dir, STEPS)
  assert not _temporary(model_dir, "*")

  resumed = checkpoints.load_params(
      os.path.join(model_dir, f"checkpoint_{STEPS}")
  )
  expected = checkpoints.load_params(str(reference / f"checkpoint_{STEPS}"))
  flat_resumed = flatten(resumed)
  flat_expected = flatten(expected)
  assert sorted(flat_resumed) == sorted(flat_expected)
  for name, value in flat_expected.items():
    np.testing.assert_array_equal(flat_resumed[name], value, err_msg=name)
  loss = scalars(os.path.join(model_dir, "train"), LOSS)
  expected_loss = scalars(str(reference / "train"), LOSS)
  assert sorted(expected_loss) == [PERIOD, 2 * PERIOD, STEPS]
  assert sorted(loss) == sorted(expected_loss)
  for step, value in expected_loss.items():
    assert loss[step] == pytest.approx(value, rel=1e-6), step

  # Without the dataset position the resumed run starts the data over, so it
  # sees other examples: the comparisons above can tell.
  _run(stopped, tmp_path / "4.log", "--gin.SAVE_DATASET=False")
  restarted = scalars(os.path.join(stopped, "train"), LOSS)
  assert restarted[STEPS] != pytest.approx(expected_loss[STEPS], rel=1e-6)
