"""Tests of held-out evaluation: `gin/runs/ankh3_eval.gin` with `t5x.eval`
(marker `t5x`) and the results table of `ankh3_tasks.evaluate`."""

import json
import os
import sys

import pytest
import tensorflow as tf

from ankh3_tasks import cli
from ankh3_tasks import evaluate

from conftest import REPO
from conftest import run_module

KINDS = ("complete", "denoise_15", "denoise_20", "denoise_30")


def _write_results(eval_dir, step, task, accuracy, per_all, fraction, jsonl):
  # TensorBoard event records as T5X writes them (scalars as tensors),
  # without TensorBoard itself (it comes with the `t5x` extra only).
  task_dir = os.path.join(eval_dir, "training_eval", task)
  os.makedirs(task_dir, exist_ok=True)
  scalars = {
      "accuracy": accuracy,
      "cross_ent_loss_per_all_target_tokens": per_all,
      "non_padding_fraction/loss_weights": fraction,
      "loss": 99.0,  # Not shown.
  }
  event = tf.compat.v1.Event(step=step)
  for tag, value in scalars.items():
    event.summary.value.add(
        tag=tag, tensor=tf.make_tensor_proto(value, dtype=tf.float32)
    )
  path = os.path.join(task_dir, f"events.out.tfevents.{step}")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(event.SerializeToString())
  os.makedirs(os.path.join(eval_dir, "inference_eval"), exist_ok=True)
  path = os.path.join(eval_dir, "inference_eval", f"{task}-metrics.jsonl")
  with open(path, "a") as f:
    f.write(json.dumps({"step": step, **jsonl}) + "\n")


def test_table_joins_both_evaluators_by_task_and_step(tmp_path, capsys):
  for step, accuracy in ((100, 0.25), (200, 0.5)):
    _write_results(
        str(tmp_path),
        step,
        "t_denoise_15",
        accuracy,
        0.6,
        0.5,
        {"cross_entropy_per_token": 1.25, "masked_residue_accuracy": 0.125},
    )
  rows = evaluate.table_rows(str(tmp_path))
  assert len(rows) == 1
  row = rows[0]
  assert row["step"] == 200 and row["task"] == "t_denoise_15"
  assert row["token_accuracy"] == pytest.approx(0.5)
  # 0.6 over all target positions, half of them padding: 1.2 per token.
  assert row["teacher_forced_cross_entropy"] == pytest.approx(1.2)
  assert "loss" not in row
  assert evaluate.table_rows(str(tmp_path), 100)[0]["token_accuracy"] == 0.25
  with pytest.raises(FileNotFoundError, match=r"steps: \[100, 200\]"):
    evaluate.table_rows(str(tmp_path), 300)

  out = tmp_path / "rows.json"
  assert cli.run(evaluate.main, [str(tmp_path), f"--json={out}"]) == 0
  table = capsys.readouterr().out
  # Perplexity and the residue columns are not in these results.
  assert "| t_denoise_15 | 200 | 0.5000 | 1.2500 | - | - | - | 1.2000 |" in table
  assert json.loads(out.read_text()) == rows

  # As a user runs it, in a process of its own: nothing but the table (no
  # TensorFlow deprecation notice for reading the event files).
  run = run_module("ankh3_tasks.evaluate", str(tmp_path), timeout=120)
  assert "| t_denoise_15 | 200 |" in run.stdout
  assert "deprecat" not in run.stderr.lower(), run.stderr[-3000:]


def test_empty_or_bad_directories_say_what_is_missing(tmp_path, capsys):
  assert cli.run(evaluate.main, [str(tmp_path)]) == 1
  assert "inference_eval/*-metrics.jsonl" in capsys.readouterr().err
  bad = tmp_path / "inference_eval" / "t-metrics.jsonl"
  bad.parent.mkdir()
  bad.write_text('{"step": 1}\nnot json\n')
  with pytest.raises(ValueError, match="t-metrics.jsonl line 2"):
    evaluate.table_rows(str(tmp_path))


# ----------------------------------------------------------------- t5x.eval


@pytest.mark.t5x
@pytest.mark.parametrize(
    "files, task",
    [
        (["gin/experiments/ankh3_tiny_eval.gin"], "ankh3_sample_eval"),
        (
            [
                "gin/models/ankh3_large.gin",
                "gin/runs/ankh3_eval.gin",
                "gin/partitioning/tpu_v4_128_data_parallel.gin",
            ],
            "ankh3_uniref50_eval",
        ),
        (
            [
                "gin/models/ankh3_xl.gin",
                "gin/runs/ankh3_eval.gin",
                "gin/partitioning/tpu_v4_128_model_parallel_2.gin",
            ],
            "ankh3_uniref50_eval",
        ),
        (
            [
                "gin/models/ankh3_large.gin",
                "gin/runs/ankh3_eval.gin",
                "gin/partitioning/gpu_8.gin",
            ],
            "ankh3_uniref50_eval",
        ),
    ],
)
def test_eval_gin_files_parse_and_finalize(files, task, monkeypatch):
  import gin  # pylint: disable=g-import-not-at-top
  from t5x import eval as eval_script  # pylint: disable=g-import-not-at-top
  from t5x import trainer  # pylint: disable=g-import-not-at-top

  # The run file imports `__main__ as eval_script`, t5x.eval when run.
  monkeypatch.setitem(sys.modules, "__main__", eval_script)
  gin.clear_config()
  try:
    gin.add_config_file_search_path(REPO)
    gin.parse_config_files_and_bindings(
        files,
        ['CHECKPOINT_PATH = "unused"', 'EVAL_OUTPUT_DIR = "unused"'],
        finalize_config=True,
    )
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == task
    assert gin.query_parameter("%EVAL_SPLIT") == "validation"
    evaluator = gin.query_parameter(
        "eval_script.evaluate.training_evaluator_cls"
    )
    assert issubclass(evaluator.scoped_configurable_fn, trainer.Trainer)
    # The batch divides over the data-parallel devices.
    partitions = gin.query_parameter(
        "partitioning.PjitPartitioner.num_partitions"
    )
    devices = gin.query_parameter("%NUM_DEVICES") // partitions
    assert gin.query_parameter("%EVAL_BATCH_SIZE") % devices == 0
    lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
    if task == "ankh3_uniref50_eval":
      assert lengths == {"inputs": 512, "targets": 320}
  finally:
    gin.clear_config()


@pytest.mark.t5x
@pytest.mark.slow
def test_t5x_eval_of_the_tiny_model_reports_every_task(
    tiny_checkpoint, tmp_path
):
  out = tmp_path / "eval"
  run_module(
      "t5x.eval",
      "--gin_file=gin/experiments/ankh3_tiny_eval.gin",
      f'--gin.CHECKPOINT_PATH="{tiny_checkpoint}"',
      f'--gin.EVAL_OUTPUT_DIR="{out}"',
  )
  rows = {r["task"]: r for r in evaluate.table_rows(str(out))}
  assert set(rows) == {"ankh3_sample_eval"} | {
      f"ankh3_sample_eval_{kind}" for kind in KINDS
  }
  for kind in KINDS:
    row = rows[f"ankh3_sample_eval_{kind}"]
    assert row["step"] == 500
    assert row["num_examples"] == 300  # The whole validation split.
    # 15 batches of 20 (gin/experiments/ankh3_tiny_eval.gin): each protein
    # once, so both evaluators see the same examples and the same masks...
    assert row["teacher_forced_examples"] == 300
    assert 0 <= row["token_accuracy"] <= 1
    # ...and agree: seqio's count of target ids is T5X's loss weights.
    assert row["cross_entropy_per_token"] == pytest.approx(
        row["teacher_forced_cross_entropy"], rel=2e-3
    )
    # After 500 steps: well below a uniform guess over the 256 ids
    # (ln 256 = 5.55), and no model is certain of protein residues.
    assert 0.5 < row["cross_entropy_per_token"] < 0.75 * 5.55
    assert row["perplexity"] == pytest.approx(
        2.718281828 ** row["cross_entropy_per_token"], rel=1e-6
    )
    decoded = row.get("masked_residue_accuracy", row.get("completion_identity"))
    assert 0 <= decoded <= 1
    # Residues alone: completion targets are residues and `</s>`; denoising
    # targets add a sentinel before each span of one or more residues.
    without_eos = row["num_target_tokens"] - 300
    if kind == "complete":
      assert row["scored_residues"] == without_eos
    else:
      assert without_eos / 2 <= row["scored_residues"] < without_eos
    # The baseline: real proteins' composition, near ln 20 = 3.0 nats; the
    # entropy of the training residues is the same for every task.
    assert 2.8 < row["composition_baseline"] < 3.0
    assert row["composition_entropy"] == pytest.approx(2.8966, abs=1e-4)
    assert 2.0 < row["residue_cross_entropy"] < 4.0
    if kind != "complete":
      # The embedded default learns more than the composition: about 0.027
      # nats per masked residue ahead after 500 steps on this machine (0.012
      # on completion, too close to CPU-to-CPU differences to assert).
      assert row["residue_cross_entropy"] < row["composition_baseline"] - 0.01
