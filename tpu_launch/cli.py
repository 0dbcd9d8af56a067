r"""`python -m tpu_launch`: run Ankh3 pretraining on a Cloud TPU VM slice.

usage: python -m tpu_launch COMMAND --name NAME [--zone ZONE] [--project P]
           [--dry_run] [--gcloud_flag=FLAG ...] [COMMAND FLAGS]

  create   create the TPU VM (or, with --queued, a queued resource)
  setup    install Python, the pinned stack, JAX for TPU, T5X and this
           package on every worker
  train    start t5x.train on every worker at once, in the background:
             train --name N --gin_file=F [--env K=V] --gin.MODEL_DIR=\"gs://..\"
                   [--gin.NAME=VALUE ...] [-- OTHER_T5X_FLAGS ...]
  logs     tail the run's log on worker 0 (--worker N or all)
  stop     stop t5x.train on every worker
  status   describe the TPU VM (or queued resource)
  ssh      log in to a worker, or run `-- CMD ARGS...` on --worker
  delete   delete the TPU VM (or queued resource)
  watch    keep a run alive until its last step: takes train's arguments;
           after a preemption, a maintenance event, a dead or hung worker
           it re-creates / sets up what is gone and runs the same train
           again (--poll_interval, --hang_timeout, --max_restarts,
           --backoff_base, --backoff_cap, --incident_log)

`--dry_run` prints the commands, as a shell script, and runs nothing. Gin
overrides (`--gin.NAME=VALUE`, anywhere before `--`) and the flags after `--`
reach t5x.train on the workers exactly as given. See tpu_launch/README.md.
"""

import argparse
import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, Sequence

from tpu_launch import accelerators
from tpu_launch import gcloud
from tpu_launch import t5x_args
from tpu_launch import watch

DEFAULT_ZONE = "us-central2-b"
DEFAULT_ACCELERATOR = "v4-128"
DEFAULT_REMOTE_DIR = "ankh3"
# setup.cfg: python_requires = >=3.11,<3.13.
DEFAULT_PYTHON = "python3.11"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STATE_DIR = os.path.join(
    os.environ.get("XDG_STATE_HOME")
    or os.path.join(os.path.expanduser("~"), ".local", "state"),
    "tpu_launch",
)


Step = gcloud.Step


def _common(args: argparse.Namespace) -> dict:
  return dict(zone=args.zone, project=args.project, extra=args.gcloud_flag)


def _accelerator(args: argparse.Namespace) -> accelerators.Accelerator:
  accelerator = accelerators.parse(
      args.accelerator_type, allow_unknown=args.allow_any_zone
  )
  if not args.allow_any_zone:
    accelerators.check_zone(accelerator, args.zone)
  return accelerator


def _queued_id(args: argparse.Namespace) -> str | None:
  if not args.queued:
    return None
  return args.queued_resource_id or f"{args.name}-qr"


def _create(args, overrides, extra) -> list[Step]:
  del overrides, extra
  accelerator = _accelerator(args)
  version = args.version or accelerators.RUNTIME_VERSIONS.get(
      accelerator.family
  )
  if not version:
    raise ValueError(
        f"no default runtime for {accelerator.name}: pass --version"
    )
  if args.provisioning == "preemptible" and args.queued:
    raise ValueError("--preemptible is not for queued resources: use --spot")
  queued = _queued_id(args)
  what = f"{accelerator.name}: {accelerator.chips} chips"
  if accelerator.known:
    what += f", {accelerator.hosts} host(s)"
  comment = (
      f"queue a request for TPU VM {args.name} ({what}) as queued resource"
      f" {queued}; `status --queued` shows when it is ACTIVE"
      if queued
      else f"create TPU VM {args.name} ({what})"
  )
  argv = gcloud.create(
      args.name,
      accelerator_type=accelerator.name,
      version=version,
      queued_resource_id=queued,
      provisioning=args.provisioning,
      **_common(args),
  )
  return [Step(comment, argv)]


CONSTRAINTS = os.path.join("requirements", "constraints.txt")


def read_checkout(repo: str) -> tuple[str, str, list[str]]:
  """Reads what `setup` installs from a checkout of this repository.

  Args:
    repo: the checkout.

  Returns:
    (package version, `jax[tpu]==V` with the tested jax of
    requirements/constraints.txt, the lines of requirements/t5x-git.txt).

  Raises:
    ValueError: `repo` is not a checkout.
  """
  init = os.path.join(repo, "ankh3_tasks", "__init__.py")
  constraints = os.path.join(repo, CONSTRAINTS)
  git = os.path.join(repo, "requirements", "t5x-git.txt")
  missing = [p for p in (init, constraints, git) if not os.path.isfile(p)]
  if missing:
    raise ValueError(
        f"setup needs a checkout of this repository; {repo} lacks "
        + ", ".join(missing)
        + " (pass --repo DIR)"
    )
  with open(init) as f:
    version = re.search(r'^__version__ = "([^"]+)"', f.read(), re.MULTILINE)
  with open(constraints) as f:
    jax = [l.strip() for l in f if l.startswith("jax==")]
  with open(git) as f:
    lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
  if not version or not jax or not lines:
    raise ValueError(
        f"could not read the version from {init}, the jax pin from "
        f"{constraints} or the git requirements from {git}"
    )
  return version.group(1), "jax[tpu]" + jax[0][len("jax") :], lines


def _setup(args, overrides, extra) -> list[Step]:
  del overrides, extra
  repo = os.path.abspath(args.repo)
  version, jax, git_requirements = read_checkout(repo)
  steps = []
  if args.wheel:
    wheel = os.path.abspath(args.wheel)
    if not wheel.endswith(".whl") or not os.path.isfile(wheel):
      raise ValueError(f"--wheel {args.wheel}: no such .whl file")
  else:
    dist = os.path.join(repo, "dist")
    wheel = os.path.join(dist, f"ankh3_tasks-{version}-py3-none-any.whl")
    steps.append(
        Step(
            "build this checkout's wheel here (the workers get exactly this"
            " code)",
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                repo,
                "-w",
                dist,
            ],
        )
    )
  steps.append(
      Step(
          f"on every worker: install {args.python} if absent, make"
          f" {args.remote_dir}/dist",
          gcloud.ssh(
              args.name,
              worker="all",
              command=gcloud.setup_prepare(args.remote_dir, args.python),
              **_common(args),
          ),
      )
  )
  name = os.path.basename(wheel)
  steps.append(
      Step(
          "copy the wheel and the tested versions to every worker",
          gcloud.scp(
              [wheel, os.path.join(repo, CONSTRAINTS)],
              args.name,
              f"{args.remote_dir}/dist/",
              **_common(args),
          ),
      )
  )
  steps.append(
      Step(
          f"on every worker: venv, {name}[t5x] at the tested versions, {jax},"
          " then T5X, airio and jestimator at the pinned commits (--no-deps)",
          gcloud.ssh(
              args.name,
              worker="all",
              command=gcloud.setup_install(
                  args.remote_dir, args.python, name, jax, git_requirements
              ),
              **_common(args),
          ),
      )
  )
  if not args.no_check:
    steps.append(
        Step(
            "on every worker at once: JAX sees the whole slice",
            gcloud.ssh(
                args.name,
                worker="all",
                command=gcloud.setup_check(args.remote_dir),
                **_common(args),
            ),
        )
    )
  return steps


# Gin files only this machine has travel inside the ssh command, which one
# argument (128 KiB on Linux) must hold.
_MAX_SHIPPED_BYTES = 64 * 1024


def _train(args, overrides, extra) -> list[Step]:
  if not args.gin_file:
    raise ValueError(
        "train needs at least one --gin_file, e.g."
        " --gin_file=gin/experiments/ankh3_large_pretrain.gin"
    )
  accelerator = _accelerator(args)
  directory = t5x_args.model_dir(overrides)
  what = accelerator.name
  if accelerator.known:
    what += f", {accelerator.hosts} hosts"
  reason = None
  if accelerator.multi_host:
    reason = (
        f"on a multi-host slice ({what}) every host writes its part of each"
        " checkpoint there"
    )
  t5x_args.check_model_dir(directory, reason=reason)
  if not (directory.startswith("gs://") or os.path.isabs(directory)):
    raise ValueError(
        f"MODEL_DIR {directory!r} is relative; each train starts t5x.train in"
        " a new directory, so give a gs:// or absolute path"
    )
  env = t5x_args.parse_env(args.env)
  found = t5x_args.resolve_gin_files(
      args.gin_file, cwd=os.getcwd(), roots=t5x_args.search_roots()
  )
  files = []
  for gin_file in found:
    if gin_file.ship:
      with open(gin_file.local) as f:
        files.append((os.path.normpath(gin_file.path), f.read()))
  size = sum(len(text.encode()) for _, text in files)
  if size > _MAX_SHIPPED_BYTES:
    raise ValueError(
        f"the gin files only this machine has hold {size} bytes, more than"
        f" {_MAX_SHIPPED_BYTES} fit in the ssh command: put them under gin/"
        " and re-run setup"
    )
  run_id = _run_id()
  comment = (
      "on every worker at once: start t5x.train in the background in"
      f" {args.remote_dir}/runs/{run_id} (log t5x.log there; `logs` follows"
      " it)"
  )
  if files:
    comment += "; first write " + ", ".join(p for p, _ in files) + " there"
  return [
      Step(
          comment,
          gcloud.ssh(
              args.name,
              worker="all",
              command=gcloud.train(
                  args.remote_dir,
                  run_id=run_id,
                  t5x_args=t5x_args.t5x_argv(args.gin_file, overrides, extra),
                  env=env,
                  files=files,
              ),
              **_common(args),
          ),
      )
  ]


def _run_id() -> str:
  return time.strftime("train-%Y%m%d-%H%M%S", time.gmtime())


def _logs(args, overrides, extra) -> list[Step]:
  del overrides, extra
  return [
      Step(
          f"worker {args.worker}: the latest run's log",
          gcloud.ssh(
              args.name,
              worker=args.worker,
              command=gcloud.logs(
                  args.remote_dir, lines=args.lines, follow=not args.no_follow
              ),
              **_common(args),
          ),
      )
  ]


def _stop(args, overrides, extra) -> list[Step]:
  del overrides, extra
  return [
      Step(
          "on every worker: stop the t5x.train that `train` started",
          gcloud.ssh(
              args.name,
              worker="all",
              command=gcloud.stop(args.remote_dir, args.timeout),
              **_common(args),
          ),
      )
  ]


def _status(args, overrides, extra) -> list[Step]:
  del overrides, extra
  argv = gcloud.describe(
      args.name, queued_resource_id=_queued_id(args), **_common(args)
  )
  return [Step("state of the TPU", argv)]


def _ssh(args, overrides, extra) -> list[Step]:
  del overrides
  command = shlex.join(extra) if extra else None
  argv = gcloud.ssh(
      args.name, worker=args.worker, command=command, **_common(args)
  )
  return [Step(f"worker {args.worker}", argv)]


def _delete(args, overrides, extra) -> list[Step]:
  del overrides, extra
  queued = _queued_id(args)
  what = f"queued resource {queued} and TPU VM" if queued else "TPU VM"
  argv = gcloud.delete(
      args.name, queued_resource_id=queued, quiet=args.yes, **_common(args)
  )
  return [Step(f"delete {what} {args.name}", argv)]


def _train_steps(args, overrides) -> int:
  """TRAIN_STEPS of the run: from the overrides or gin files, or the flag."""
  raw = t5x_args.gin_macro(
      "TRAIN_STEPS",
      args.gin_file,
      overrides,
      cwd=os.getcwd(),
      roots=t5x_args.search_roots(),
  )
  try:
    value = ast.literal_eval(raw) if raw is not None else None
  except (ValueError, SyntaxError):
    value = None
  if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
    value = None
  if args.train_steps is None:
    if value is None:
      raise ValueError(
          f"cannot tell TRAIN_STEPS from the gin files and overrides (found"
          f" {raw!r}); pass --train_steps=N, the run's last step"
      )
    return value
  if value is not None and value != args.train_steps:
    raise ValueError(
        f"--train_steps={args.train_steps} but the run's gin sets"
        f" TRAIN_STEPS = {value}; drop --train_steps or make them agree"
    )
  if args.train_steps <= 0:
    raise ValueError(f"--train_steps={args.train_steps} must be positive")
  return args.train_steps


def _watch_settings(args: argparse.Namespace) -> watch.Settings:
  settings = watch.Settings(
      poll_interval=args.poll_interval,
      hang_timeout=args.hang_timeout,
      max_restarts=args.max_restarts,
      backoff_base=args.backoff_base,
      backoff_cap=args.backoff_cap,
      provision_timeout=args.provision_timeout,
  )
  if min(args.poll_interval, args.backoff_base, args.backoff_cap) <= 0:
    raise ValueError(
        "--poll_interval, --backoff_base and --backoff_cap must be positive"
    )
  if args.hang_timeout <= args.poll_interval:
    raise ValueError(
        f"--hang_timeout={args.hang_timeout:g} must be longer than"
        f" --poll_interval={args.poll_interval:g}"
    )
  if args.max_restarts < 1:
    raise ValueError(f"--max_restarts={args.max_restarts} must be at least 1")
  return settings


def _watch_plan(args, overrides, extra) -> watch.Plan:
  """Builds every command of `watch` once: `train`, `create`, `setup`..."""
  [train] = _train(args, overrides, extra)
  train_steps = _train_steps(args, overrides)
  [create] = _create(args, [], [])
  setup = _setup(args, [], [])
  queued = _queued_id(args)
  describe = gcloud.describe(
      args.name, queued_resource_id=None, **_common(args)
  )
  describe_queued = None
  if queued:
    describe_queued = Step(
        f"state of queued resource {queued}",
        gcloud.describe(
            args.name, queued_resource_id=queued, **_common(args)
        )
        + ["--format=json"],
    )
  accelerator = _accelerator(args)
  return watch.Plan(
      name=args.name,
      queued=queued,
      hosts=accelerator.hosts,
      model_dir=t5x_args.model_dir(overrides),
      train_steps=train_steps,
      describe=Step(
          f"state of TPU VM {args.name}", describe + ["--format=json"]
      ),
      describe_queued=describe_queued,
      probe=Step(
          "on every worker: is t5x.train running, how old is its log",
          gcloud.ssh(
              args.name,
              worker="all",
              command=gcloud.probe(args.remote_dir),
              **_common(args),
          ),
      ),
      build=[s for s in setup if s.argv[0] != "gcloud"],
      delete=Step(
          "delete what is left of the TPU",
          gcloud.delete(
              args.name, queued_resource_id=queued, quiet=True, **_common(args)
          ),
      ),
      create=create,
      setup=[s for s in setup if s.argv[0] == "gcloud"],
      stop=_stop(argparse.Namespace(**vars(args), timeout=30), [], [])[0],
      train=train,
  )


def _watch(args, overrides, extra) -> list[Step]:
  plan = _watch_plan(args, overrides, extra)
  steps = [*plan.build]
  if plan.describe_queued:
    steps.append(plan.describe_queued)
  steps += [plan.describe, plan.probe, plan.delete, plan.create, *plan.setup]
  return steps + [plan.stop, plan.train]


_COMMANDS: dict[str, tuple[Callable[..., list[Step]], str]] = {
    "create": (_create, "create the TPU VM or a queued resource"),
    "setup": (_setup, "install everything on every worker"),
    "train": (_train, "start t5x.train on every worker"),
    "logs": (_logs, "tail the run's log"),
    "stop": (_stop, "stop t5x.train on every worker"),
    "status": (_status, "describe the TPU VM or queued resource"),
    "ssh": (_ssh, "log in, or run `-- CMD ARGS...`"),
    "delete": (_delete, "delete the TPU VM or queued resource"),
    "watch": (
        _watch,
        "keep a run alive: recreate, set up and restart it after a failure",
    ),
}


def _parser() -> argparse.ArgumentParser:
  common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  common.add_argument("--name", required=True, help="TPU VM name")
  common.add_argument(
      "--zone", default=DEFAULT_ZONE, help=f"default: {DEFAULT_ZONE} (v4)"
  )
  common.add_argument("--project", help="Cloud project (default: gcloud's)")
  common.add_argument(
      "--dry_run",
      action="store_true",
      help="print the commands (a shell script) and run nothing",
  )
  common.add_argument(
      "--gcloud_flag",
      action="append",
      default=[],
      metavar="FLAG",
      help=(
          "extra flag for every gcloud command, e.g."
          " --gcloud_flag=--internal-ip (repeatable)"
      ),
  )
  accelerator = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  accelerator.add_argument(
      "--accelerator_type",
      default=DEFAULT_ACCELERATOR,
      help=f"default: {DEFAULT_ACCELERATOR}, the paper's 64 chips",
  )
  accelerator.add_argument(
      "--allow_any_zone",
      action="store_true",
      help="skip the zone / accelerator check",
  )
  remote = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  remote.add_argument(
      "--remote_dir",
      default=DEFAULT_REMOTE_DIR,
      help="the launcher's directory on each worker, relative to home",
  )
  queued = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  queued.add_argument("--queued", action="store_true", help="a queued resource")
  queued.add_argument("--queued_resource_id", help="its id (default: NAME-qr)")

  creating = _create_options()
  installing = _setup_options()
  training = t5x_args.train_options(
      gin_file_help="gin file for t5x.train (repeatable, in order)",
      env_help=(
          "environment variable for the run, e.g."
          " --env=ANKH3_DATA_DIR=gs://BUCKET/uniref50 (repeatable)"
      ),
  )
  parser = argparse.ArgumentParser(
      prog="python -m tpu_launch",
      description=__doc__.split("\n\n")[0],
      allow_abbrev=False,
  )
  sub = parser.add_subparsers(dest="command", required=True)
  parents = {
      "create": [common, accelerator, queued, creating],
      "setup": [common, remote, installing],
      "train": [common, accelerator, remote, training],
      "logs": [common, remote],
      "stop": [common, remote],
      "status": [common, queued],
      "ssh": [common],
      "delete": [common, queued],
      "watch": [
          common,
          accelerator,
          remote,
          queued,
          creating,
          installing,
          training,
      ],
  }
  subs = {
      name: sub.add_parser(
          name, parents=parents[name], help=text, allow_abbrev=False
      )
      for name, (_, text) in _COMMANDS.items()
  }
  for name, default in (("logs", "0"), ("ssh", "0")):
    subs[name].add_argument(
        "--worker", default=default, help="worker index, or all"
    )
  subs["logs"].add_argument("--lines", type=int, default=100)
  subs["logs"].add_argument(
      "--no_follow", action="store_true", help="print and exit"
  )
  subs["stop"].add_argument(
      "--timeout",
      type=int,
      default=30,
      help="seconds to wait after SIGTERM before SIGKILL",
  )
  subs["delete"].add_argument(
      "--yes", action="store_true", help="do not ask (gcloud --quiet)"
  )
  _watch_options(subs["watch"])
  return parser


def _create_options() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  parser.add_argument(
      "--version",
      help=(
          "TPU VM runtime (default by generation, e.g. tpu-ubuntu2204-base"
          " for v4)"
      ),
  )
  how = parser.add_mutually_exclusive_group()
  for choice in ("spot", "reserved", "preemptible"):
    how.add_argument(
        f"--{choice}",
        dest="provisioning",
        action="store_const",
        const=choice,
    )
  return parser


def _setup_options() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
  parser.add_argument(
      "--python",
      default=DEFAULT_PYTHON,
      help="interpreter for the venv; installed with apt if absent",
  )
  parser.add_argument(
      "--wheel", help="install this wheel instead of building one"
  )
  parser.add_argument(
      "--repo",
      default=CHECKOUT,
      help="the checkout to build and read pins from (default: this one)",
  )
  parser.add_argument(
      "--no_check",
      action="store_true",
      help="skip the final JAX device check",
  )
  return parser


def _watch_options(parser: argparse.ArgumentParser) -> None:
  defaults = watch.Settings()
  for flag, kind, default, text in (
      (
          "--poll_interval",
          float,
          defaults.poll_interval,
          "seconds between polls",
      ),
      (
          "--hang_timeout",
          float,
          defaults.hang_timeout,
          "a worker whose log is unchanged this many seconds is hung",
      ),
      (
          "--max_restarts",
          int,
          defaults.max_restarts,
          "recoveries in a row without a new checkpoint before giving up",
      ),
      (
          "--backoff_base",
          float,
          defaults.backoff_base,
          "seconds before the 2nd recovery in a row; doubles after",
      ),
      (
          "--backoff_cap",
          float,
          defaults.backoff_cap,
          "the longest wait between recoveries, in seconds",
      ),
      (
          "--provision_timeout",
          float,
          defaults.provision_timeout,
          "seconds to wait for a TPU to be READY / a queue ACTIVE",
      ),
  ):
    parser.add_argument(flag, type=kind, default=default, help=text)
  parser.add_argument(
      "--train_steps",
      type=int,
      help="the run's last step, if the gin files and overrides do not say",
  )
  parser.add_argument(
      "--incident_log",
      help="JSON-lines file of incidents (default: STATE_DIR/NAME.incidents"
      ".jsonl; gs:// works)",
  )
  parser.add_argument(
      "--state_dir",
      default=DEFAULT_STATE_DIR,
      help="local directory for the watcher's locks and incident log",
  )


def _parse(
    argv: Sequence[str],
) -> tuple[argparse.Namespace, list[str], list[str]]:
  launcher, overrides, extra = t5x_args.split_args(argv)
  args = _parser().parse_args(launcher)
  if overrides and args.command not in ("train", "watch"):
    raise ValueError(
        f"gin overrides ({overrides[0]} ...) only go with train and watch"
    )
  if extra and args.command not in ("train", "watch", "ssh"):
    raise ValueError(
        f"arguments after -- ({extra[0]} ...) only go with train, watch and"
        " ssh"
    )
  remote_dir = getattr(args, "remote_dir", DEFAULT_REMOTE_DIR)
  if not re.fullmatch(r"[A-Za-z0-9._/-]+", remote_dir):
    raise ValueError(
        f"--remote_dir {remote_dir!r}: use letters, digits and . _ / - only"
        " (scp would split other names)"
    )
  return args, overrides, extra


def build_steps(argv: Sequence[str]) -> tuple[argparse.Namespace, list[Step]]:
  """Parses a command line and returns the steps it runs.

  Args:
    argv: arguments after `python -m tpu_launch`.

  Returns:
    The parsed launcher flags and the steps, in order (for `watch`: every
    command it may run, see `build_watch`).

  Raises:
    ValueError: a bad configuration (the message says what to change).
    SystemExit: a malformed command line (argparse's usage message).
  """
  args, overrides, extra = _parse(argv)
  function, _ = _COMMANDS[args.command]
  return args, function(args, overrides, extra)


def build_watch(
    argv: Sequence[str],
) -> tuple[argparse.Namespace, watch.Plan, watch.Settings]:
  """Parses a `watch` command line.

  Args:
    argv: arguments after `python -m tpu_launch`, starting with `watch`.

  Returns:
    The parsed launcher flags, the watcher's commands and its settings.

  Raises:
    ValueError: a bad configuration, or not a `watch` command line.
    SystemExit: a malformed command line (argparse's usage message).
  """
  args, overrides, extra = _parse(argv)
  if args.command != "watch":
    raise ValueError(f"not a watch command line: {args.command}")
  settings = _watch_settings(args)
  return args, _watch_plan(args, overrides, extra), settings


def _no_gcloud() -> bool:
  if shutil.which("gcloud") is not None:
    return False
  print(
      "error: gcloud not found on PATH. Install the Google Cloud CLI"
      " (https://cloud.google.com/sdk/docs/install), then `gcloud auth"
      " login` and `gcloud config set project PROJECT`; or add --dry_run"
      " to print the commands.",
      file=sys.stderr,
  )
  return True


def _main_watch(argv: Sequence[str]) -> int:
  try:
    args, plan, settings = build_watch(argv)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.dry_run:
    print(plan.script(settings), end="")
    return 0
  if _no_gcloud():
    return 2
  log = args.incident_log or os.path.join(
      args.state_dir, f"{args.name}.incidents.jsonl"
  )
  keys = [
      f"TPU {args.project or '(default project)'}/{args.zone}/{args.name}",
      f"MODEL_DIR {plan.model_dir}",
  ]
  try:
    with watch.lock(args.state_dir, keys):
      print(f"# incidents: {log}", file=sys.stderr, flush=True)
      return watch.Watcher(plan, settings, incident_log=log).watch()
  except watch.WatchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    return 130


def main(argv: Sequence[str] | None = None) -> int:
  """Runs (or with --dry_run prints) a launcher command; returns its status."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv[:1] == ["watch"]:
    return _main_watch(argv)
  try:
    args, steps = build_steps(argv)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.dry_run:
    print(f"# python -m tpu_launch {args.command}: nothing was run (--dry_run)")
    for step in steps:
      print(f"# {step.comment}")
      print(step.line)
    return 0
  if _no_gcloud():
    return 2
  for step in steps:
    print(f"# {step.comment}\n+ {step.line}", file=sys.stderr, flush=True)
    try:
      returncode = subprocess.run(step.argv, check=False).returncode
    except KeyboardInterrupt:
      return 130
    if returncode:
      print(f"error: exit status {returncode}: {step.line}", file=sys.stderr)
      return returncode
  return 0
