"""T5X as two processes on one machine, as on two hosts (marker `t5x`).

`python -m t5x.train` runs the embedded default as 2 JAX processes on CPU
(`--multiprocess_gpu` with a local coordinator; gloo for the collectives):
each process owns one device of a 2 x 1 mesh and reads its own half of the
data. Checks that each process reads a disjoint part of the training split
and that together they read all of it, that the loss falls, that a
1-process run continues from the 2-process checkpoint, and that a 2-process
run continues from that 1-process checkpoint.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from conftest import scalars

pytestmark = [pytest.mark.t5x, pytest.mark.slow]

EXPERIMENT = "gin/experiments/ankh3_tiny_sample.gin"
LOSS = "loss_per_nonpadding_target_token"
# Few steps and small periods: the whole file runs in about 4 minutes on 2
# cores. No dataset checkpoints: they are per process, so a 2-process
# checkpoint's dataset position cannot be restored by 1 process.
COMMON = (
    "SAVE_DATASET=False",
    "STATS_PERIOD=5",
    "CHECKPOINT_PERIOD=10",
    "EVAL_PERIOD=10",
    "EVAL_STEPS=1",
)

# Bound as T5X's `train.get_dataset_fn` in the first run: calls T5X's own
# `utils.get_dataset` with what T5X passes, and records, per process, the
# shard T5X gave it and the proteins seqio reads from the task's source for
# that shard (the same source, split, shuffle and seed, one epoch).
_RECORDER = '''\
"""Records what each T5X process reads; see tests/multiprocess_test.py."""

import json
import os

import jax
import seqio
from t5x import utils


def get_dataset(cfg, shard_id, num_shards, feature_converter_cls,
                num_epochs=None, continue_from_last_checkpoint=False, *,
                out_dir):
  ds = utils.get_dataset(cfg, shard_id, num_shards, feature_converter_cls,
                         num_epochs, continue_from_last_checkpoint)
  task = seqio.get_mixture_or_task(cfg.mixture_or_task_name)
  # The task's source with no preprocessing: seqio shards it for the shard
  # as it does for the task.
  raw = seqio.Task("_recorded_source", source=task.source,
                   output_features={}, preprocessors=[])
  shard = seqio.ShardInfo(index=shard_id, num_shards=num_shards)
  proteins = [
      ex["id"].decode()
      for ex in raw.get_dataset(None, split=cfg.split, shuffle=cfg.shuffle,
                                seed=cfg.seed, shard_info=shard,
                                num_epochs=1).as_numpy_iterator()
  ]
  record = dict(
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      shard_id=shard_id,
      num_shards=num_shards,
      rows=int(ds.element_spec["encoder_input_tokens"].shape[0]),
      proteins=proteins,
  )
  path = os.path.join(out_dir, f"process_{jax.process_index()}.json")
  with open(path, "w") as f:
    json.dump(record, f)
  return ds
'''

_RECORDER_GIN = """\
from __gin__ import dynamic_registration

import __main__ as train_script
import ankh3_shard_recorder

train_script.train.get_dataset_fn = @ankh3_shard_recorder.get_dataset
ankh3_shard_recorder.get_dataset.out_dir = {out_dir!r}
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(model_dir, processes, *bindings, flags=(), pythonpath=None):
  """Runs t5x.train as `processes` processes; returns their logs."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if pythonpath:
    env["PYTHONPATH"] = os.pathsep.join(
        [str(pythonpath), *filter(None, [env.get("PYTHONPATH")])]
    )
  argv = [
      sys.executable,
      "-m",
      "t5x.train",
      f"--gin_file={EXPERIMENT}",
      *flags,
      f'--gin.MODEL_DIR="{model_dir}"',
      *(f"--gin.{b}" for b in (*COMMON, *bindings)),
  ]
  if processes > 1:
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    argv += [
        "--multiprocess_gpu",
        f"--coordinator_address=127.0.0.1:{_free_port()}",
        f"--process_count={processes}",
    ]
  # Logs go to files: a pipe that is not being read fills up and blocks its
  # process, and then the other one in a collective.
  log_paths = [
      f"{model_dir}.process_{i}_of_{processes}.log" for i in range(processes)
  ]
  runs = []
  try:
    for i, log_path in enumerate(log_paths):
      with open(log_path, "w") as log:
        runs.append(
            subprocess.Popen(
                argv + ([f"--process_index={i}"] if processes > 1 else []),
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        )
    for run in runs:
      run.wait(timeout=600)
  finally:
    for run in runs:  # Only the processes this test started.
      if run.poll() is None:
        run.kill()
        run.wait()
  logs = []
  for i, (run, log_path) in enumerate(zip(runs, log_paths)):
    with open(log_path) as f:
      logs.append(f.read())
    assert run.returncode == 0, f"process {i}:\n{logs[-1][-5000:]}"
  return logs


def _checkpoints(model_dir):
  return sorted(
      int(os.path.basename(p).split("_")[1])
      for p in glob.glob(os.path.join(model_dir, "checkpoint_*"))
      if os.path.basename(p).split("_")[1].isdigit()
  )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """2 processes for 20 steps, then 1 process to 30, then 2 to 40."""
  root = tmp_path_factory.mktemp("multiprocess")
  records = root / "records"
  records.mkdir()
  (root / "ankh3_shard_recorder.py").write_text(_RECORDER)
  recorder_gin = root / "recorder.gin"
  recorder_gin.write_text(_RECORDER_GIN.format(out_dir=str(records)))

  two = root / "two"
  two_logs = _train(
      two,
      2,
      "TRAIN_STEPS=20",
      flags=[f"--gin_file={recorder_gin}"],
      pythonpath=root,
  )
  loss_two = scalars(two / "train", LOSS)
  checkpoints_two = _checkpoints(two)

  one = root / "one"
  shutil.copytree(two, one)
  one_log = _train(one, 1, "TRAIN_STEPS=30")[0]
  loss_one = scalars(one / "train", LOSS)

  again = root / "again"
  shutil.copytree(one, again)
  again_logs = _train(again, 2, "TRAIN_STEPS=40")
  return dict(
      records=records,
      two=(two, two_logs, loss_two, checkpoints_two),
      one=(one, one_log, loss_one),
      again=(again, again_logs),
  )


def _source_proteins(split="train"):
  """Ids of the split's proteins, as the task's source holds them."""
  import seqio  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top,unused-import
  from ankh3_tasks import tasks

  task = seqio.get_mixture_or_task("ankh3_sample_multitask")
  ds = task.source.get_dataset(split=split, shuffle=False)
  return [ex["id"].decode() for ex in ds.as_numpy_iterator()]


def test_two_processes_form_one_two_device_job(runs):
  _, logs, _, _ = runs["two"]
  for i, log in enumerate(logs):
    assert "Initializing distributed system for multi-host GPU" in log
    assert f"Process ID: {i}" in log
    # Half of the global batch of 16 rows each.
    assert (
        "Initializing dataset for task 'ankh3_sample_multitask' with a "
        "replica batch size of 8"
    ) in log


def test_each_process_reads_its_own_part_and_together_all(runs):
  import json  # pylint: disable=g-import-not-at-top

  records = [
      json.loads((runs["records"] / f"process_{i}.json").read_text())
      for i in range(2)
  ]
  for i, record in enumerate(records):
    assert record["process_index"] == i
    assert record["process_count"] == 2
    assert (record["shard_id"], record["num_shards"]) == (i, 2)
    assert record["rows"] == 8
  first, second = (set(r["proteins"]) for r in records)
  # Each process reads each of its proteins once per epoch.
  assert len(first) == len(records[0]["proteins"])
  assert len(second) == len(records[1]["proteins"])
  assert first and second
  assert not first & second
  everything = _source_proteins()
  assert len(set(everything)) == len(everything)
  assert first | second == set(everything)
  assert abs(len(first) - len(second)) <= 1


def test_two_processes_lower_the_loss_and_checkpoint(runs):
  model_dir, _, loss, checkpoints = runs["two"]
  assert sorted(loss) == [5, 10, 15, 20]
  assert loss[20] < loss[10] < loss[5], loss
  assert all(np.isfinite(v) for v in loss.values())
  assert checkpoints == [0, 10, 20]  # T5X saves the initial state too.
  assert (model_dir / "config.gin").exists()


def test_one_process_continues_from_the_two_process_checkpoint(runs):
  model_dir, log, loss = runs["one"]
  assert f"Restoring checkpoint from {model_dir}/checkpoint_20" in log
  assert "Starting main loop over steps 20-30" in log
  assert "Initializing distributed system" not in log
  assert _checkpoints(model_dir)[-2:] == [20, 30]
  # Restored, not started over: the loss goes on from where it was.
  assert loss[30] < loss[5], loss


def test_two_processes_continue_from_a_one_process_checkpoint(runs):
  model_dir, logs = runs["again"]
  for log in logs:
    assert f"Restoring checkpoint from {model_dir}/checkpoint_30" in log
    assert "Starting main loop over steps 30-40" in log
  assert _checkpoints(model_dir)[-2:] == [30, 40]
  loss = scalars(model_dir / "train", LOSS)
  assert sorted(loss)[-2:] == [35, 40]
  assert loss[40] < loss[5], loss
