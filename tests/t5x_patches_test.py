"""Tests of ankh3_tasks/t5x_patches.py (marker `t5x`).

A run that saves its input pipeline (`SAVE_DATASET`) and starts from a
checkpoint that holds no position (`INITIAL_CHECKPOINT_PATH`: a converted
released model) restores the weights from it and starts the input pipeline
from its beginning; its own checkpoints hold the pipeline's position. Without
the patch T5X fails on such a start.
"""

import os
import shutil

import numpy as np
import pytest

from conftest import flatten
from conftest import run_module

pytestmark = pytest.mark.t5x


def _dataset_files(checkpoint_dir):
  return sorted(
      p.name for p in checkpoint_dir.rglob("*") if p.name.startswith("train_ds")
  )


def test_input_position_is_found_only_where_saved(tmp_path):
  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  checkpoint = tmp_path / "checkpoint_2"
  (checkpoint / "state").mkdir(parents=True)
  assert not t5x_patches.has_input_position(str(checkpoint))
  # What a manager without an input pipeline writes (`convert hf-to-t5x`).
  (checkpoint / "dataset").mkdir()
  (checkpoint / "dataset" / "commit_success.txt").write_text("")
  assert not t5x_patches.has_input_position(str(checkpoint))
  for saved in (
      checkpoint / "dataset" / "train_ds-000-of-001.index",
      checkpoint / "dataset" / "process_1-of-2" / "train_ds-001-of-002.index",
      checkpoint / "train_ds-000-of-001.index",  # T5X's older format.
  ):
    saved.parent.mkdir(exist_ok=True)
    saved.write_text("")
    assert t5x_patches.has_input_position(str(checkpoint)), saved
    saved.unlink()
  assert not t5x_patches.has_input_position(str(checkpoint))


def test_a_failing_file_system_is_not_read_as_no_position(
    tmp_path, monkeypatch
):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  def glob(pattern):
    raise tf.errors.UnavailableError(None, None, f"listing {pattern} failed")

  monkeypatch.setattr(tf.io.gfile, "glob", glob)
  with pytest.raises(tf.errors.UnavailableError):
    t5x_patches.has_input_position(str(tmp_path / "checkpoint_2"))


class _Manager:
  """What the wrap reads of T5X's manager: its flag and directory."""

  def __init__(self, directory, with_position=True):
    self.directory = directory
    self._should_write_dataset_ckpt = with_position
    self.seen = []

  def restore(self, step=None, path=None, fallback_state=None, fail=False):
    flag = self._should_write_dataset_ckpt
    self.seen.append((step, path, fallback_state, flag))
    if fail:
      raise ValueError("restore failed")
    return "state"


@pytest.mark.parametrize("saved", [True, False])
@pytest.mark.parametrize("by", ["path", "step"])
def test_the_position_is_read_only_where_saved(tmp_path, saved, by):
  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  checkpoint = tmp_path / "checkpoint_5"
  (checkpoint / "dataset").mkdir(parents=True)
  if saved:
    (checkpoint / "dataset" / "train_ds-000-of-001.index").write_text("")
  restore = t5x_patches._restore_without_missing_position(_Manager.restore)
  manager = _Manager(tmp_path)
  where = {"path": str(checkpoint)} if by == "path" else {"step": 5}
  assert restore(manager, **where, fallback_state="fallback") == "state"
  [(_, _, fallback, with_position)] = manager.seen
  assert fallback == "fallback"
  assert with_position == saved
  assert manager._should_write_dataset_ckpt  # Saving keeps the position.


def test_the_flag_comes_back_when_the_restore_fails(tmp_path):
  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  restore = t5x_patches._restore_without_missing_position(_Manager.restore)
  manager = _Manager(tmp_path)
  with pytest.raises(ValueError, match="restore failed"):
    restore(manager, path=str(tmp_path / "checkpoint_0"), fail=True)
  assert manager.seen[0][3] is False
  assert manager._should_write_dataset_ckpt is True


def test_a_manager_without_input_pipeline_is_left_alone(tmp_path):
  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  restore = t5x_patches._restore_without_missing_position(_Manager.restore)
  manager = _Manager(tmp_path, with_position=None)
  path = str(tmp_path / "checkpoint_0")
  restore(manager, None, path, "fallback")  # As T5X's positional arguments.
  assert manager.seen == [(None, path, "fallback", None)]


def test_the_wrap_is_applied_once():
  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top
  from t5x import checkpoints  # pylint: disable=g-import-not-at-top

  restore = checkpoints.OrbaxCheckpointManagerInterface.restore
  assert restore.ankh3_patched
  t5x_patches.apply()
  assert checkpoints.OrbaxCheckpointManagerInterface.restore is restore
  assert restore.__wrapped__.__module__ == "t5x.checkpoints"


@pytest.mark.slow
def test_a_run_starts_from_a_checkpoint_without_input_pipeline_state(
    tiny_checkpoint, tmp_path
):
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top

  # The embedded default's last checkpoint without its input-pipeline
  # position: what `convert hf-to-t5x` writes, or a run without SAVE_DATASET.
  start = tmp_path / "start" / "checkpoint_500"
  shutil.copytree(tiny_checkpoint, start)
  assert _dataset_files(start)
  for name in _dataset_files(start):  # The item stays, as the converter's.
    (start / "dataset" / name).unlink()
  assert not _dataset_files(start) and (start / "dataset").is_dir()
  model_dir = tmp_path / "model"
  run = run_module(
      "t5x.train",
      "--gin_file=gin/experiments/ankh3_tiny_sample.gin",
      f'--gin.MODEL_DIR="{model_dir}"',
      f'--gin.INITIAL_CHECKPOINT_PATH="{start}"',
      "--gin.SAVE_DATASET=True",
      "--gin.TRAIN_STEPS=502",
      "--gin.CHECKPOINT_PERIOD=2",
      "--gin.STATS_PERIOD=2",
      "--gin.EVAL_PERIOD=1000",
      "--gin.EVAL_STEPS=1",
  )
  assert f"{start} holds no input-pipeline position" in run.stderr
  # T5X saved the restored state as the run's first checkpoint, then stepped:
  # both hold the run's own input-pipeline position.
  assert sorted(os.listdir(model_dir / "checkpoint_500")) == sorted(
      os.listdir(tiny_checkpoint)
  )
  for step in (500, 502):
    assert _dataset_files(model_dir / f"checkpoint_{step}"), step
  restored = flatten(checkpoints.load_params(str(model_dir / "checkpoint_500")))
  expected = flatten(checkpoints.load_params(str(start)))
  assert sorted(restored) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(restored[name], value, err_msg=name)
  stepped = flatten(checkpoints.load_params(str(model_dir / "checkpoint_502")))
  kernel = "/decoder/logits_dense/kernel"
  assert not np.array_equal(stepped[kernel], expected[kernel])


def test_optimizer_slots_not_restored_are_said_once():
  import logging  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top
  from absl import logging as absl_logging

  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  notice = t5x_patches.OptimizerSlotNotice()
  records = []

  class Keep(logging.Handler):

    def emit(self, record):
      records.append(record.getMessage())

  logger = logging.getLogger("ankh3_slot_notice_test")
  logger.propagate = False
  logger.addHandler(Keep())
  logger.addFilter(notice)
  # T5X's own message (t5x/state_utils.py), through the filter.
  for key in (
      "state/param_states/a/v_row",
      "state/param_states/a/v_col",
      "target/decoder/logits_dense/kernel",
  ):
    logger.warning(
        "Not restoring param=%s because it's missing in the checkpoint", key
    )
  assert notice.dropped == 2
  assert len(records) == 2
  assert records[0].startswith("Not restoring the optimizer state")
  # A missing parameter is never hidden.
  assert records[1].startswith(
      "Not restoring param=target/decoder/logits_dense/kernel"
  )
  # Applied to absl's logger, once however often it is applied.
  t5x_patches.apply()
  t5x_patches.apply()
  filters = absl_logging.get_absl_logger().filters
  notice_class = t5x_patches.OptimizerSlotNotice
  notices = [f for f in filters if isinstance(f, notice_class)]
  assert len(notices) == 1
