"""Mistakes on T5X's command line stop the run before it starts (needs gin).

The run files of this package (`gin/runs/*.gin`) import this module, which
registers three gin finalize hooks; they run when T5X finalizes the config,
before anything is built or restored.

A mistyped macro: `python -m t5x.train --gin.TRAIN_STEP=10` binds a macro no
gin file reads, and T5X alone trains the full `TRAIN_STEPS` and exits 0.
Every macro bound on the command line (`--gin.NAME=...` or
`--gin_bindings='NAME = ...'`) must be read by some binding (`%NAME`) or by
the package's code (`READ_BY_CODE`), or be set by a gin file of the run:

  ValueError: --gin.TRAIN_STEP: no gin file of this run reads the macro
  TRAIN_STEP; did you mean TRAIN_STEPS?

A checkpoint of another model size: `t5x.infer` or `t5x.eval` with a Large
gin file and a tiny checkpoint logs hundreds of "Not restoring param"
warnings and ends in a pytree structure error. The checkpoint named by
`CHECKPOINT_PATH` (or `INITIAL_CHECKPOINT_PATH`) is compared with the gin
model first, from the checkpoint's metadata, as the package's own tools do:

  ValueError: CHECKPOINT_PATH .../checkpoint_500: Config mismatch in
  emb_dim: the gin model has 1536, the checkpoint has 128.

Finished predictions in the output directory: `t5x.infer` into an
`INFER_OUTPUT_DIR` that holds finished prediction files (`*.COMPLETED`)
skips them, keeps the old predictions and rewrites `config.gin`, exit 0.
That is T5X's resume (other shards, other tasks of a mixture, unfinished
`tmp-*` chunks go on), so the run goes on too, but first says in one
warning which finished files it keeps as they are.

Bindings of a configurable's parameter (`--gin.utils.SaveCheckpointConfig.
period=...`) are gin's to check, as before. Processes that do not finalize
gin (the package's own tools) are left alone. The macro check reads T5X's
absl flags and does nothing without them; the other two act wherever the
run files are finalized with `CHECKPOINT_PATH`, `INITIAL_CHECKPOINT_PATH`
or `INFER_OUTPUT_DIR` set.
"""

import difflib
import os
import re
from typing import Any, Optional

import gin

_MACRO = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
# Macros the package's code reads with `gin.query_parameter`, not through a
# binding: `sources.data_dir` (ANKH3_DATA_DIR).
READ_BY_CODE = frozenset({"ANKH3_DATA_DIR"})


def _command_line_bindings() -> list[str]:
  """The `NAME = VALUE` bindings of T5X's command line; [] elsewhere."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if "gin_bindings" not in flags.FLAGS or not flags.FLAGS.is_parsed():
    return []
  return list(flags.FLAGS.gin_bindings or [])


def _gin_files() -> list[str]:
  from absl import flags  # pylint: disable=g-import-not-at-top

  if "gin_file" not in flags.FLAGS or not flags.FLAGS.is_parsed():
    return []
  return list(flags.FLAGS.gin_file or [])


def _read(path: str) -> Optional[str]:
  """A gin file's text, found as gin finds it (its search path, readers)."""
  # pylint: disable=protected-access
  prefixes = gin.config._LOCATION_PREFIXES if not os.path.isabs(path) else [""]
  for prefix in prefixes:
    candidate = os.path.join(prefix, path)
    for reader, exists in gin.config._FILE_READERS:
      if exists(candidate):
        with reader(candidate) as f:
          return f.read()
  # pylint: enable=protected-access
  return None


def _set_in_files(name: str, paths: list[str]) -> bool:
  """Whether one of the files, or a file they include, sets macro `name`."""
  pattern = re.compile(rf"^{re.escape(name)}\s*=", re.MULTILINE)
  seen = set()
  pending = list(paths)
  while pending:
    path = pending.pop()
    if path in seen:
      continue
    seen.add(path)
    text = _read(path)
    if text is None:
      continue
    if pattern.search(text):
      return True
    pending.extend(
        re.findall(r"^include\s+['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    )
  return False


def unused_macros(
    config: Any, bindings: list[str], gin_files: list[str]
) -> list[tuple[str, Optional[str]]]:
  """Macros the bindings set that no binding reads and no file sets.

  Args:
    config: gin's config (what a finalize hook gets).
    bindings: `NAME = VALUE` strings from the command line.
    gin_files: the run's gin files.

  Returns:
    (macro, the closest macro the run knows or None), in binding order.
  """
  read = set()
  known = set()
  for (scope, selector), _ in config.items():
    if selector == "gin.macro":
      known.add(scope)
  for reference in gin.config.iterate_references(config):
    name, _, selector = reference.scoped_selector.rpartition("/")
    if selector == "gin.macro":
      read.add(name)
  unused = []
  for binding in bindings:
    found = _MACRO.match(binding)
    if found is None:
      continue
    name = found.group(1)
    if name in read or name in READ_BY_CODE or _set_in_files(name, gin_files):
      continue
    close = difflib.get_close_matches(name, sorted((read | known) - {name}), 1)
    unused.append((name, close[0] if close else None))
  return unused


@gin.config.register_finalize_hook
def check_command_line_macros(config: Any) -> None:
  """gin finalize hook: refuse a command-line macro nothing reads."""
  unused = unused_macros(config, _command_line_bindings(), _gin_files())
  if not unused:
    return None
  lines = []
  for name, close in unused:
    hint = f"; did you mean {close}?" if close else ""
    lines.append(
        f"--gin.{name}: no gin file of this run reads the macro {name}{hint}"
    )
  raise ValueError("\n".join(lines))


def _macro_value(config: Any, name: str) -> Any:
  return config.get((name, "gin.macro"), {}).get("value")


@gin.config.register_finalize_hook
def check_checkpoint_matches_model(config: Any) -> None:
  """gin finalize hook: a checkpoint to restore has the gin model's shapes."""
  from ankh3_tasks import checkpoints  # pylint: disable=g-import-not-at-top

  for name in ("CHECKPOINT_PATH", "INITIAL_CHECKPOINT_PATH"):
    path = _macro_value(config, name)
    if not isinstance(path, str) or not path:
      continue
    shapes = checkpoints.param_shapes(path)
    if shapes is None:
      continue  # Not an Orbax checkpoint_N: T5X says what it finds there.
    try:
      model = gin.query_parameter("network.Transformer.config")
    except ValueError:
      return None
    expected = model.scoped_configurable_fn()
    found = checkpoints.params_config(
        shapes, expected.relative_attention_max_distance
    )
    try:
      checkpoints.check_config(expected, found)
    except ValueError as e:
      raise ValueError(f"{name} {path}: {e}") from None
  return None


@gin.config.register_finalize_hook
def check_infer_output_dir(config: Any) -> None:
  """gin finalize hook: say which finished predictions t5x.infer keeps."""
  directory = _macro_value(config, "INFER_OUTPUT_DIR")
  if not isinstance(directory, str) or not directory:
    return None
  from absl import logging  # pylint: disable=g-import-not-at-top

  finished = finished_predictions(directory)
  if finished:
    logging.warning(
        "INFER_OUTPUT_DIR %s already holds finished predictions (%s): "
        "t5x.infer keeps them as they are, whatever this run's settings, and "
        "predicts only what is missing. To predict them again, remove them "
        "or choose another INFER_OUTPUT_DIR.",
        directory,
        ", ".join(finished),
    )
  return None


def finished_predictions(directory: str) -> list[str]:
  """The prediction files T5X marked finished in `directory` (`.COMPLETED`)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return sorted(
      os.path.basename(p)[: -len(".COMPLETED")]
      for p in tf.io.gfile.glob(os.path.join(directory, "*.COMPLETED"))
  )
