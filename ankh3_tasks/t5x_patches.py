"""A fix to T5X that Ankh3 runs load with their gin files (needs T5X).

`t5x.train` restores a checkpoint's input-pipeline position whenever the run
saves one (SAVE_DATASET). T5X's Orbax checkpoint manager then reads
`checkpoint_N/dataset/train_ds-*` from the checkpoint it restores, and fails
if there is none:

  NotFoundError: ... checkpoint_0/dataset/train_ds-000-of-001

That is every checkpoint `python -m ankh3_tasks.convert hf-to-t5x` writes
from a released Ankh3 model, and every checkpoint of a run that did not save
its position. T5X's own configs say such a start should work: `t5x.train`
gives `RestoreCheckpointConfig.path` (INITIAL_CHECKPOINT_PATH) the default
`restore_dataset=False`, which the Orbax manager does not read, and a config
cannot swap the manager class, because `t5x.train` builds the config that
resumes from MODEL_DIR in code and requires its manager class to match.

So this module wraps `checkpoints.OrbaxCheckpointManagerInterface.restore`:
a checkpoint with no saved position is restored without one, with a warning,
and the input pipeline starts from its beginning. Everything else, including
every checkpoint that has a position, goes through T5X's code unchanged.
Importing the module applies the wrap once per process;
gin/runs/ankh3_pretrain.gin imports it.
"""

import functools
import os

from absl import logging
from t5x import checkpoints
import tensorflow as tf

# Where T5X's Orbax manager saves the input pipeline: in the `dataset` item of
# a checkpoint, as `train_ds-SHARD-of-SHARDS.*` files (one level deeper, in
# `process_I-of-N`, when several processes run). A manager without an input
# pipeline still writes the item, empty but for `commit_success.txt`.
_DATASET_ITEM = "dataset"
_DATASET_FILE_PREFIX = "train_ds-"


def has_input_position(checkpoint_dir: str) -> bool:
  """Whether `checkpoint_dir` (a T5X `checkpoint_N`) saved its input pipeline."""
  item = os.path.join(checkpoint_dir, _DATASET_ITEM)
  if not tf.io.gfile.isdir(item):
    return False
  for _, _, files in tf.io.gfile.walk(item):
    if any(f.startswith(_DATASET_FILE_PREFIX) for f in files):
      return True
  return False


def _restore_without_missing_position(restore):
  """Wraps T5X's restore: no saved position, no attempt to read one."""

  @functools.wraps(restore)
  def wrapped(self, step=None, path=None, **kwargs):
    with_position = getattr(self, "_should_write_dataset_ckpt", False)
    checkpoint_dir = path
    if checkpoint_dir is None and step is not None:
      checkpoint_dir = os.path.join(
          os.fspath(self.directory), f"checkpoint_{step}"
      )
    if not with_position or checkpoint_dir is None or has_input_position(
        os.fspath(checkpoint_dir)
    ):
      return restore(self, step=step, path=path, **kwargs)
    logging.warning(
        "%s holds no input-pipeline position (it was converted, or saved"
        " without SAVE_DATASET): restoring it without one; the input pipeline"
        " starts from its beginning, and this run's checkpoints save its"
        " position.",
        checkpoint_dir,
    )
    self._should_write_dataset_ckpt = False
    try:
      return restore(self, step=step, path=path, **kwargs)
    finally:
      self._should_write_dataset_ckpt = with_position

  wrapped.ankh3_patched = True
  return wrapped


def apply() -> None:
  """Wraps T5X's Orbax restore; a second call changes nothing."""
  manager = checkpoints.OrbaxCheckpointManagerInterface
  if not getattr(manager.restore, "ankh3_patched", False):
    manager.restore = _restore_without_missing_position(manager.restore)


apply()
