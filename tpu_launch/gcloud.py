"""`gcloud` command lines and the shell commands they run on TPU VM workers.

Every command is built as an argv list. A command for the workers is one
string, `--command=` of `gcloud compute tpus tpu-vm ssh`: gcloud hands it to
ssh, and each worker's login shell (bash) parses it. Everything in it that
comes from the user is quoted with `shlex.quote` / `shlex.join`; the rest is
fixed shell text written here. Printed for `--dry_run`, the local line is
`shlex.join` of the gcloud argv, so pasting it into a POSIX shell runs the
same argv.

On each worker the launcher keeps one directory (`--remote_dir`, default
`ankh3`, relative to the ssh user's home):

  ankh3/venv/                  the Python environment `setup` builds
  ankh3/dist/                  the ankh3_tasks wheel `setup` copies
  ankh3/runs/train-DATE-TIME/  one per `train`: t5x.train's working
                               directory, its log `t5x.log`, and the gin
                               files only the launching machine had
  ankh3/latest                 -> the newest run's directory
  ankh3/train.pid              the process group of the running t5x.train
"""

import dataclasses
import shlex
from typing import Sequence

# JAX's TPU wheels (libtpu): pip's --find-links for `jax[tpu]`.
LIBTPU_FIND_LINKS = (
    "https://storage.googleapis.com/jax-releases/libtpu_releases.html"
)
_PYTHON = "venv/bin/python"
# The first word of each line `probe` prints.
PROBE_TAG = "tpu_launch-probe"


@dataclasses.dataclass(frozen=True)
class Step:
  """One command of a launch: what it is for and its argv."""

  comment: str
  argv: list[str]

  @property
  def line(self) -> str:
    return shlex.join(self.argv)


def gcloud(
    group: Sequence[str],
    *args: str,
    zone: str,
    project: str | None,
    extra: Sequence[str] = (),
) -> list[str]:
  """`gcloud compute tpus GROUP... ARGS... --zone=Z [--project=P] EXTRA...`."""
  argv = ["gcloud", "compute", "tpus", *group, *args, f"--zone={zone}"]
  if project:
    argv.append(f"--project={project}")
  return argv + list(extra)


def _target(verb: str, name: str, queued: str | None) -> list[str]:
  """The gcloud group and operand: queued resource `queued`, or TPU VM."""
  if queued:
    return ["queued-resources", verb, queued]
  return ["tpu-vm", verb, name]


def create(
    name: str,
    *,
    zone: str,
    project: str | None,
    accelerator_type: str,
    version: str,
    queued_resource_id: str | None = None,
    provisioning: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
  """Creates a TPU VM, or a queued resource holding one named `name`.

  Args:
    name: the TPU VM (node) name.
    zone: its zone.
    project: the Cloud project, or None for gcloud's default.
    accelerator_type: e.g. `v4-128`.
    version: the TPU VM runtime, e.g. `tpu-ubuntu2204-base`.
    queued_resource_id: create a queued resource of this id instead.
    provisioning: None, `spot`, `reserved` or `preemptible` (not queued).
    extra: more gcloud flags.

  Returns:
    The gcloud argv.
  """
  flags = [f"--accelerator-type={accelerator_type}"]
  if queued_resource_id:
    flags += [f"--runtime-version={version}", f"--node-id={name}"]
  else:
    flags += [f"--version={version}"]
  if provisioning:
    flags.append(f"--{provisioning}")
  return gcloud(
      _target("create", name, queued_resource_id),
      zone=zone,
      project=project,
      extra=[*flags, *extra],
  )


def delete(
    name: str,
    *,
    zone: str,
    project: str | None,
    queued_resource_id: str | None = None,
    quiet: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
  """Deletes the TPU VM, or the queued resource and its TPU VM."""
  flags = ["--force"] if queued_resource_id else []
  if quiet:
    flags.append("--quiet")
  return gcloud(
      _target("delete", name, queued_resource_id),
      zone=zone,
      project=project,
      extra=[*flags, *extra],
  )


def describe(
    name: str,
    *,
    zone: str,
    project: str | None,
    queued_resource_id: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
  """Shows the TPU VM, or the queued resource, and its state."""
  return gcloud(
      _target("describe", name, queued_resource_id),
      zone=zone,
      project=project,
      extra=extra,
  )


def ssh(
    name: str,
    *,
    zone: str,
    project: str | None,
    worker: str,
    command: str | None,
    extra: Sequence[str] = (),
) -> list[str]:
  """Runs `command` (one shell string) on the workers, or logs in."""
  flags = [f"--worker={worker}"]
  if command is not None:
    flags.append(f"--command={command}")
  return gcloud(
      ["tpu-vm", "ssh", name],
      zone=zone,
      project=project,
      extra=[*flags, *extra],
  )


def scp(
    sources: Sequence[str],
    name: str,
    destination: str,
    *,
    zone: str,
    project: str | None,
    extra: Sequence[str] = (),
) -> list[str]:
  """Copies local files to `destination` on every worker."""
  return gcloud(
      ["tpu-vm", "scp", *sources, f"{name}:{destination}"],
      zone=zone,
      project=project,
      extra=["--worker=all", *extra],
  )


def _script(*statements: str) -> str:
  return "; ".join(statements)


def setup_prepare(remote_dir: str, python: str) -> str:
  """Installs `python` (e.g. python3.11) with apt if absent; makes dist/."""
  packages = shlex.join(["install", "-y", "-q", python, f"{python}-venv"])
  check = shlex.join([python, "-c", "import ensurepip, venv"])
  apt = "sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
  return _script(
      "set -e",
      f"if ! {check} >/dev/null 2>&1; then {apt} update -q;"
      f" {apt} {packages}; fi",
      shlex.join(["mkdir", "-p", f"{remote_dir}/dist"]),
  )


def setup_install(
    remote_dir: str,
    python: str,
    wheel: str,
    jax_requirement: str,
    git_requirements: Sequence[str],
) -> str:
  """Builds the worker's venv: the wheel with its t5x extra at the tested
  versions (`dist/constraints.txt`, copied beside the wheel), JAX for TPU,
  then T5X, airio and jestimator from git without their dependencies.

  Args:
    remote_dir: the launcher's directory on the worker.
    python: the interpreter that makes the venv, e.g. python3.11.
    wheel: the wheel's file name in `remote_dir/dist`.
    jax_requirement: e.g. `jax[tpu]==0.10.2`.
    git_requirements: `name @ git+URL@COMMIT` lines.

  Returns:
    The shell command.
  """
  pip = [_PYTHON, "-m", "pip", "install", "-q"]
  return _script(
      "set -e",
      shlex.join(["cd", remote_dir]),
      shlex.join([python, "-m", "venv", "venv"]),
      shlex.join([*pip, "--upgrade", "pip"]),
      shlex.join([
          *pip,
          "-c",
          "dist/constraints.txt",
          f"dist/{wheel}[t5x]",
          jax_requirement,
          "-f",
          LIBTPU_FIND_LINKS,
      ]),
      # The same version number may hold new code: always replace it.
      shlex.join([*pip, "--no-deps", "--force-reinstall", f"dist/{wheel}"]),
      shlex.join([*pip, "--no-deps", *git_requirements]),
  )


def setup_check(remote_dir: str) -> str:
  """Prints each worker's JAX process index and the slice's TPU devices."""
  code = (
      'import jax; print(f"process {jax.process_index()} of'
      " {jax.process_count()}: {jax.device_count()} devices,"
      ' {jax.local_device_count()} local")'
  )
  return _script(
      shlex.join(["cd", remote_dir]), shlex.join([_PYTHON, "-c", code])
  )


def train(
    remote_dir: str,
    *,
    run_id: str,
    t5x_args: Sequence[str],
    env: Sequence[tuple[str, str]] = (),
    files: Sequence[tuple[str, str]] = (),
) -> str:
  """Starts `t5x.train` in the background, in its own process group.

  The command refuses to start a second run while one is running, makes the
  run's directory `runs/RUN_ID` (and points `latest` at it), writes `files`
  there, computes `--gin_search_paths` on the worker (`python -m
  ankh3_tasks.gin_search_path`), and there starts

    env NAME=VALUE... venv/bin/python -m t5x.train \
      --gin_search_paths=... T5X_ARGS... >> t5x.log 2>&1 < /dev/null &

  under `setsid nohup`, so that it outlives the ssh session and `stop` can
  signal the whole group. The log is appended to: `watch` runs the same
  command again after a failure, in the same directory. `T5X_ARGS` are
  passed through `bash -c '... exec "$@"'` as arguments, never parsed again.

  Args:
    remote_dir: the launcher's directory on the worker.
    run_id: the run's directory name under `runs/`.
    t5x_args: the `t5x.train` arguments after `--gin_search_paths`.
    env: environment variables for the run.
    files: (relative path, text) of files to write into the run's directory
      first: gin files the workers do not have.

  Returns:
    The shell command.
  """
  up = "../../"
  command = ["env", *(f"{k}={v}" for k, v in env)] if env else []
  command += [f"{up}{_PYTHON}", "-m", "t5x.train"]
  launch = shlex.join([
      "setsid",
      "nohup",
      "bash",
      "-c",
      f'echo "$$" > {up}train.pid; exec "$@"',
      "t5x.train",
      *command,
  ])
  search_path = '--gin_search_paths="$GIN_SEARCH_PATH"'
  run = f"runs/{run_id}"
  writes = []
  for path, text in files:
    parent = path.rpartition("/")[0]
    if parent:
      writes.append(shlex.join(["mkdir", "-p", "--", parent]))
    writes.append(f"printf %s {shlex.quote(text)} > {shlex.quote(path)}")
  where = shlex.quote(f"{remote_dir}/{run}/t5x.log")
  return _script(
      "set -e",
      shlex.join(["cd", remote_dir]),
      f"if [ ! -x {_PYTHON} ]; then printf"
      ' "%s: error: no venv; run python -m tpu_launch setup first\\n"'
      ' "$(hostname)" >&2; exit 1; fi',
      'if [ -f train.pid ] && kill -0 -- "-$(cat train.pid)" 2>/dev/null;'
      ' then printf "%s: error: t5x.train is already running (process group'
      ' %s); python -m tpu_launch stop first\\n" "$(hostname)"'
      ' "$(cat train.pid)" >&2; exit 1; fi',
      shlex.join(["mkdir", "-p", run]),
      shlex.join(["ln", "-sfn", run, "latest"]),
      f'GIN_SEARCH_PATH="$({_PYTHON} -m ankh3_tasks.gin_search_path)"',
      shlex.join(["cd", run]),
      *writes,
      f"{{ {launch} {search_path} {shlex.join(t5x_args)}"
      " >> t5x.log 2>&1 < /dev/null & }",
      f'printf "%s: started t5x.train, log %s\\n" "$(hostname)" {where}',
  )


def stop(remote_dir: str, timeout: int) -> str:
  """Stops the `t5x.train` that `train` started: SIGTERM to its process
  group, SIGKILL after `timeout` seconds."""
  return _script(
      f"cd {shlex.quote(remote_dir)} 2>/dev/null && [ -f train.pid ] ||"
      ' { printf "%s: no t5x.train started by tpu_launch\\n" "$(hostname)";'
      " exit 0; }",
      'pgid="$(cat train.pid)"',
      'if kill -TERM -- "-$pgid" 2>/dev/null; then i=0;'
      f' while kill -0 -- "-$pgid" 2>/dev/null && [ "$i" -lt {5 * timeout} ];'
      " do sleep 0.2; i=$((i + 1)); done;"
      ' if kill -KILL -- "-$pgid" 2>/dev/null; then printf "%s: killed'
      ' process group %s after %s s\\n" "$(hostname)" "$pgid"'
      f' {timeout}; else printf "%s: stopped process group %s\\n"'
      ' "$(hostname)" "$pgid"; fi;'
      ' else printf "%s: process group %s had already ended\\n"'
      ' "$(hostname)" "$pgid"; fi',
      "rm -f train.pid",
  )


def probe(remote_dir: str) -> str:
  """Prints one line about the training on each worker, for `watch`.

  The line is `tpu_launch-probe STATE AGE HOST`: STATE is `running` (the
  process group `train` recorded has a live process), `ended` (it has none)
  or `none`
  (no run was started, or `stop` ended it); AGE is the seconds since the
  latest run's log last changed, by the worker's clock (-1: no log).
  """
  return _script(
      f"cd {shlex.quote(remote_dir)} 2>/dev/null ||"
      f' {{ printf "{PROBE_TAG} none -1 %s\\n" "$(hostname)"; exit 0; }}',
      # A process of the group that is not a zombie (killed, not yet reaped).
      "if [ -f train.pid ] && ps -e -o pgid= -o stat= | awk -v g=\"$(cat"
      ' train.pid)" \'$1 == g && $2 !~ /^Z/ { n++ } END { exit !n }\';'
      " then state=running; elif [ -f train.pid ]; then state=ended;"
      " else state=none; fi",
      "age=-1",
      "if [ -f latest/t5x.log ]; then"
      ' age=$(( $(date +%s) - $(stat -c %Y latest/t5x.log) )); fi',
      f'printf "{PROBE_TAG} %s %s %s\\n" "$state" "$age" "$(hostname)"',
  )


def logs(remote_dir: str, *, lines: int, follow: bool) -> str:
  """Shows (and follows, across runs) the latest run's log."""
  argv = ["tail", "-n", str(lines)]
  if follow:
    argv.append("-F")
  return shlex.join([*argv, f"{remote_dir}/latest/t5x.log"])
