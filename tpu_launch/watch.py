"""`python -m tpu_launch watch`: keep a long run alive until its last step.

The watcher polls the TPU (`gcloud ... describe`) and, while it is up, the
training on its workers (one `gcloud ... ssh --worker=all` that prints, per
worker, whether the process group `train` started is alive and how long ago
its log last changed). On a failure it brings back what is gone and starts
the same `train` command again on the same MODEL_DIR, where `t5x.train`
resumes from the last complete checkpoint:

  cause                                    what it runs
  -------------------------------------    ----------------------------------
  a worker's t5x.train died; all of them   restart: stop, train
  ended before the last step; the log of
  a worker has not changed for
  --hang_timeout seconds (hung); workers
  unreachable over ssh
  a maintenance event (the TPU was         reinstall: setup, stop, train
  REPAIRING / RESTARTING / ... and is
  READY again without the training)
  TPU VM PREEMPTED / TERMINATED / gone;    recreate: delete, create, wait
  queued resource SUSPENDED / FAILED       until READY / ACTIVE, setup, train

A recovery whose commands fail (a quota error on create, ssh refused) is
tried again after an exponential backoff, one level up (restart, reinstall,
recreate). After --max_restarts recoveries in a row without the run's last
checkpoint advancing, the watcher gives up with the last error (exit 1).
It ends (exit 0) when `checkpoint_{TRAIN_STEPS}` is complete in MODEL_DIR.

Each incident is a JSON line in the incident log (and printed): when it was
detected, its cause, the checkpoint step the run resumes from, what ran, and
the seconds lost between the last healthy poll and the new start.

One watcher per TPU and per MODEL_DIR: each takes an exclusive `flock` on a
file in the local state directory (it holds the watcher's pid and host), so
the lock goes with the process, however it ends.
"""

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Callable, Iterator, Sequence, TextIO

from tpu_launch import gcloud

# Levels of recovery, from the least to the most that is redone.
RESTART = "restart"
REINSTALL = "reinstall"
RECREATE = "recreate"
_LEVELS = (RESTART, REINSTALL, RECREATE)

# Cloud TPU node states (the TPU API's `Node.State`) and queued resource
# states (`QueuedResourceState.State`) by what the watcher does about them.
_NODE_GONE = {"PREEMPTED": "preempted", "TERMINATED": "terminated"}
_NODE_MAINTENANCE = {"REPAIRING", "RESTARTING", "REIMAGING", "STARTING"}
_NODE_STOPPED = {"STOPPING", "STOPPED"}
_QUEUED_GONE = {
    "SUSPENDING": "queued resource suspended",
    "SUSPENDED": "queued resource suspended",
    "FAILED": "queued resource failed",
}
# Seconds a poll command (describe, the ssh probe) may take.
_POLL_TIMEOUT = 300.0
# Seconds one recovery command (create, one step of setup, train) may take.
_ACTION_TIMEOUT = 3600.0
# Probes in a row that reach fewer workers than the slice has before the
# workers count as unreachable.
_UNREACHABLE_AFTER = 3


class WatchError(Exception):
  """The watcher cannot go on (another watcher, a stopped TPU, given up)."""


@dataclasses.dataclass(frozen=True)
class Plan:
  """Every command the watcher may run, built once before it starts.

  The same objects are run at every recovery, so the restarted `train` is
  the same command, byte for byte, each time.

  Attributes:
    name: the TPU VM.
    queued: the queued resource id, or None for a plain TPU VM.
    hosts: the slice's workers (a probe must hear from as many).
    model_dir: the run's MODEL_DIR.
    train_steps: the run's TRAIN_STEPS: done when that checkpoint exists.
    describe: describes the TPU VM, as JSON.
    describe_queued: describes the queued resource, as JSON (or None).
    probe: the training's state on every worker (`gcloud.probe`).
    build: local steps run once, before the watch (the wheel setup installs).
    delete: deletes the TPU VM or queued resource.
    create: creates it.
    setup: installs everything on every worker.
    stop: stops the training on every worker.
    train: starts it on every worker.
  """

  name: str
  queued: str | None
  hosts: int
  model_dir: str
  train_steps: int
  describe: gcloud.Step
  describe_queued: gcloud.Step | None
  probe: gcloud.Step
  build: Sequence[gcloud.Step]
  delete: gcloud.Step
  create: gcloud.Step
  setup: Sequence[gcloud.Step]
  stop: gcloud.Step
  train: gcloud.Step

  def actions(self, level: str) -> list[gcloud.Step]:
    """The steps of a recovery (`RECREATE` waits for the TPU after create)."""
    if level == RESTART:
      return [self.stop, self.train]
    if level == REINSTALL:
      return [*self.setup, self.stop, self.train]
    return [self.delete, self.create, *self.setup, self.train]

  def script(self, settings: "Settings") -> str:
    """What `--dry_run` prints: a shell script that defines one function
    per action of the watcher and calls none of them."""
    queued = f" (queued resource {self.queued})" if self.queued else ""
    lines = [
        "# python -m tpu_launch watch: nothing was run (--dry_run)",
        f"# Watches TPU {self.name}{queued} and the run in {self.model_dir}"
        f" until checkpoint_{self.train_steps} is complete: polls every"
        f" {settings.poll_interval:g} s, a log unchanged for"
        f" {settings.hang_timeout:g} s is a hung run, backoff"
        f" {settings.backoff_base:g} s doubling up to"
        f" {settings.backoff_cap:g} s, gives up after"
        f" {settings.max_restarts} recoveries in a row without progress.",
        "# This script defines the watcher's commands as shell functions and"
        " runs none.",
    ]

    def function(name: str, comment: str, steps: Sequence[gcloud.Step]):
      lines.append(f"# {comment}")
      lines.append(f"{name}() {{")
      for step in steps:
        lines.append(f"  # {step.comment}")
        lines.append(f"  {step.line}")
      lines.append("}")

    if self.build:
      function("build", "once, when the watcher starts", self.build)
    polls = [self.describe_queued] if self.describe_queued else []
    function(
        "poll",
        "every poll: the TPU's state; when it is up, each worker's training",
        [*polls, self.describe, self.probe],
    )
    function(
        RESTART,
        "a worker's t5x.train died, all ended early, hung, or unreachable",
        self.actions(RESTART),
    )
    function(
        REINSTALL,
        "after a maintenance event ended the training",
        self.actions(REINSTALL),
    )
    function(
        RECREATE,
        "preempted, terminated, suspended, failed or gone (waits for the"
        " TPU to be READY after create)",
        self.actions(RECREATE),
    )
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the watcher polls and retries (seconds unless said otherwise).

  Attributes:
    poll_interval: between two polls.
    hang_timeout: a worker whose log has not changed for this long is hung.
    max_restarts: recoveries in a row without the checkpoint step advancing
      before the watcher gives up.
    backoff_base: the wait before the second recovery in a row; it doubles
      with each more.
    backoff_cap: the longest wait between recoveries.
    provision_timeout: the longest wait for a TPU to become READY (or a
      queued resource ACTIVE) before it counts as failed.
  """

  poll_interval: float = 60.0
  hang_timeout: float = 3600.0
  max_restarts: int = 10
  backoff_base: float = 60.0
  backoff_cap: float = 3600.0
  provision_timeout: float = 6 * 3600.0

  def backoff(self, attempt: int) -> float:
    """The wait before recovery `attempt` (0-based) of a row."""
    if attempt <= 0:
      return 0.0
    return min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))


@dataclasses.dataclass(frozen=True)
class Result:
  """A finished command: its exit status and output."""

  returncode: int
  stdout: str
  stderr: str


def run_command(argv: Sequence[str], timeout: float) -> Result:
  """Runs `argv`; a timeout is exit status 124, a missing program 127."""
  try:
    done = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
  except subprocess.TimeoutExpired as e:
    return Result(124, _text(e.stdout), _text(e.stderr) + "\n(timed out)")
  except OSError as e:
    return Result(127, "", str(e))
  return Result(done.returncode, done.stdout, done.stderr)


def _text(output: str | bytes | None) -> str:
  if isinstance(output, bytes):
    return output.decode(errors="replace")
  return output or ""


_CHECKPOINT = re.compile(r"checkpoint_(\d+)")
# A T5X checkpoint is complete when one of these is in its directory:
# Orbax's commit marker (written last, also on GCS, where renames are not
# atomic), or the legacy T5X format's `checkpoint` file.
_COMPLETE_MARKERS = ("commit_success.txt", "checkpoint")


def last_checkpoint(model_dir: str) -> int | None:
  """The step of the newest complete checkpoint in `model_dir`, or None.

  `checkpoint_N.orbax-checkpoint-tmp-*` (a save in progress, or one a kill
  interrupted) and `checkpoint_N` without a commit marker are not complete.
  Works on gs:// paths (tf.io.gfile).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  steps = []
  for path in tf.io.gfile.glob(model_dir.rstrip("/") + "/checkpoint_*"):
    match = _CHECKPOINT.fullmatch(path.rstrip("/").rsplit("/", 1)[-1])
    if match:
      steps.append((int(match.group(1)), path.rstrip("/")))
  for step, path in sorted(steps, reverse=True):
    if any(tf.io.gfile.exists(f"{path}/{m}") for m in _COMPLETE_MARKERS):
      return step
  return None


def append_incident(path: str, record: dict) -> None:
  """Appends one JSON line to `path` (local, or gs:// through tf.io.gfile)."""
  line = json.dumps(record) + "\n"
  if "://" not in path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
      f.write(line)
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  old = ""
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      old = f.read()
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(old + line)


@contextlib.contextmanager
def lock(directory: str, keys: Sequence[str]) -> Iterator[None]:
  """Holds one exclusive lock per key (e.g. the TPU, the MODEL_DIR).

  Args:
    directory: the local state directory that holds the lock files.
    keys: what only one watcher may watch.

  Raises:
    WatchError: another watcher holds one of them (the message says which
      process, on which host).
  """
  os.makedirs(directory, exist_ok=True)
  held = []
  try:
    for key in keys:
      digest = hashlib.sha256(key.encode()).hexdigest()[:16]
      path = os.path.join(directory, f"watch-{digest}.lock")
      f = open(path, "a+")  # pylint: disable=consider-using-with
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError:
        f.seek(0)
        owner = f.read().strip() or "unknown"
        f.close()
        raise WatchError(
            f"another watcher already watches {key} ({owner}; lock {path});"
            " stop it first"
        ) from None
      held.append(f)
      f.seek(0)
      f.truncate()
      f.write(
          json.dumps({
              "pid": os.getpid(),
              "host": socket.gethostname(),
              "since": _iso(time.time()),
              "watches": key,
          })
          + "\n"
      )
      f.flush()
    yield
  finally:
    for f in held:
      fcntl.flock(f, fcntl.LOCK_UN)
      f.close()


def _iso(seconds: float) -> str:
  moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
  return moment.isoformat(timespec="seconds")


@dataclasses.dataclass
class _Observation:
  """What one poll found: healthy, waiting, or an incident."""

  kind: str  # "healthy", "wait" or "incident"
  cause: str = ""
  level: str = RESTART
  detail: str = ""
  # For a hung run: seconds since the log last changed.
  silent_for: float = 0.0


class Watcher:
  """Polls a run and recovers it (see the module docstring).

  Args:
    plan: the commands.
    settings: how to poll and retry.
    incident_log: the JSON-lines file for incidents.
    run: runs a command (argv, timeout) -> Result; default `run_command`.
    clock: seconds since the epoch.
    sleep: waits that many seconds.
    checkpoint: `last_checkpoint`, or a stand-in.
    out: where progress is printed.
  """

  def __init__(
      self,
      plan: Plan,
      settings: Settings,
      *,
      incident_log: str,
      run: Callable[[Sequence[str], float], Result] = run_command,
      clock: Callable[[], float] = time.time,
      sleep: Callable[[float], None] = time.sleep,
      checkpoint: Callable[[str], int | None] = last_checkpoint,
      out: TextIO | None = None,
  ):
    self._plan = plan
    self._settings = settings
    self._incident_log = incident_log
    self._run = run
    self._clock = clock
    self._sleep = sleep
    self._checkpoint = checkpoint
    self._out = out
    self._maintenance = False
    self._unreachable = 0
    self._waiting_since: float | None = None

  def _say(self, message: str) -> None:
    out = self._out or sys.stderr
    print(f"[watch {_iso(self._clock())}] {message}", file=out, flush=True)

  def watch(self) -> int:
    """Watches until the last checkpoint exists; returns 0.

    Raises:
      WatchError: the TPU was stopped by hand, a local build failed, or
        --max_restarts recoveries in a row failed to make progress.
    """
    plan, settings = self._plan, self._settings
    for step in plan.build:
      result = self._action(step)
      if result.returncode:
        raise WatchError(_failure(step, result))
    in_a_row = 0  # Recoveries since the checkpoint step last advanced.
    failed = 0  # Recoveries in a row whose commands failed.
    last_error = None
    row_step = self._checkpoint(plan.model_dir)
    last_healthy = self._clock()
    self._say(
        f"watching {plan.name}: checkpoint {row_step} of"
        f" {plan.train_steps} in {plan.model_dir}"
    )
    while True:
      step = self._checkpoint(plan.model_dir)
      if step is not None and step >= plan.train_steps:
        self._say(f"training finished: checkpoint_{step} is complete")
        return 0
      seen = self._observe()
      if seen.kind == "incident":
        # Confirm at once: a preemption ends the training a moment before
        # the TPU's state says so, and the cause decides the recovery; the
        # last checkpoint is written before t5x.train exits.
        seen = self._observe()
        step = self._checkpoint(plan.model_dir)
        if step is not None and step >= plan.train_steps:
          continue
      if seen.kind == "healthy":
        if step is not None and (row_step is None or step > row_step):
          in_a_row, row_step = 0, step  # Progress since the last recovery.
        last_healthy = self._clock()
        self._sleep(settings.poll_interval)
        continue
      if seen.kind == "wait":
        self._sleep(settings.poll_interval)
        continue
      detected = self._clock()
      began = detected - seen.silent_for if seen.silent_for else last_healthy
      level = _LEVELS[
          min(_LEVELS.index(seen.level) + failed, len(_LEVELS) - 1)
      ]
      record = {
          "time": _iso(detected),
          "cause": seen.cause,
          "detail": seen.detail,
          "step": step,
          "action": level,
          "attempt": in_a_row + 1,
      }
      if in_a_row >= settings.max_restarts:
        record.update(outcome="gave up", time_lost_s=round(detected - began))
        self._incident(record)
        message = (
            f"gave up after {in_a_row} recoveries in a row without progress"
            f" (checkpoint {step}); now: {seen.cause}"
        )
        if seen.detail:
          message += f" ({seen.detail})"
        if last_error:
          message += f"; the last recovery failed: {last_error}"
        raise WatchError(message)
      delay = settings.backoff(in_a_row)
      if delay:
        self._say(f"{seen.cause}: waiting {delay:g} s before recovery")
        self._sleep(delay)
      self._say(f"{seen.cause}: {level} (recovery {in_a_row + 1})")
      in_a_row += 1
      error = last_error = self._recover(level)
      resumed = self._clock()
      record.update(
          backoff_s=delay,
          outcome="failed" if error else "restarted",
          time_lost_s=round(resumed - began, 3),
      )
      if error:
        record["error"] = error
        failed += 1
      else:
        failed = 0
        self._maintenance = False
        self._unreachable = 0
        last_healthy = resumed
      self._incident(record)

  def _incident(self, record: dict) -> None:
    append_incident(self._incident_log, record)
    self._say("incident: " + json.dumps(record))

  def _poll(self, step: gcloud.Step) -> Result:
    return self._run(step.argv, _POLL_TIMEOUT)

  def _action(self, step: gcloud.Step) -> Result:
    self._say(f"{step.comment}\n+ {step.line}")
    result = self._run(step.argv, _ACTION_TIMEOUT)
    out = self._out or sys.stderr
    for text in (result.stdout, result.stderr):
      if text:
        out.write(text if text.endswith("\n") else text + "\n")
    return result

  def _state(self, step: gcloud.Step, queued: bool) -> str | None:
    """The TPU's (or queued resource's) state; `GONE`; or None if unknown."""
    result = self._poll(step)
    if result.returncode:
      if re.search(r"NOT_FOUND|not found", result.stderr):
        return _GONE
      self._say(f"could not describe: {_tail(result.stderr)}")
      return None
    try:
      data = json.loads(result.stdout)
      state = data["state"]
      if queued:
        state = state["state"]
    except (ValueError, KeyError, TypeError):
      self._say(f"unexpected describe output: {_tail(result.stdout)}")
      return None
    return str(state)

  def _observe(self) -> _Observation:
    plan = self._plan
    if plan.describe_queued is not None:
      state = self._state(plan.describe_queued, queued=True)
      if state is None:
        return _Observation("wait")
      if state == _GONE:
        return _Observation("incident", "queued resource gone", RECREATE)
      if state in _QUEUED_GONE:
        return _Observation("incident", _QUEUED_GONE[state], RECREATE, state)
      if state != "ACTIVE":
        return self._wait(f"queued resource {state}")
    state = self._state(plan.describe, queued=False)
    if state is None:
      return _Observation("wait")
    if state == _GONE:
      return _Observation("incident", "TPU VM gone", RECREATE)
    if state in _NODE_GONE:
      return _Observation("incident", _NODE_GONE[state], RECREATE, state)
    if state in _NODE_STOPPED:
      raise WatchError(
          f"TPU VM {plan.name} is {state}: someone stopped it. Start it"
          " (gcloud compute tpus tpu-vm start) or delete it, then watch again"
      )
    if state != "READY":
      if state in _NODE_MAINTENANCE:
        self._maintenance = True
      return self._wait(f"TPU VM {state}")
    self._waiting_since = None
    return self._workers()

  def _wait(self, what: str) -> _Observation:
    now = self._clock()
    if self._waiting_since is None:
      self._waiting_since = now
      self._say(f"{what}: waiting")
    if now - self._waiting_since > self._settings.provision_timeout:
      self._waiting_since = None
      return _Observation(
          "incident",
          "stuck",
          RECREATE,
          f"{what} for more than {self._settings.provision_timeout:g} s",
      )
    return _Observation("wait")

  def _workers(self) -> _Observation:
    """Reads the probe: which workers run, and how long logs are silent."""
    plan = self._plan
    result = self._poll(plan.probe)
    rows = []
    for line in result.stdout.splitlines():
      words = line.split()
      if len(words) >= 3 and words[0] == gcloud.PROBE_TAG:
        try:
          rows.append((words[1], int(words[2])))
        except ValueError:
          pass
    if len(rows) < plan.hosts:
      self._unreachable += 1
      self._say(
          f"heard from {len(rows)} of {plan.hosts} workers"
          f" ({self._unreachable} in a row): {_tail(result.stderr)}"
      )
      if self._unreachable < _UNREACHABLE_AFTER:
        return _Observation("wait")
      return _Observation(
          "incident",
          "workers unreachable",
          RESTART,
          f"{len(rows)} of {plan.hosts} answered {self._unreachable} probes",
      )
    self._unreachable = 0
    states = [state for state, _ in rows]
    running = states.count("running")
    if running == len(rows):
      silent = max(age for _, age in rows)
      if silent > self._settings.hang_timeout:
        return _Observation(
            "incident",
            "hung",
            RESTART,
            f"a worker's log unchanged for {silent} s",
            silent_for=float(silent),
        )
      return _Observation("healthy")
    if running:
      return _Observation(
          "incident",
          "worker died",
          RESTART,
          f"t5x.train runs on {running} of {len(rows)} workers",
      )
    if self._maintenance:
      return _Observation("incident", "maintenance", REINSTALL)
    if "ended" in states:
      return _Observation(
          "incident", "crashed", RESTART, "t5x.train ended on every worker"
      )
    return _Observation("incident", "not running", RESTART)

  def _recover(self, level: str) -> str | None:
    """Runs a recovery; returns None, or what failed."""
    plan = self._plan
    for step in plan.actions(level):
      result = self._action(step)
      if result.returncode and step is plan.delete:
        if re.search(r"NOT_FOUND|not found", result.stderr):
          continue
      if result.returncode:
        return _failure(step, result)
      if step is plan.create:
        error = self._until_up()
        if error:
          return error
    return None

  def _until_up(self) -> str | None:
    """Waits for the created TPU to be READY (and its queue ACTIVE)."""
    plan = self._plan
    deadline = self._clock() + self._settings.provision_timeout
    while True:
      state = "ACTIVE"
      if plan.describe_queued is not None:
        state = self._state(plan.describe_queued, queued=True)
        if state in _QUEUED_GONE:
          return f"queued resource {plan.queued} is {state}"
      if state == "ACTIVE":
        state = self._state(plan.describe, queued=False)
        if state == "READY":
          return None
        if state in _NODE_GONE:
          return f"TPU VM {plan.name} is {state}"
      if self._clock() > deadline:
        return (
            f"{plan.name} not up after {self._settings.provision_timeout:g}"
            f" s (last state {state})"
        )
      self._sleep(self._settings.poll_interval)


_GONE = "(gone)"


def _tail(text: str, lines: int = 5) -> str:
  return " | ".join(text.strip().splitlines()[-lines:])


def _failure(step: gcloud.Step, result: Result) -> str:
  return (
      f"exit status {result.returncode}: {step.line}:"
      f" {_tail(result.stderr or result.stdout)}"
  )
