"""The T5X glue the package's tools share (needs T5X).

How `t5x.train` reads gin files, T5X's train state and batch as shapes, and
T5X's own `Trainer`, built once here for the planner (`plan.py`), the model
loader (`checkpoints.py`, used by embed, convert and the downstream
benchmark) and the speed scripts (`benchmarks/`):

  run = t5x_adapter.load_gin(["gin/experiments/ankh3_large_pretrain.gin"])
  run.model, run.settings["batch_size"]
  state = t5x_adapter.abstract_train_state(run.model)
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import copy
import dataclasses
import functools
import math
import os
import sys
from typing import Any, Optional

from ankh3_tasks import gin_search_path

# The features `seqio.EncDecFeatureConverter(pack=True)` gives T5X's model.
FEATURES = (
    "encoder_input_tokens",
    "encoder_segment_ids",
    "encoder_positions",
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_loss_weights",
    "decoder_segment_ids",
    "decoder_positions",
)


@dataclasses.dataclass
class GinRun:
  """What the gin files configure, for planning.

  Attributes:
    model: T5X's `EncoderDecoderModel` (the `MODEL` macro).
    settings: `batch_size`, `inputs_length`, `targets_length`,
      `num_partitions`, `microbatches`, `steps`, `num_devices`, each None
      where the files do not set it.
    rules: `PjitPartitioner.logical_axis_rules` (T5X's standard rules
      where unset).
    dropout_rate: the bound `DROPOUT_RATE` (0.0 where unbound).
  """

  model: Any
  settings: dict[str, Optional[int]]
  rules: Sequence[tuple[str, Optional[str]]]
  dropout_rate: float


def query(key: str) -> Any:
  """A gin binding's value, references called; None where unset."""
  import gin  # pylint: disable=g-import-not-at-top

  try:
    value = gin.query_parameter(key)
  except ValueError:
    return None
  if isinstance(value, gin.config.ConfigurableReference):
    if repr(value) == "%gin.REQUIRED":
      return None
    return value.scoped_configurable_fn() if value.evaluate else value
  return value


# Paths `load_gin` has added to gin's search path.
_GIN_SEARCH_PATHS: set[str] = set()


def add_gin_flags(parser: Any) -> None:
  """`--gin_file` (repeatable, required) and `--gin_search_paths`, as T5X's.

  With `split_gin_flags` for the `--gin.NAME=VALUE` bindings, a command
  takes gin files as `python -m t5x.train` does.
  """
  parser.add_argument(
      "--gin_file",
      action="append",
      required=True,
      help="gin file, as for t5x.train (repeatable)",
  )
  parser.add_argument(
      "--gin_search_paths",
      default="",
      help="comma-separated directories to look for gin files in",
  )


def split_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Splits `--gin.NAME=VALUE` flags off a command line, as `t5x.train` does.

  Uses T5X's own rewriting (`gin_utils.rewrite_gin_args`).

  Args:
    argv: command-line arguments.

  Returns:
    (the other arguments, the gin bindings as `NAME = VALUE`).

  Raises:
    ValueError: a `--gin.` flag without `=`.
  """
  from t5x import gin_utils  # pylint: disable=g-import-not-at-top

  prefix = "--gin_bindings="
  rewritten = gin_utils.rewrite_gin_args(
      [a for a in argv if a.startswith("--gin.")]
  )
  return [a for a in argv if not a.startswith("--gin.")], [
      a[len(prefix) :] for a in rewritten
  ]


@contextlib.contextmanager
def parsed_gin(
    gin_files: Sequence[str],
    bindings: Sequence[str] = (),
    search_paths: Sequence[str] = (),
    script: str = "train",
) -> Iterator[None]:
  """Gin's global config as `python -m t5x.train` parses it, for a while.

  The search path is `search_paths`, this package's gin tree and T5X's
  (for `t5x/configs/...`), after the current directory; each is added to
  gin's process-wide search path once. The run files
  `import __main__ as train_script`: `t5x.train` (`t5x.infer`, `t5x.eval`
  for `script`) stands in for `__main__` while they are parsed and inside
  the block. Nothing is finalised, so
  `MODEL_DIR` and the like may stay unset; a model file alone gets
  `DROPOUT_RATE = 0.0`. Gin's global config is cleared afterwards.

  Args:
    gin_files: e.g. `["gin/experiments/ankh3_large_pretrain.gin"]`.
    bindings: `NAME = VALUE` strings, applied after the files.
    search_paths: extra directories to look for the files in.
    script: "train", "infer" or "eval": the T5X script the files are for.

  Yields:
    Nothing: `query` and gin's own calls read the config inside the block.
  """
  import importlib  # pylint: disable=g-import-not-at-top

  import gin  # pylint: disable=g-import-not-at-top
  import t5x  # pylint: disable=g-import-not-at-top

  main_module = sys.modules["__main__"]
  sys.modules["__main__"] = importlib.import_module(f"t5x.{script}")
  try:
    gin.clear_config()
    for path in (
        *search_paths,
        gin_search_path.gin_search_path(),
        os.path.dirname(os.path.dirname(os.path.abspath(t5x.__file__))),
    ):
      # Gin's search path is process-wide and `clear_config` keeps it.
      if path not in _GIN_SEARCH_PATHS:
        _GIN_SEARCH_PATHS.add(path)
        gin.add_config_file_search_path(path)
    gin.parse_config_files_and_bindings(
        list(gin_files), list(bindings), finalize_config=False
    )
    if query("DROPOUT_RATE/macro.value") is None:
      gin.parse_config("DROPOUT_RATE = 0.0")
    yield
  finally:
    sys.modules["__main__"] = main_module
    gin.clear_config()


def settings() -> dict[str, Optional[int]]:
  """`GinRun.settings` of the gin config now parsed (`parsed_gin`)."""
  lengths = query("TASK_FEATURE_LENGTHS/macro.value") or {}
  submesh = query("partitioning.PjitPartitioner.model_parallel_submesh")
  partitions = query("partitioning.PjitPartitioner.num_partitions")
  if submesh:
    partitions = math.prod(submesh)
  return {
      "batch_size": query("BATCH_SIZE/macro.value"),
      "inputs_length": lengths.get("inputs"),
      "targets_length": lengths.get("targets"),
      "num_partitions": partitions,
      "microbatches": query("NUM_MICROBATCHES/macro.value"),
      "steps": query("TRAIN_STEPS/macro.value"),
      "num_devices": query("NUM_DEVICES/macro.value"),
  }


def load_gin(
    gin_files: Sequence[str],
    bindings: Sequence[str] = (),
    search_paths: Sequence[str] = (),
) -> GinRun:
  """Parses gin files as `python -m t5x.train` does and builds the model.

  As `parsed_gin` (the search path, `__main__`, `DROPOUT_RATE`); gin's
  global config is cleared afterwards.

  Args:
    gin_files: e.g. `["gin/experiments/ankh3_large_pretrain.gin"]`.
    bindings: `NAME = VALUE` strings, applied after the files.
    search_paths: extra directories to look for the files in.

  Returns:
    The `GinRun`.
  """
  from t5x import partitioning  # pylint: disable=g-import-not-at-top

  with parsed_gin(gin_files, bindings, search_paths):
    model = query("MODEL/macro.value")
    if model is None:
      raise ValueError(f"The gin files {list(gin_files)} set no MODEL.")
    rules = query("partitioning.PjitPartitioner.logical_axis_rules")
    if rules is None:
      rules = partitioning.standard_logical_axis_rules()
    return GinRun(
        model,
        settings(),
        tuple(rules),
        float(query("DROPOUT_RATE/macro.value")),
    )


@functools.lru_cache(maxsize=4)
def abstract_train_state(model: Any) -> Any:
  """T5X's train state for `model`, as shapes (`jax.eval_shape`)."""
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np
  from t5x import train_state as train_state_lib

  # pylint: enable=g-import-not-at-top

  def init(rng):
    variables = model.get_initial_variables(
        rng,
        {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)},
        {"encoder_input_tokens": np.int32, "decoder_input_tokens": np.int32},
    )
    return train_state_lib.FlaxOptimTrainState.create(
        model.optimizer_def, variables
    )

  return jax.eval_shape(init, jax.random.PRNGKey(0))


def abstract_batch(rows: int, inputs: int, targets: int) -> dict[str, Any]:
  """A packed batch of `rows` as `jax.ShapeDtypeStruct`s (int32)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  return {
      k: jax.ShapeDtypeStruct(
          (rows, targets if k.startswith("decoder") else inputs), np.int32
      )
      for k in FEATURES
  }


def train_state_initializer(
    model: Any, batch: Mapping[str, Any], partitioner: Any
) -> Any:
  """T5X's `utils.TrainStateInitializer` of `model` and `batch`, as t5x.train.

  Args:
    model: T5X's `EncoderDecoderModel`.
    batch: arrays or `jax.ShapeDtypeStruct`s of the `FEATURES` (int32).
    partitioner: T5X's partitioner.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from t5x import utils  # pylint: disable=g-import-not-at-top

  return utils.TrainStateInitializer(
      optimizer_def=model.optimizer_def,
      init_fn=model.get_initial_variables,
      input_shapes={k: v.shape for k, v in batch.items()},
      input_types={k: np.int32 for k in batch},
      partitioner=partitioner,
  )


def training(
    model: Any,
    batch: Mapping[str, Any],
    learning_rate_fn: Callable[[Any], Any],
    microbatches: int = 1,
) -> tuple[Any, Callable[[Any], Any]]:
  """T5X's train-state initializer and a `Trainer` factory, as `t5x.train`.

  Both on a `PjitPartitioner(num_partitions=1)`.

  Args:
    model: T5X's `EncoderDecoderModel`.
    batch: arrays or `jax.ShapeDtypeStruct`s of the `FEATURES` (int32).
    learning_rate_fn: the `Trainer`'s, a function of the step.
    microbatches: `Trainer(num_microbatches=...)` (1 for None).

  Returns:
    (`utils.TrainStateInitializer`, function of a train state, concrete or
    abstract, -> `Trainer`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from t5x import partitioning  # pylint: disable=g-import-not-at-top
  from t5x import trainer as trainer_lib  # pylint: disable=g-import-not-at-top

  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  initializer = train_state_initializer(model, batch, partitioner)

  def make_trainer(train_state: Any) -> Any:
    return trainer_lib.Trainer(
        model=model,
        train_state=train_state,
        partitioner=partitioner,
        eval_names=[],
        summary_dir=None,
        train_state_axes=initializer.train_state_axes,
        rng=jax.random.PRNGKey(0),
        learning_rate_fn=learning_rate_fn,
        num_microbatches=microbatches if microbatches > 1 else None,
    )

  return initializer, make_trainer


def token_scoring(model: Any) -> Any:
  """`model`, whose `score_batch` scores each target id instead of the sum.

  T5X's evaluators score examples with `model.score_batch`, which sums the
  log-likelihoods of a target's ids. Metrics that leave ids out (residues
  without sentinels and `</s>`: `metrics.ResidueCrossEntropy`) need them one
  by one; T5X computes them anyway, as `token_scores` among the
  intermediates. The copy returns those, `[batch, target length]`, zero at
  padding; everything else is `model`'s. `gin/runs/ankh3_eval.gin` hands it
  to `t5x.eval`:

    eval_script.evaluate.model = @t5x_adapter.token_scoring()
    t5x_adapter.token_scoring.model = %MODEL

  Args:
    model: T5X's `EncoderDecoderModel` (or another `BaseTransformerModel`
      whose `score_batch` returns `token_scores` intermediates).

  Returns:
    A shallow copy of `model` with the per-token `score_batch`.
  """
  scored = copy.copy(model)
  score_batch = model.score_batch

  def token_score_batch(params, batch, return_intermediates=False):
    _, intermediates = score_batch(params, batch, return_intermediates=True)
    (token_scores,) = intermediates["decoder"]["token_scores"]
    if return_intermediates:
      return token_scores, intermediates
    return token_scores

  scored.score_batch = token_score_batch
  return scored
