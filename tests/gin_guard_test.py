"""Tests of `ankh3_tasks.gin_guard`: a mistyped macro stops a T5X run."""

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.t5x

TINY = "gin/experiments/ankh3_tiny_sample.gin"


@pytest.mark.parametrize(
    "binding, unused",
    [
        ("TRAIN_STEP = 10", [("TRAIN_STEP", "TRAIN_STEPS")]),
        ("TRAIN_STEPS = 10", []),
        ("BATCHSIZE = 8", [("BATCHSIZE", "BATCH_SIZE")]),
        # Set by a file of the run, read by the package's tools, not by T5X.
        ("NUM_DEVICES = 2", []),
        # A configurable's parameter: gin checks those itself.
        ("utils.SaveCheckpointConfig.period = 5", []),
        ("QWXZV = 1", [("QWXZV", None)]),
        # Read by the package's code (sources.data_dir), not by a binding.
        ("ANKH3_DATA_DIR = '/data'", []),
    ],
)
def test_a_command_line_macro_must_be_read_or_set(binding, unused):
  import gin  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import gin_guard  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import t5x_adapter  # pylint: disable=g-import-not-at-top

  with t5x_adapter.parsed_gin([TINY], [binding]):
    # pylint: disable-next=protected-access
    found = gin_guard.unused_macros(gin.config._CONFIG, [binding], [TINY])
  assert found == unused


def test_the_macros_read_by_code_are_the_codes():
  from ankh3_tasks import gin_guard  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import sources  # pylint: disable=g-import-not-at-top

  assert gin_guard.READ_BY_CODE == {sources.DATA_DIR_MACRO}


def test_t5x_train_stops_on_a_mistyped_macro(tmp_path):
  model_dir = tmp_path / "run"
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "t5x.train",
          f"--gin_file={TINY}",
          f'--gin.MODEL_DIR="{model_dir}"',
          "--gin.TRAIN_STEP=10",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert run.returncode != 0
  assert (
      "--gin.TRAIN_STEP: no gin file of this run reads the macro TRAIN_STEP;"
      " did you mean TRAIN_STEPS?"
  ) in run.stderr
  assert not model_dir.exists()  # Stopped before T5X wrote anything.
