"""A fix to T5X that Ankh3 runs load with their gin files (needs T5X).

With SAVE_DATASET, `t5x.train` builds one Orbax checkpoint manager holding
the input iterator, for saving and for restoring alike, so it reads an
input-pipeline position (`checkpoint_N/dataset/train_ds-*`) from whatever
checkpoint it restores; `RestoreCheckpointConfig.restore_dataset=False`
cannot turn that off. A checkpoint without one stops the run:

  NotFoundError: ... checkpoint_0/dataset/train_ds-000-of-001

That is every checkpoint `python -m ankh3_tasks.convert hf-to-t5x` writes
from a released Ankh3 model (its `dataset` item holds only
`commit_success.txt`), and every checkpoint of a run that did not save its
position. A gin file cannot swap the manager class: `t5x.train` builds the
config that resumes from MODEL_DIR in code, with T5X's class, and requires
the save and restore classes to match.

So this module wraps `checkpoints.OrbaxCheckpointManagerInterface.restore`:
a checkpoint with no saved position is restored without one, with a warning,
and the input pipeline starts from its beginning; the run's own checkpoints
save its position. Every other restore is T5X's, unchanged. Whether a
position exists is decided by listing files, and an error of the file system
(GCS unavailable) propagates rather than reading as "none". Importing the
module applies the wrap once per process; gin/runs/ankh3_pretrain.gin
imports it, since a gin import is the one hook that runs before the restore.
"""

import functools
import logging as std_logging
import os

from absl import logging
from t5x import checkpoints
from t5x import checkpoints_utils
import tensorflow as tf


def has_input_position(checkpoint_dir: str) -> bool:
  """Whether `checkpoint_dir` (a T5X `checkpoint_N`) saved its input pipeline.

  Orbax checkpoints keep it in their `dataset` item, as `train_ds-*` files,
  one level deeper (`process_I-of-N`) when several processes run; T5X's
  older format keeps them beside the state.

  Args:
    checkpoint_dir: a `checkpoint_N` directory, local or on GCS.

  Raises:
    tf.errors.OpError: the file system failed (not: the files are absent).
  """
  # T5X's own names for the item and the files.
  # pylint: disable=protected-access
  prefix = checkpoints_utils._TRAIN_DS_PREFIX
  item = os.path.join(checkpoint_dir, checkpoints._DATASET_KEY)
  # pylint: enable=protected-access
  patterns = (
      os.path.join(item, f"{prefix}-*"),
      os.path.join(item, "process_*", f"{prefix}-*"),
      os.path.join(checkpoint_dir, f"{prefix}-*"),
  )
  return any(tf.io.gfile.glob(pattern) for pattern in patterns)


def _restore_without_missing_position(restore):
  """Wraps T5X's restore: no saved position, no attempt to read one."""

  @functools.wraps(restore)
  def wrapped(self, step=None, path=None, *args, **kwargs):
    with_position = getattr(self, "_should_write_dataset_ckpt", False)
    checkpoint_dir = path
    if checkpoint_dir is None and step is not None:
      checkpoint_dir = checkpoints_utils.get_checkpoint_dir(
          os.fspath(self.directory), step
      )
    if (
        not with_position
        or checkpoint_dir is None
        or has_input_position(os.fspath(checkpoint_dir))
    ):
      return restore(self, step, path, *args, **kwargs)
    logging.warning(
        "%s holds no input-pipeline position (it was converted, or saved"
        " without SAVE_DATASET): restoring it without one; the input pipeline"
        " starts from its beginning, and this run's checkpoints save its"
        " position.",
        checkpoint_dir,
    )
    self._should_write_dataset_ckpt = False
    try:
      return restore(self, step, path, *args, **kwargs)
    finally:
      self._should_write_dataset_ckpt = with_position

  wrapped.ankh3_patched = True
  return wrapped


class OptimizerSlotNotice(std_logging.Filter):
  """One line for the optimizer slots T5X does not restore, not one each.

  `t5x.infer` and `t5x.eval` restore parameters only; T5X logs "Not
  restoring param=state/param_states/.../v_row because it's missing in the
  checkpoint" for every Adafactor slot, 280 lines for the tiny model. This
  filter on absl's logger lets the first through as one summary line and
  drops the rest. A missing parameter (`target/...`) is never filtered.
  """

  PREFIX = "Not restoring param=state/"

  def __init__(self):
    super().__init__()
    self.dropped = 0

  def filter(self, record: std_logging.LogRecord) -> bool:
    message = record.getMessage()
    if not message.startswith(self.PREFIX):
      return True
    self.dropped += 1
    if self.dropped > 1:
      return False
    record.msg = (
        "Not restoring the optimizer state the checkpoint lacks "
        "(state/param_states/...; inference and evaluation use the "
        "parameters only, training starts those slots afresh). Further such "
        "lines are not shown."
    )
    record.args = ()
    return True


def apply() -> None:
  """Wraps T5X's Orbax restore; a second call changes nothing."""
  manager = checkpoints.OrbaxCheckpointManagerInterface
  if not getattr(manager.restore, "ankh3_patched", False):
    manager.restore = _restore_without_missing_position(manager.restore)
  absl_logger = logging.get_absl_logger()
  if not any(isinstance(f, OptimizerSlotNotice) for f in absl_logger.filters):
    absl_logger.addFilter(OptimizerSlotNotice())


apply()
