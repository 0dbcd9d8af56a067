"""Tests of tpu_launch: gcloud lines, quoting through every shell, errors.

No gcloud, network or TPU: the printed commands are parsed as the shells
will parse them (the local shell by `shlex` and by a real `bash` that runs
the printed script against a fake `gcloud`; each worker's login shell by a
real `bash -c`), and a fake `gcloud` that runs worker commands in local
directories stands in for a two-worker slice.
"""

import contextlib
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import types

import pytest

from tpu_launch import accelerators
from tpu_launch import cli
from tpu_launch import gcloud
from tpu_launch import t5x_args
from tpu_launch import xm_launch

from conftest import REPO

LARGE = "gin/experiments/ankh3_large_pretrain.gin"
SEARCH_PATH = "/opt/site packages/ankh3_tasks"  # What the fake prints.

# Overrides as the user's shell hands them to the launcher: each must reach
# t5x.train byte for byte.
NASTY = [
    '--gin.MIXTURE_OR_TASK_NAME="ankh3_uniref50_multitask"',
    '--gin.MODEL_DIR="gs://b/run 1"',
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 320}",
    "--gin.A='single quoted'",
    '--gin.B="it\'s \\"double\\" and \'single\'"',
    '--gin.C="$HOME ${HOME} $(id -u) `id -u` $$ $0 $@ "$@" \'$HOME\'"',
    '--gin.D="a; b && c || d | e > f < g & h"',
    '--gin.E="line 1\nline 2\n"',
    '--gin.F="tab\there * ? ~ ! # % ^ [x] {y} \\\\ \\n"',
    '--gin.G=""',
    '--gin.H="ünïcödé ✓"',
    "--gin_bindings=TRAIN_STEPS = 10",
]
EXTRA = ["--seqio_additional_cache_dirs=gs://b/cache dir", "--alsologtostderr"]
# A gin file only the launching machine has: it travels to the workers.
GIN_TEXT = (
    f"include '{LARGE}'\n# It's $HOME's `run`; \\ \"quoted\" \n\nTRAIN_STEPS"
    " = 7\n"
)

_FAKE_PYTHON = """\
#!{python}
import json, os, sys, time
if sys.argv[1:3] == ["-m", "ankh3_tasks.gin_search_path"]:
  print({search_path!r})
elif sys.argv[1:3] == ["-m", "t5x.train"]:
  record = dict(
      argv=sys.argv[3:],
      env=os.environ.get("ANKH3_DATA_DIR"),
      cwd=os.getcwd(),
      pgid=os.getpgid(0),
  )
  with open("argv.json.tmp", "w") as f:
    json.dump(record, f)
  os.rename("argv.json.tmp", "argv.json")
  if os.environ.get("FAKE_TRAIN_SCRIPT"):  # tests/tpu_launch_watch_test.py
    exec(open(os.environ["FAKE_TRAIN_SCRIPT"]).read())
  time.sleep(float(os.environ.get("FAKE_TRAIN_SECONDS", "0")))
else:
  sys.exit(f"fake python: unexpected {{sys.argv}}")
"""

# gcloud as far as the launcher uses it. ssh hands `--command` to each
# worker's shell as gcloud does (split on ' ', joined by ssh with ' '); scp
# copies; anything else is only recorded.
_FAKE_GCLOUD = """\
#!{python}
import json, os, shutil, subprocess, sys
root = os.environ["FAKE_TPU_ROOT"]
args = sys.argv[1:]
with open(os.path.join(root, "gcloud.jsonl"), "a") as f:
  f.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_GCLOUD_RECORD_ONLY"):
  sys.exit(0)
if os.environ.get("FAKE_CLOUD"):  # The TPU's state: tpu_launch_watch_test.py
  exec(open(os.environ["FAKE_CLOUD"]).read())
worker = [a for a in args if a.startswith("--worker=")]
worker = worker[-1].split("=", 1)[1] if worker else "0"
names = ["w0", "w1"] if worker == "all" else ["w" + worker]
homes = [os.path.join(root, name) for name in names]
if args[:4] == ["compute", "tpus", "tpu-vm", "ssh"]:
  command = [a for a in args if a.startswith("--command=")][0][10:]
  command = " ".join(command.split(" "))
  runs = [
      subprocess.Popen(
          ["bash", "-c", command], cwd=home, env=dict(os.environ, HOME=home)
      )
      for home in homes
  ]
  sys.exit(max(run.wait() for run in runs))
if args[:4] == ["compute", "tpus", "tpu-vm", "scp"]:
  *sources, destination = [a for a in args[4:] if not a.startswith("--")]
  for home in homes:
    for source in sources:
      shutil.copy(source, os.path.join(home, destination.split(":", 1)[1]))
"""


def _executable(path, text):
  with open(path, "w") as f:
    f.write(text)
  os.chmod(path, 0o755)
  return str(path)


def _worker(home):
  """A worker after `setup`: REMOTE_DIR/venv/bin/python is the fake."""
  bin_dir = home / "ankh3" / "venv" / "bin"
  bin_dir.mkdir(parents=True)
  _executable(
      bin_dir / "python",
      _FAKE_PYTHON.format(python=sys.executable, search_path=SEARCH_PATH),
  )
  return home


def _dry_run(argv, capsys):
  assert cli.main([argv[0], "--dry_run", *argv[1:]]) == 0
  return capsys.readouterr().out


def _train_command(output):
  """The argv of the train step's gcloud line, parsed as a POSIX shell does."""
  marker = "\n# on every worker at once: start t5x.train"
  line = output.split(marker, 1)[1].split("\n", 1)[1]
  return shlex.split(line)


def _remote(argv):
  """The `--command` value of a gcloud ssh argv (what the workers run)."""
  assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "ankh3"]
  [command] = [a[10:] for a in argv if a.startswith("--command=")]
  return command


def _wait_for(path, seconds=10.0):
  deadline = time.monotonic() + seconds
  while not os.path.exists(path):
    assert time.monotonic() < deadline, f"{path} never appeared"
    time.sleep(0.02)
  with open(path) as f:
    return json.load(f)


def _group_alive(pgid):
  try:
    os.killpg(pgid, 0)
  except ProcessLookupError:
    return False
  return True


@contextlib.contextmanager
def _reaping(pgids):
  """Kills, on the way out, the fake trainings a test started (by id)."""
  try:
    yield
  finally:
    for pgid in pgids:
      with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _fixed_log_name(monkeypatch):
  monkeypatch.setattr(cli, "_run_id", lambda: "train-TEST")


TRAIN = [
    "train",
    "--name=ankh3",
    f"--gin_file={LARGE}",
    "--env=ANKH3_DATA_DIR=gs://b/uniref 50",
    *NASTY,
    "--",
    *EXTRA,
]
EXPECTED = [
    f"--gin_search_paths={SEARCH_PATH}",
    f"--gin_file={LARGE}",
    *NASTY,
    *EXTRA,
]


def test_dry_run_reaches_t5x_train_byte_for_byte(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  argv = _train_command(_dry_run(TRAIN, capsys))
  assert "--worker=all" in argv and "--zone=us-central2-b" in argv
  home = _worker(tmp_path / "w0")
  # The worker's login shell parses --command; the fake t5x.train records.
  subprocess.run(["bash", "-c", _remote(argv)], cwd=home, check=True)
  run = home / "ankh3" / "runs" / "train-TEST"
  record = _wait_for(run / "argv.json")
  with _reaping([record["pgid"]]):
    assert record["argv"] == EXPECTED
    assert record["env"] == "gs://b/uniref 50"
    assert record["cwd"] == str(run)
    assert os.readlink(home / "ankh3" / "latest") == "runs/train-TEST"
    assert (run / "t5x.log").exists()


def test_printed_script_runs_the_same_gcloud_argv(
    tmp_path, capsys, monkeypatch
):
  """The whole dry-run output, run by bash, calls gcloud with each argv."""
  monkeypatch.chdir(tmp_path)
  script = _dry_run(TRAIN, capsys)
  _, steps = cli.build_steps(TRAIN)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _executable(bin_dir / "gcloud", _FAKE_GCLOUD.format(python=sys.executable))
  env = dict(
      os.environ,
      PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
      FAKE_TPU_ROOT=str(tmp_path),
      FAKE_GCLOUD_RECORD_ONLY="1",
  )
  subprocess.run(["bash", "-c", script], env=env, check=True)
  with open(tmp_path / "gcloud.jsonl") as f:
    called = [json.loads(line) for line in f]
  assert called == [step.argv[1:] for step in steps]


def test_two_workers_train_then_refuse_then_stop(tmp_path):
  """`train` and `stop`, really run, against a fake two-worker gcloud."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _executable(bin_dir / "gcloud", _FAKE_GCLOUD.format(python=sys.executable))
  homes = [_worker(tmp_path / name) for name in ("w0", "w1")]
  # A gin file only this machine has, in a directory with a space, that
  # includes one of the package's files.
  launch_dir = tmp_path / "here"
  (launch_dir / "my runs").mkdir(parents=True)
  (launch_dir / "my runs" / "exp 1.gin").write_text(GIN_TEXT)
  env = dict(
      os.environ,
      PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
      FAKE_TPU_ROOT=str(tmp_path),
      PYTHONPATH=REPO,
  )
  train = [
      sys.executable,
      "-m",
      "tpu_launch",
      "train",
      "--name=ankh3",
      "--gin_file=my runs/exp 1.gin",
      "--env=FAKE_TRAIN_SECONDS=60",
      *NASTY,
  ]
  options = dict(cwd=launch_dir, env=env, capture_output=True, text=True)
  result = subprocess.run(train, **options)
  assert result.returncode == 0, result.stderr
  runs = [h / "ankh3" / "latest" for h in homes]
  records = [_wait_for(run / "argv.json") for run in runs]
  with _reaping([r["pgid"] for r in records]):
    for run, record in zip(runs, records):
      assert record["argv"] == [
          f"--gin_search_paths={SEARCH_PATH}",
          "--gin_file=my runs/exp 1.gin",
          *NASTY,
      ]
      shipped = run / "my runs" / "exp 1.gin"
      assert shipped.read_text() == GIN_TEXT
      assert _group_alive(record["pgid"])
    again = subprocess.run(train, **options)
    assert again.returncode != 0
    assert "already running" in again.stderr
    stop = [sys.executable, "-m", "tpu_launch", "stop", "--name=ankh3"]
    result = subprocess.run(stop, **options)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("stopped process group") == 2
    for record in records:
      assert not _group_alive(record["pgid"])
    assert not os.path.exists(homes[0] / "ankh3" / "train.pid")


def test_missing_gcloud_is_a_clear_error(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))
  assert cli.main(["stop", "--name=ankh3"]) == 2
  err = capsys.readouterr().err
  assert "gcloud not found on PATH" in err and "--dry_run" in err
  # A dry run needs no gcloud.
  assert cli.main(["stop", "--name=ankh3", "--dry_run"]) == 0


@pytest.mark.parametrize(
    "accelerator, zone",
    [
        ("v4-128", "us-central2-b"),
        ("v4-8", "us-central2-b"),
        ("v5litepod-16", "us-west4-a"),
        ("v5p-8", "us-east5-a"),
        ("v6e-8", "us-east5-b"),
    ],
)
def test_zone_offers_accelerator(accelerator, zone):
  accelerators.check_zone(accelerators.parse(accelerator), zone)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["create", "--zone=us-west4-a"],
            (
                "zone us-west4-a does not offer TPU v4 (v4-128); v4 is in:"
                " us-central2-b"
            ),
        ),
        (
            ["create", "--accelerator_type=v5litepod-16"],
            "v5litepod is in: us-central1-a, us-south1-a",
        ),
        (["create", "--accelerator_type=v5e-8"], "unknown accelerator type"),
        (["create", "--accelerator_type=v4"], "not of the form FAMILY-SIZE"),
        (
            ["create", "--queued", "--preemptible"],
            "--preemptible is not for queued resources",
        ),
        (
            ["train", f"--gin_file={LARGE}", '--gin.MODEL_DIR="/data/run"'],
            (
                "MODEL_DIR '/data/run' is not on GCS: on a multi-host slice"
                " (v4-128, 16 hosts)"
            ),
        ),
        (
            ["train", f"--gin_file={LARGE}", "--gin.MODEL_DIR=gs://b/run"],
            "MODEL_DIR=gs://b/run is not a quoted gin string",
        ),
        (["train", f"--gin_file={LARGE}"], "set the run's directory"),
        (["train", '--gin.MODEL_DIR="gs://b/r"'], "at least one --gin_file"),
        (
            ["train", "--gin_file=nope.gin", '--gin.MODEL_DIR="gs://b/r"'],
            "gin file 'nope.gin' not found; looked in: ",
        ),
        (
            [
                "train",
                f"--gin_file={LARGE}",
                '--gin.MODEL_DIR="gs://b/r"',
                "--gin_search_paths=x",
            ],
            "sets --gin_search_paths itself",
        ),
        (
            ["train", f"--gin_file={LARGE}", '--gin.MODEL_DIR="gs://b/r"']
            + ["--env=1X=y"],
            "is not NAME=VALUE",
        ),
        (["stop", '--gin.MODEL_DIR="gs://b/r"'], "only go with train"),
        (["setup", "--wheel=nope.whl"], "no such .whl file"),
        (["setup", "--remote_dir=my dir"], "letters, digits and . _ / - only"),
        (
            ["train", f"--gin_file={LARGE}", '--gin.MODEL_DIR="run"']
            + ["--accelerator_type=v4-8"],
            "MODEL_DIR 'run' is relative",
        ),
    ],
)
def test_errors_say_what_to_change(
    argv, message, capsys, tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  assert cli.main([argv[0], "--name=ankh3", "--dry_run", *argv[1:]]) == 2
  assert message in capsys.readouterr().err


def test_dry_run_after_double_dash_is_refused(capsys, tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))  # Whatever happens, no gcloud.
  argv = [
      "train",
      "--name=a",
      f"--gin_file={LARGE}",
      '--gin.MODEL_DIR="gs://b"',
  ]
  assert cli.main([*argv, "--", "--dry_run"]) == 2
  assert "put it before --" in capsys.readouterr().err
  assert xm_launch.main(["xm_launch", *_xm_argv(), "--dry_run"]) == 2
  assert "put it before --" in capsys.readouterr().err


def test_missing_gin_file_names_where_it_looked(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  argv = [
      "train",
      "--name=a",
      "--gin_file=gin/x.gin",
      '--gin.MODEL_DIR="gs://b"',
  ]
  assert cli.main([*argv, "--dry_run"]) == 2
  err = capsys.readouterr().err
  assert str(tmp_path / "gin" / "x.gin") in err
  package = importlib.util.find_spec("ankh3_tasks").submodule_search_locations
  assert os.path.join(list(package)[0], "gin", "x.gin") in err


def test_local_gin_file_outside_cwd_is_refused(tmp_path):
  path = tmp_path / "mine.gin"
  path.write_text("X = 1\n")
  with pytest.raises(ValueError, match="relative to the current directory"):
    t5x_args.resolve_gin_files([str(path)], cwd=REPO, roots=[])


def test_package_gin_files_are_not_shipped(tmp_path):
  files = t5x_args.resolve_gin_files(
      [LARGE], cwd=str(tmp_path), roots=t5x_args.search_roots()
  )
  assert [(f.path, f.ship) for f in files] == [(LARGE, False)]


def test_single_host_may_keep_model_dir_locally(capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  argv = [
      "train",
      "--name=ankh3",
      "--accelerator_type=v4-8",
      f"--gin_file={LARGE}",
      '--gin.MODEL_DIR="/data/ankh3"',
  ]
  assert "t5x.train" in _dry_run(argv, capsys)


@pytest.mark.parametrize(
    "accelerator, chips, hosts",
    [
        ("v4-8", 4, 1),
        ("v4-16", 8, 2),
        ("v4-128", 64, 16),
        ("v5litepod-16", 16, 4),
        ("v5p-8", 4, 1),
        ("v6e-8", 8, 1),
    ],
)
def test_chips_and_hosts(accelerator, chips, hosts):
  parsed = accelerators.parse(accelerator)
  assert (parsed.chips, parsed.hosts, parsed.multi_host) == (
      chips,
      hosts,
      hosts > 1,
  )


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["create"],
            (
                "gcloud compute tpus tpu-vm create ankh3 --zone=us-central2-b"
                " --accelerator-type=v4-128 --version=tpu-ubuntu2204-base"
            ),
        ),
        (
            ["create", "--queued", "--spot", "--project=p"],
            (
                "gcloud compute tpus queued-resources create ankh3-qr"
                " --zone=us-central2-b --project=p --accelerator-type=v4-128"
                " --runtime-version=tpu-ubuntu2204-base --node-id=ankh3 --spot"
            ),
        ),
        (
            [
                "create",
                "--accelerator_type=v5litepod-16",
                "--zone=us-west4-a",
                "--reserved",
                "--gcloud_flag=--network=my net",
            ],
            (
                "gcloud compute tpus tpu-vm create ankh3 --zone=us-west4-a"
                " --accelerator-type=v5litepod-16 --version=v2-alpha-tpuv5-lite"
                " --reserved '--network=my net'"
            ),
        ),
        (
            ["create", "--zone=europe-west4-a", "--allow_any_zone"],
            (
                "gcloud compute tpus tpu-vm create ankh3 --zone=europe-west4-a"
                " --accelerator-type=v4-128 --version=tpu-ubuntu2204-base"
            ),
        ),
        (
            ["delete", "--queued", "--yes"],
            (
                "gcloud compute tpus queued-resources delete ankh3-qr"
                " --zone=us-central2-b --force --quiet"
            ),
        ),
        (
            ["delete"],
            "gcloud compute tpus tpu-vm delete ankh3 --zone=us-central2-b",
        ),
        (
            ["status", "--queued", "--queued_resource_id=q"],
            (
                "gcloud compute tpus queued-resources describe q"
                " --zone=us-central2-b"
            ),
        ),
        (
            ["logs", "--worker=3", "--no_follow", "--lines=20"],
            (
                "gcloud compute tpus tpu-vm ssh ankh3 --zone=us-central2-b"
                " --worker=3 '--command=tail -n 20 ankh3/latest/t5x.log'"
            ),
        ),
        (
            ["logs"],
            (
                "gcloud compute tpus tpu-vm ssh ankh3 --zone=us-central2-b"
                " --worker=0 '--command=tail -n 100 -F ankh3/latest/t5x.log'"
            ),
        ),
        (
            ["ssh", "--worker=all", "--", "ls", "-l", "a b"],
            (
                "gcloud compute tpus tpu-vm ssh ankh3 --zone=us-central2-b"
                " --worker=all '--command=ls -l '\"'\"'a b'\"'\"''"
            ),
        ),
        (
            ["ssh"],
            (
                "gcloud compute tpus tpu-vm ssh ankh3 --zone=us-central2-b"
                " --worker=0"
            ),
        ),
    ],
)
def test_gcloud_lines(argv, line, capsys):
  output = _dry_run([argv[0], "--name=ankh3", *argv[1:]], capsys)
  assert output.splitlines()[-1] == line


def test_setup_installs_the_pins_on_every_worker(capsys):
  output = _dry_run(["setup", "--name=ankh3"], capsys)
  _, steps = cli.build_steps(["setup", "--name=ankh3"])
  assert [s.line for s in steps] == [
      l for l in output.splitlines() if not l.startswith("#")
  ]
  build, prepare, copy, install, check = [s.argv for s in steps]
  assert build[1:] == [
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      REPO,
      "-w",
      os.path.join(REPO, "dist"),
  ]
  with open(os.path.join(REPO, "ankh3_tasks", "__init__.py")) as f:
    [version] = re.findall(r'^__version__ = "(.+)"$', f.read(), re.MULTILINE)
  name = f"ankh3_tasks-{version}-py3-none-any.whl"
  wheel = os.path.join(REPO, "dist", name)
  assert copy == [
      "gcloud",
      "compute",
      "tpus",
      "tpu-vm",
      "scp",
      wheel,
      os.path.join(REPO, "requirements", "constraints.txt"),
      "ankh3:ankh3/dist/",
      "--zone=us-central2-b",
      "--worker=all",
  ]
  for argv in (prepare, install, check):
    assert "--worker=all" in argv
  lexer = shlex.shlex(_remote(install), posix=True, punctuation_chars=";")
  lexer.whitespace_split = True
  remote = list(lexer)
  with open(os.path.join(REPO, "requirements", "t5x-git.txt")) as f:
    pins = [l.strip() for l in f if l.strip() and not l.startswith("#")]
  assert len(pins) == 3
  i = remote.index(pins[0])
  assert remote[i - 2 : i + 3] == ["-q", "--no-deps", *pins]
  with open(os.path.join(REPO, "requirements", "constraints.txt")) as f:
    [jax] = [l.strip() for l in f if l.startswith("jax==")]
  i = remote.index(f"dist/{name}[t5x]")
  assert remote[i - 2 : i] == ["-c", "dist/constraints.txt"]
  assert remote[i + 1 : i + 4] == [
      jax.replace("jax", "jax[tpu]"),
      "-f",
      gcloud.LIBTPU_FIND_LINKS,
  ]


def test_setup_with_a_wheel_skips_the_build(tmp_path, capsys):
  wheel = tmp_path / "ankh3_tasks-9-py3-none-any.whl"
  wheel.write_bytes(b"")
  output = _dry_run(
      ["setup", "--name=ankh3", f"--wheel={wheel}", "--no_check"], capsys
  )
  assert "pip wheel" not in output
  constraints = os.path.join(REPO, "requirements", "constraints.txt")
  assert f"scp {wheel} {constraints} ankh3:ankh3/dist/" in output


def _xm_argv(*more):
  return [
      f"--gin_file={LARGE}",
      *NASTY,
      "--env=ANKH3_DATA_DIR=gs://b/uniref50",
      *more,
      "--",
      *EXTRA,
  ]


def test_xm_dry_run_prints_the_exact_argv(capsys):
  assert xm_launch.main(["xm_launch", *_xm_argv("--dry_run")]) == 0
  spec = json.loads(capsys.readouterr().out)
  assert spec["job"]["args"] == [f"--gin_file={LARGE}", *NASTY, *EXTRA]
  assert spec["job"]["env_vars"] == {"ANKH3_DATA_DIR": "gs://b/uniref50"}
  assert spec["executor"]["requirements"] == {"tpu_v4": "4x4x4"}
  assert spec["executor"]["vertex_machine_spec"] == {
      "machine_type": "ct4p-hightpu-4t",
      "accelerator_type": "TPU_V4_POD",
      "accelerator_count": 4,
      "tpu_topology": "4x4x4",
  }
  assert spec["packaging"]["entrypoint"] == "python -m t5x.train"


@pytest.mark.parametrize(
    "more, message",
    [
        (["--accelerator_type=v2-32"], "v2-8 and v3-8 only"),
        (["--accelerator_type=v6e-8"], "this launcher knows"),
        (['--gin.MODEL_DIR="/data/x"'], "disk is discarded"),
        (["--gin_file=/abs/x.gin"], "relative to the checkout"),
        (["--gin_file=nope.gin"], "gin file 'nope.gin' not found"),
    ],
)
def test_xm_errors(more, message, capsys):
  assert xm_launch.main(["xm_launch", *_xm_argv(*more, "--dry_run")]) == 2
  assert message in capsys.readouterr().err


def _fake_xmanager(calls):
  """Stand-ins for xm, xm_local and xmanager.cloud.vertex that record."""

  def record(name):
    return lambda *args, **kwargs: calls.append((name, args, kwargs)) or name

  class Experiment:

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return False

    def package(self, packageables):
      calls.append(("package", tuple(packageables), {}))
      return ["executable"]

    def add(self, job):
      calls.append(("add", (job,), {}))

  class Vertex:

    def __init__(self, requirements):
      self.requirements = requirements

    def Spec(self):  # pylint: disable=invalid-name
      return "spec"

  xm = types.SimpleNamespace(
      JobRequirements=record("JobRequirements"),
      ModuleName=record("ModuleName"),
      python_container=record("python_container"),
      Job=lambda **kwargs: ("Job", kwargs),
      ResourceType={"tpu_v4": "TPU_V4"},
  )
  xm_local = types.SimpleNamespace(
      create_experiment=lambda **kwargs: Experiment(), Vertex=Vertex
  )
  vertex = types.SimpleNamespace(
      get_machine_spec=lambda job: "stock",
      aip_v1=types.SimpleNamespace(AcceleratorType={"TPU_V4_POD": 10}),
  )
  return xm, xm_local, vertex


def test_xm_launch_passes_args_as_a_list():
  _, spec = xm_launch.job_spec(_xm_argv())
  calls = []
  xm, xm_local, vertex = _fake_xmanager(calls)
  xm_launch.launch(spec, xm=xm, xm_local=xm_local, vertex=vertex)
  by_name = {name: (args, kwargs) for name, args, kwargs in calls}
  assert by_name["JobRequirements"][1] == {"tpu_v4": "4x4x4"}
  assert by_name["ModuleName"][0] == ("t5x.train",)
  [(_, job)] = by_name["add"][0]
  assert job["args"] == [f"--gin_file={LARGE}", *NASTY, *EXTRA]
  assert job["env_vars"] == {"ANKH3_DATA_DIR": "gs://b/uniref50"}
  # XManager's Vertex backend now places a v4 job; others as before.
  v4_job = types.SimpleNamespace(
      executor=types.SimpleNamespace(
          requirements=types.SimpleNamespace(accelerator="TPU_V4")
      )
  )
  assert vertex.get_machine_spec(v4_job)["accelerator_type"] == 10
  v2_job = types.SimpleNamespace(
      executor=types.SimpleNamespace(
          requirements=types.SimpleNamespace(accelerator="TPU_V2")
      )
  )
  assert vertex.get_machine_spec(v2_job) == "stock"


@pytest.mark.skipif(
    importlib.util.find_spec("xmanager") is None,
    reason="needs XManager (pip install xmanager), which is optional",
)
def test_xm_job_reaches_vertex_container_args(monkeypatch):
  """With real XManager: the Vertex custom job holds the exact argv."""
  from xmanager import xm  # pylint: disable=g-import-not-at-top
  from xmanager import xm_local  # pylint: disable=g-import-not-at-top
  from xmanager.cloud import vertex  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from xmanager.xm_local import executables

  _, spec = xm_launch.job_spec(_xm_argv())
  monkeypatch.setattr(vertex, "get_machine_spec", vertex.get_machine_spec)
  xm_launch._extend_vertex(vertex, xm, spec)  # pylint: disable=protected-access
  jobs = []

  class CustomJob:

    def __init__(self, **kwargs):
      jobs.append(kwargs)

    def submit(self, **kwargs):
      del kwargs

    def _dashboard_uri(self):
      return ""

    resource_name = "job"

  monkeypatch.setattr(vertex.aiplatform, "CustomJob", CustomJob)
  monkeypatch.setattr(vertex.auth, "get_bucket", lambda: "b")
  monkeypatch.setattr(vertex.auth, "get_service_account", lambda: None)
  client = vertex.Client.__new__(vertex.Client)
  client.project, client.location = "p", "us-central1"
  executor = xm_local.Vertex(
      requirements=xm.JobRequirements(**spec["executor"]["requirements"])
  )
  image = executables.GoogleContainerRegistryImage(name="t5x", image_path="i")
  job = xm.Job(
      executable=image,
      executor=executor,
      args=spec["job"]["args"],
      env_vars=spec["job"]["env_vars"],
  )
  client.launch("ankh3", [job])
  [pool] = jobs[0]["worker_pool_specs"]
  assert list(pool.container_spec.args) == spec["job"]["args"]
  assert pool.machine_spec.tpu_topology == "4x4x4"
  assert pool.machine_spec.accelerator_type.name == "TPU_V4_POD"


def test_help_lists_every_command():
  result = subprocess.run(
      [sys.executable, "-m", "tpu_launch", "--help"],
      capture_output=True,
      text=True,
      cwd=REPO,
      check=True,
  )
  for command in ("create", "setup", "train", "logs", "stop", "delete"):
    assert command in result.stdout
