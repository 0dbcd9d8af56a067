r"""The results of `t5x.eval` with `gin/runs/ankh3_eval.gin`, as one table.

  python -m ankh3_tasks.evaluate EVAL_OUTPUT_DIR [--step=N] [--json=FILE]

T5X writes the evaluation in two places (see `gin/runs/ankh3_eval.gin`):

  inference_eval/<task>-metrics.jsonl  seqio, the whole split: the cross
                                       entropy per target token, perplexity,
                                       the cross entropy per target residue
                                       beside the composition baseline,
                                       and from greedy decodes the share of
                                       masked residues / of the continuation
                                       right (ankh3_tasks/metrics.py)
  training_eval/<task>/events.*        T5X's training evaluator, teacher-
                                       forced: token accuracy, and losses

This reads both and prints one row per task, e.g. for the tiny model after
500 steps:

  | task | step | token accuracy | cross entropy / token | perplexity | ...
  | ankh3_sample_eval_denoise_15 | 500 | 0.4983 | 1.6438 | 5.1746 | ...

with, further right, 2.8733 nats per masked residue against 2.8998 for the
composition baseline.

`token accuracy` is the share of target ids (`</s>` and sentinels included)
the model ranks first given the true previous ids. `cross entropy / residue`
counts the residues alone (no sentinel, no `</s>`); `composition baseline /
residue` scores the same residues by the training split's residue
frequencies: a model that beats it has learned more than the composition. `--json` writes the same
rows as a list of objects. By default the latest step evaluated is shown.
"""

import argparse
from collections.abc import Sequence
import json
import os
import sys
from typing import Any, Optional

import tensorflow as tf

from ankh3_tasks import cli

INFERENCE_EVAL = "inference_eval"
TRAINING_EVAL = "training_eval"
# From the training evaluator, by the name the table gives them.
TRAINING_METRICS = {
    "accuracy": "token_accuracy",
    "cross_ent_loss_per_all_target_tokens": "_cross_ent_per_all_tokens",
    "non_padding_fraction/loss_weights": "_non_padding_fraction",
    "timing/seqs": "teacher_forced_examples",
}
COLUMNS = (
    ("task", "task"),
    ("step", "step"),
    ("token_accuracy", "token accuracy"),
    ("cross_entropy_per_token", "cross entropy / token"),
    ("perplexity", "perplexity"),
    ("residue_cross_entropy", "cross entropy / residue"),
    ("composition_baseline", "composition baseline / residue"),
    ("teacher_forced_cross_entropy", "teacher-forced cross entropy"),
    ("masked_residue_accuracy", "masked residues right (greedy)"),
    ("completion_identity", "completion identity (greedy)"),
    ("num_examples", "examples"),
    ("teacher_forced_examples", "teacher-forced examples"),
)


def read_inference_eval(eval_dir: str) -> dict[tuple[str, int], dict]:
  """Returns seqio's metrics keyed by (task, step)."""
  results = {}
  pattern = os.path.join(eval_dir, INFERENCE_EVAL, "*-metrics.jsonl")
  for path in tf.io.gfile.glob(pattern):
    task = os.path.basename(path)[: -len("-metrics.jsonl")]
    with tf.io.gfile.GFile(path) as f:
      for line_number, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          row = json.loads(line)
          step = int(row.pop("step"))
        except (ValueError, KeyError) as e:
          raise ValueError(
              f"{path} line {line_number}: not a seqio metrics line ({e})."
          ) from e
        results[(task, step)] = row
  return results


def read_training_eval(eval_dir: str) -> dict[tuple[str, int], dict]:
  """Returns the training evaluator's scalars keyed by (task, step)."""
  results = {}
  for task_dir in tf.io.gfile.glob(os.path.join(eval_dir, TRAINING_EVAL, "*")):
    task = os.path.basename(task_dir)
    for path in sorted(tf.io.gfile.glob(os.path.join(task_dir, "events.*"))):
      # Event records read directly: tf.compat.v1.train.summary_iterator
      # logs a deprecation warning on every call.
      for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        event = tf.compat.v1.Event.FromString(record)
        for value in event.summary.value:
          if value.tag not in TRAINING_METRICS:
            continue
          if value.HasField("tensor"):
            number = float(tf.make_ndarray(value.tensor))
          else:
            number = float(value.simple_value)
          row = results.setdefault((task, int(event.step)), {})
          row[TRAINING_METRICS[value.tag]] = number
  return results


def table_rows(eval_dir: str, step: Optional[int] = None) -> list[dict]:
  """Returns one row per task at `step` (default: the latest step).

  Raises:
    FileNotFoundError: if `eval_dir` holds no results (at that step).
  """
  inference = read_inference_eval(eval_dir)
  training = read_training_eval(eval_dir)
  steps = {s for _, s in inference} | {s for _, s in training}
  if not steps:
    raise FileNotFoundError(
        f"No evaluation results in {eval_dir}: expected {INFERENCE_EVAL}/"
        f"*-metrics.jsonl or {TRAINING_EVAL}/<task>/events.* from t5x.eval."
    )
  if step is None:
    step = max(steps)
  elif step not in steps:
    raise FileNotFoundError(
        f"No results for step {step} in {eval_dir}; steps: {sorted(steps)}."
    )
  tasks = sorted(
      {t for t, s in inference if s == step}
      | {t for t, s in training if s == step}
  )
  rows = []
  for task in tasks:
    row: dict[str, Any] = {"task": task, "step": step}
    row.update(inference.get((task, step), {}))
    row.update(training.get((task, step), {}))
    # T5X divides by every target position, padding included.
    per_all = row.pop("_cross_ent_per_all_tokens", None)
    fraction = row.pop("_non_padding_fraction", None)
    if per_all is not None and fraction:
      row["teacher_forced_cross_entropy"] = per_all / fraction
    rows.append(row)
  return rows


# Columns that count things; the others are rates, printed with 4 decimals.
_COUNTS = ("step", "num_examples", "teacher_forced_examples")


def _cell(key: str, value: Any) -> str:
  if value is None:
    return "-"
  if key in _COUNTS:
    return str(int(value))
  if isinstance(value, float):
    return f"{value:.4f}"
  return str(value)


def markdown(rows: Sequence[dict]) -> str:
  """Formats `table_rows` as a Markdown table."""
  lines = [
      "| " + " | ".join(title for _, title in COLUMNS) + " |",
      "|" + "|".join("---" for _ in COLUMNS) + "|",
  ]
  for row in rows:
    cells = (_cell(key, row.get(key)) for key, _ in COLUMNS)
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.evaluate",
      description="Print the results of t5x.eval (gin/runs/ankh3_eval.gin).",
  )
  parser.add_argument("eval_dir", help="t5x.eval's EVAL_OUTPUT_DIR.")
  parser.add_argument("--step", type=int, help="default: the latest.")
  parser.add_argument("--json", help="also write the rows to this file.")
  args = parser.parse_args(argv)
  rows = table_rows(args.eval_dir, args.step)
  print(markdown(rows))
  if args.json:
    with tf.io.gfile.GFile(args.json, "w") as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
