"""Tests of `python -m tpu_launch watch` against a fake two-worker slice.

The fake `gcloud` and worker `python` of tests/tpu_launch_test.py run the
watcher's commands in local directories; two small scripts they load add the
TPU's state (describe, create, delete, preemption, a queued resource that
waits for capacity, a quota error, a maintenance event) and a fake
`t5x.train` that steps, logs and writes `checkpoint_N` into MODEL_DIR, and
resumes from the newest one. Each test lets the run reach a checkpoint,
breaks it, and checks that the watcher brings it to its last step, restarting
the same `train` command byte for byte. Polls take milliseconds.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tpu_launch import cli
from tpu_launch import watch

import tpu_launch_test as launch_test

STEPS = 40
PERIOD = 2  # The fake writes a checkpoint every PERIOD steps.
POLL_INTERVAL = 0.02  # The watcher's --poll_interval, in seconds.

# Runs inside the fake gcloud (globals: args, root, os, json, shutil,
# subprocess, sys): the TPU's state lives in ROOT/cloud.json.
_CLOUD = r"""
def _load():
  with open(os.path.join(root, "cloud.json")) as f:
    return json.load(f)

def _save(cloud):
  path = os.path.join(root, "cloud.json")
  with open(path + ".tmp", "w") as f:
    json.dump(cloud, f)
  os.replace(path + ".tmp", path)

_homes = [os.path.join(root, w) for w in ("w0", "w1")]

def _wipe():
  for home in _homes:
    try:
      with open(os.path.join(home, "ankh3", "train.pid")) as f:
        os.killpg(int(f.read()), 9)
    except (OSError, ValueError):
      pass
    shutil.rmtree(os.path.join(home, "ankh3"), ignore_errors=True)
    os.makedirs(home, exist_ok=True)

def _fail(message, code=1):
  print(message, file=sys.stderr)
  sys.exit(code)

_cloud = _load()
_group, _verb = args[2], args[3]
if _verb == "create" and _cloud.get("create_errors", 0):
  _cloud["create_errors"] -= 1
  _save(_cloud)
  _fail(
      "ERROR: (gcloud.compute.tpus.tpu-vm.create) RESOURCE_EXHAUSTED: Quota"
      " 'TPUV4_PER_PROJECT_PER_ZONE' exhausted. Limit 64.0 in region"
      " us-central2."
  )
if _group == "queued-resources":
  if _verb == "describe":
    if _cloud.get("queued") is None:
      _fail("ERROR: (gcloud) NOT_FOUND: queued resource not found")
    if _cloud["queued"] == "WAITING_FOR_RESOURCES":
      _cloud["wait"] -= 1
      if _cloud["wait"] <= 0:
        _cloud.update(queued="ACTIVE", node="READY")
      _save(_cloud)
    print(json.dumps({"state": {"state": _cloud["queued"]}}))
  elif _verb == "create":
    _cloud.update(queued="WAITING_FOR_RESOURCES", wait=3, node=None)
    _save(_cloud)
  elif _verb == "delete":
    _wipe()
    _cloud.update(queued=None, node=None)
    _save(_cloud)
  sys.exit(0)
if _verb == "describe":
  if _cloud.get("node") is None:
    _fail("ERROR: (gcloud) NOT_FOUND: TPU VM not found")
  if _cloud["node"] == "REPAIRING":
    _cloud["repair"] -= 1
    if _cloud["repair"] <= 0:
      _cloud["node"] = "READY"
    _save(_cloud)
  print(json.dumps({"name": "ankh3", "state": _cloud["node"]}))
  sys.exit(0)
if _verb == "create":
  _wipe()
  _cloud["node"] = "READY"
  _save(_cloud)
  sys.exit(0)
if _verb == "delete":
  _wipe()
  _cloud["node"] = None
  _save(_cloud)
  sys.exit(0)
if _cloud.get("node") != "READY":
  _fail("ssh: connect to host 10.0.0.2 port 22: Connection refused", 255)
if _verb == "ssh":
  _command = [a for a in args if a.startswith("--command=")][0]
  if "apt-get" in _command:  # setup: python3.11, ankh3/dist
    for home in _homes:
      os.makedirs(os.path.join(home, "ankh3", "dist"), exist_ok=True)
    sys.exit(0)
  if "-m venv venv" in _command:  # setup: the venv
    for home in _homes:
      target = os.path.join(home, "ankh3", "venv", "bin")
      os.makedirs(target, exist_ok=True)
      shutil.copy(os.path.join(root, "fake_python"), target + "/python")
    sys.exit(0)
"""

# Runs inside the fake worker python as `t5x.train` (globals: sys, os, json,
# time): steps, logs, checkpoints (worker 0), resumes from the newest one.
_TRAIN = r"""
import ast, glob, re
root = os.environ["FAKE_TPU_ROOT"]
home = os.environ["HOME"]
argv = sys.argv[3:]
def _value(name):
  found = [a for a in argv if a.startswith(f"--gin.{name}=")]
  return found[-1].split("=", 1)[1]
model_dir = ast.literal_eval(_value("MODEL_DIR"))
steps = int(_value("TRAIN_STEPS"))
done = [0]
for path in glob.glob(model_dir + "/checkpoint_*"):
  match = re.fullmatch(r"checkpoint_(\d+)", os.path.basename(path))
  if match and os.path.exists(path + "/commit_success.txt"):
    done.append(int(match.group(1)))
step = max(done)
started = time.time()
with open(os.path.join(root, "starts.jsonl"), "a") as f:
  record = dict(worker=os.path.basename(home), argv=argv, step=step)
  f.write(json.dumps(record) + "\n")
print(f"restored step {step}", flush=True)
hang = os.path.join(root, "hang")
while step < steps:
  if home.endswith("w0") and os.path.exists(hang):
    with open(hang, "w") as f:
      f.write(str(started))
    os.rename(hang, hang + ".taken")
  try:
    with open(hang + ".taken") as f:
      if abs(float(f.read()) - started) < 1.0:
        while True:  # Hung, as a collective whose peer is gone.
          time.sleep(1)
  except (OSError, ValueError):
    pass
  time.sleep(0.05)
  step += 1
  print(f"step {step}", flush=True)
  if home.endswith("w0") and step % 2 == 0:
    os.makedirs(f"{model_dir}/checkpoint_{step}")
    open(f"{model_dir}/checkpoint_{step}/commit_success.txt", "w").close()
sys.exit(0)
"""


class _Slice:
  """The fake slice: its state, workers, and what happened to them."""

  def __init__(self, root):
    self.root = root
    self.model_dir = root / "model dir"
    self.model_dir.mkdir()

  @property
  def cloud(self):
    with open(self.root / "cloud.json") as f:
      return json.load(f)

  def set(self, **changes):
    cloud = self.cloud
    cloud.update(changes)
    with open(self.root / "cloud.json.tmp", "w") as f:
      json.dump(cloud, f)
    os.replace(self.root / "cloud.json.tmp", self.root / "cloud.json")

  def pgid(self, worker):
    with open(self.root / worker / "ankh3" / "train.pid") as f:
      return int(f.read())

  def kill(self, *workers):
    for worker in workers:
      with contextlib.suppress(OSError, ValueError):
        os.killpg(self.pgid(worker), signal.SIGKILL)

  def wait_for_checkpoint(self, step, seconds=30.0):
    path = self.model_dir / f"checkpoint_{step}" / "commit_success.txt"
    deadline = time.monotonic() + seconds
    while not path.exists():
      assert time.monotonic() < deadline, f"no checkpoint {step}"
      time.sleep(0.01)

  def lines(self, name):
    path = self.root / name
    if not path.exists():
      return []
    with open(path) as f:
      return [json.loads(line) for line in f]


@pytest.fixture
def tpu(tmp_path, monkeypatch):
  """A READY two-worker TPU VM after `setup`, nothing running yet."""
  root = tmp_path
  bin_dir = root / "bin"
  bin_dir.mkdir()
  launch_test._executable(
      bin_dir / "gcloud", launch_test._FAKE_GCLOUD.format(python=sys.executable)
  )
  fake_python = launch_test._FAKE_PYTHON.format(
      python=sys.executable, search_path=launch_test.SEARCH_PATH
  )
  launch_test._executable(root / "fake_python", fake_python)
  (root / "cloud.json").write_text(json.dumps({"node": "READY"}))
  (root / "cloud.py").write_text(_CLOUD)
  (root / "train.py").write_text(_TRAIN)
  for worker in ("w0", "w1"):
    launch_test._worker(root / worker)
  (root / "ankh3_tasks-1-py3-none-any.whl").write_bytes(b"")
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setenv("FAKE_TPU_ROOT", str(root))
  monkeypatch.setenv("FAKE_CLOUD", str(root / "cloud.py"))
  monkeypatch.setenv("FAKE_TRAIN_SCRIPT", str(root / "train.py"))
  monkeypatch.chdir(root)
  monkeypatch.setattr(cli, "_run_id", lambda: "train-TEST")
  fake = _Slice(root)
  yield fake
  for worker in ("w0", "w1"):
    fake.kill(worker)


def _argv(tpu, *more):
  return [
      "watch",
      "--name=ankh3",
      "--accelerator_type=v4-8",
      f"--gin_file={launch_test.LARGE}",
      f'--gin.MODEL_DIR="{tpu.model_dir}"',
      f"--gin.TRAIN_STEPS={STEPS}",
      *launch_test.NASTY[2:-1],  # Quoting: everything but MODEL_DIR, steps.
      f"--wheel={tpu.root / 'ankh3_tasks-1-py3-none-any.whl'}",
      "--no_check",
      f"--poll_interval={POLL_INTERVAL}",
      "--hang_timeout=1",
      "--backoff_base=0.05",
      "--backoff_cap=0.2",
      "--max_restarts=4",
      f"--state_dir={tpu.root / 'state'}",
      *more,
  ]


class _Run:
  """The watcher, in a thread, with its sleeps recorded."""

  def __init__(self, tpu, *more):
    _, self.plan, settings = cli.build_watch(_argv(tpu, *more))
    self._tpu = tpu
    self.sleeps = []
    self.log = tpu.root / "incidents.jsonl"
    self.result = None

    def sleep(seconds):
      self.sleeps.append(seconds)
      time.sleep(seconds)

    watcher = watch.Watcher(
        self.plan, settings, incident_log=str(self.log), sleep=sleep
    )

    def target():
      try:
        self.result = watcher.watch()
      except watch.WatchError as e:
        self.result = e

    self.thread = threading.Thread(target=target, daemon=True)
    self.thread.start()

  def wait_for_checkpoint(self, step, seconds=30.0):
    """Waits until the watcher has seen checkpoint `step` on a healthy slice.

    A fixed pause is not enough on a loaded machine, where one poll can take
    longer than the pause: the test would break the slice before the watcher
    counted the progress, and its recoveries in a row would start one early.
    A healthy poll ends in a sleep of --poll_interval; the second such sleep
    after the checkpoint appeared ends a poll that began after it did.
    """
    self._tpu.wait_for_checkpoint(step, seconds)
    seen = len(self.sleeps)
    deadline = time.monotonic() + seconds
    while sum(s == POLL_INTERVAL for s in self.sleeps[seen:]) < 2:
      assert time.monotonic() < deadline, f"the watcher missed checkpoint {step}"
      time.sleep(0.01)

  def finish(self, seconds=60.0):
    self.thread.join(seconds)
    assert not self.thread.is_alive(), "the watcher did not finish"
    return self.result

  def incidents(self):
    with open(self.log) as f:
      return [json.loads(line) for line in f]


def _check_finished(tpu, run, causes):
  """The run reached STEPS; every start ran the same train command."""
  assert run.finish() == 0
  assert (tpu.model_dir / f"checkpoint_{STEPS}" / "commit_success.txt").exists()
  incidents = run.incidents()
  assert [i["cause"] for i in incidents] == causes, incidents
  # Every `train` the watcher ran: one gcloud argv, byte for byte.
  trains = [
      a for a in tpu.lines("gcloud.jsonl") if a == run.plan.train.argv[1:]
  ]
  ssh_calls = [
      a
      for a in tpu.lines("gcloud.jsonl")
      if any(x.startswith("--command=set -e; cd ankh3; if [ ! -x") for x in a)
  ]
  assert ssh_calls == trains and len(trains) == len(causes)
  starts = tpu.lines("starts.jsonl")
  assert len(starts) == 2 * len(causes)
  assert all(s["argv"] == starts[0]["argv"] for s in starts)
  assert starts[0]["argv"][2:] == [
      f'--gin.MODEL_DIR="{tpu.model_dir}"',
      f"--gin.TRAIN_STEPS={STEPS}",
      *launch_test.NASTY[2:-1],
  ]
  # After each incident the run resumed from the checkpoint it had reached.
  for incident, start in zip(incidents[1:], starts[2::2]):
    assert start["step"] >= incident["step"] > 0
    assert incident["outcome"] == "restarted"
    assert incident["time_lost_s"] >= 0
  return incidents


def test_spot_preemption_recreates_sets_up_and_resumes(tpu):
  run = _Run(tpu)
  run.wait_for_checkpoint(4)
  tpu.set(node="PREEMPTED")
  tpu.kill("w0", "w1")
  incidents = _check_finished(tpu, run, ["not running", "preempted"])
  assert incidents[1]["action"] == "recreate"
  calls = [" ".join(a[:4]) for a in tpu.lines("gcloud.jsonl")]
  assert "compute tpus tpu-vm delete" in calls
  assert "compute tpus tpu-vm create" in calls


def test_suspended_queued_resource_is_recreated_and_waited_for(tpu):
  tpu.set(queued="ACTIVE")
  run = _Run(tpu, "--queued", "--spot")
  run.wait_for_checkpoint(4)
  tpu.set(queued="SUSPENDED", node=None)
  tpu.kill("w0", "w1")
  incidents = _check_finished(
      tpu, run, ["not running", "queued resource suspended"]
  )
  assert incidents[1]["action"] == "recreate"
  creates = [a for a in tpu.lines("gcloud.jsonl") if a[3] == "create"]
  assert creates == [run.plan.create.argv[1:]]
  assert creates[0][2] == "queued-resources" and "--spot" in creates[0]


def test_dead_worker_restarts_every_worker(tpu):
  run = _Run(tpu)
  run.wait_for_checkpoint(4)
  tpu.kill("w1")
  incidents = _check_finished(tpu, run, ["not running", "worker died"])
  assert incidents[1]["action"] == "restart"
  assert not any(a[3] == "create" for a in tpu.lines("gcloud.jsonl"))


def test_hung_run_is_restarted(tpu):
  run = _Run(tpu)
  run.wait_for_checkpoint(4)
  (tpu.root / "hang").write_text("")
  incidents = _check_finished(tpu, run, ["not running", "hung"])
  assert incidents[1]["action"] == "restart"
  assert "unchanged for" in incidents[1]["detail"]


def test_maintenance_reinstalls_and_restarts(tpu):
  run = _Run(tpu)
  run.wait_for_checkpoint(4)
  tpu.set(node="REPAIRING", repair=5)
  tpu.kill("w0", "w1")
  shutil.rmtree(tpu.root / "w0" / "ankh3" / "venv")  # A fresh boot disk.
  incidents = _check_finished(tpu, run, ["not running", "maintenance"])
  assert incidents[1]["action"] == "reinstall"


def test_quota_error_on_create_backs_off_then_recovers(tpu):
  run = _Run(tpu)
  run.wait_for_checkpoint(4)
  tpu.set(node="PREEMPTED", create_errors=2)
  tpu.kill("w0", "w1")
  assert run.finish() == 0
  incidents = run.incidents()
  assert [i["outcome"] for i in incidents] == [
      "restarted",
      "failed",
      "failed",
      "restarted",
  ]
  assert "Quota 'TPUV4_PER_PROJECT_PER_ZONE' exhausted" in incidents[1]["error"]
  assert [i["backoff_s"] for i in incidents[1:]] == [0, 0.05, 0.1]
  calls = tpu.lines("gcloud.jsonl")
  trains = [a for a in calls if a == run.plan.train.argv[1:]]
  assert len(trains) == 2


def test_quota_error_on_create_gives_up_after_the_cap(tpu):
  run = _Run(tpu)
  run.wait_for_checkpoint(4)
  tpu.set(node="PREEMPTED", create_errors=100)
  tpu.kill("w0", "w1")
  error = run.finish()
  assert isinstance(error, watch.WatchError)
  message = str(error)
  assert "gave up after 4 recoveries in a row without progress" in message
  assert "RESOURCE_EXHAUSTED: Quota" in message
  incidents = run.incidents()
  assert [i["outcome"] for i in incidents[1:]] == ["failed"] * 4 + ["gave up"]
  assert [i["backoff_s"] for i in incidents[1:5]] == [0, 0.05, 0.1, 0.2]
  assert [s for s in run.sleeps if s > 0.02] == [0.05, 0.1, 0.2]


def test_finished_run_exits_at_once(tpu, capsys):
  done = tpu.model_dir / f"checkpoint_{STEPS}"
  done.mkdir()
  (done / "commit_success.txt").write_text("")
  assert cli.main(_argv(tpu)) == 0
  assert "training finished" in capsys.readouterr().err
  assert [a[3] for a in tpu.lines("gcloud.jsonl")] == []


def test_last_checkpoint_skips_partial_ones(tmp_path):
  assert watch.last_checkpoint(str(tmp_path)) is None
  partial = "checkpoint_12.orbax-checkpoint-tmp-1"  # Being written.
  for name in ("checkpoint_4", "checkpoint_8", partial):
    (tmp_path / name).mkdir()
  (tmp_path / "checkpoint_4" / "commit_success.txt").write_text("")
  (tmp_path / partial / "commit_success.txt").write_text("")
  # checkpoint_8 has no commit marker: Orbax on GCS was killed mid-write.
  assert watch.last_checkpoint(str(tmp_path)) == 4
  (tmp_path / "checkpoint_8" / "checkpoint").write_text("")  # T5X legacy.
  assert watch.last_checkpoint(str(tmp_path)) == 8


def test_second_watcher_is_refused(tpu, capsys):
  keys = ["TPU (default project)/us-central2-b/ankh3"]
  with watch.lock(str(tpu.root / "state"), keys):
    assert cli.main(_argv(tpu)) == 1
    err = capsys.readouterr().err
    assert "another watcher already watches TPU" in err
    assert f'"pid": {os.getpid()}' in err
  # Released with its holder: a watcher may start now.
  with watch.lock(str(tpu.root / "state"), keys):
    pass


def test_train_steps_must_be_known(tpu, capsys):
  argv = [
      a
      for a in _argv(tpu, "--gin_file=gin/runs/ankh3_pretrain.gin")
      if not a.startswith(
          ("--gin.TRAIN_STEPS", f"--gin_file={launch_test.LARGE}")
      )
  ]
  assert cli.main([*argv, "--dry_run"]) == 2
  assert "pass --train_steps=N" in capsys.readouterr().err
  assert cli.main([*argv, "--dry_run", "--train_steps=9"]) == 0
  assert cli.main([*_argv(tpu), "--dry_run", "--train_steps=9"]) == 2
  assert f"--train_steps=9 but the run's gin sets TRAIN_STEPS = {STEPS}" in (
      capsys.readouterr().err
  )


def test_dry_run_defines_the_commands_and_runs_none(tpu, capsys):
  assert cli.main([*_argv(tpu), "--dry_run"]) == 0
  script = capsys.readouterr().out
  _, plan, _ = cli.build_watch(_argv(tpu))
  env = dict(os.environ, FAKE_GCLOUD_RECORD_ONLY="1")
  subprocess.run(["bash", "-c", script], env=env, check=True)
  assert tpu.lines("gcloud.jsonl") == []
  for name in (watch.RESTART, watch.REINSTALL, watch.RECREATE):
    subprocess.run(["bash", "-c", f"{script}\n{name}"], env=env, check=True)
    called = tpu.lines("gcloud.jsonl")
    assert called == [s.argv[1:] for s in plan.actions(name)]
    os.remove(tpu.root / "gcloud.jsonl")
