"""Tests of tpu_launch.slurm: the batch script, run against a fake SLURM.

No cluster: fake `sbatch`, `srun` and `scontrol` executables first on PATH
run the batch script with a real `bash`, and `srun` starts one real local
process per task with the environment SLURM gives a task. The interpreter
the script starts is a fake that records its arguments and environment, so
the checks see what each T5X process would have received.
"""

import json
import os
import shlex
import subprocess
import sys

import pytest

from tpu_launch import slurm

TINY = "gin/experiments/ankh3_tiny_sample.gin"
NODES_GIN = "gin/partitioning/gpu_nodes_8.gin"
SEARCH_PATH = "/opt/site packages/ankh3_tasks"  # What the fake prints.
JOB_ID = "4242"

# Overrides as the user's shell hands them over; each must reach every
# process byte for byte.
OVERRIDES = [
    '--gin.MODEL_DIR="/shared/runs/ankh3 $USER `id -u`"',
    '--gin.MIXTURE_OR_TASK_NAME="ankh3_uniref50_multitask"',
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 320}",
    "--gin.A='single quoted'",
    '--gin.B="it\'s \\"double\\" and \'single\'"',
    '--gin.C="$HOME ${HOME} $(id -u) `id -u` $$ $0 $@ "$@" \'$HOME\'"',
    '--gin.D="a; b && c || d | e > f < g & h"',
    '--gin.E="two\nlines\n"',
    '--gin.F="tab\there * ? ~ ! # % ^ [x] {y} \\\\ \\n \\\\\\\\"',
    '--gin.G=""',
    '--gin.H="ünïcödé ✓"',
    "--gin_bindings=TRAIN_STEPS = 10",
]
EXTRA = ["--seqio_additional_cache_dirs=/shared/cache dir", "--alsologtostderr"]
ENV = ["ANKH3_DATA_DIR=/shared/uni ref $50 `x` \\ 'q'", "EMPTY="]

_FAKE_PYTHON = """\
#!{python}
import json, os, sys
if sys.argv[1:3] == ["-m", "ankh3_tasks.gin_search_path"]:
  print({search_path!r})
elif sys.argv[1:3] == ["-m", "t5x.train"]:
  names = [
      "ANKH3_DATA_DIR", "EMPTY", "JAX_LOCAL_DEVICE_IDS", "XLA_FLAGS",
      "XLA_PYTHON_CLIENT_MEM_FRACTION", "CUDA_DEVICE_MAX_CONNECTIONS",
      "NCCL_DEBUG", "SLURM_LOCALID",
  ]
  record = dict(
      argv=sys.argv[3:], env={{n: os.environ.get(n) for n in names}}
  )
  path = os.path.join(
      os.environ["FAKE_SLURM_ROOT"], f"process_{{os.environ['SLURM_PROCID']}}"
  )
  with open(path + ".json", "w") as f:
    json.dump(record, f)
else:
  sys.exit(f"fake python: unexpected {{sys.argv}}")
"""

# sbatch: records its call, then runs the script from stdin with the job's
# environment (nodes gpu07, gpu08, ...), as the batch step on the first node.
_FAKE_SBATCH = """\
#!{python}
import json, os, re, subprocess, sys
root = os.environ["FAKE_SLURM_ROOT"]
script = sys.stdin.read()
with open(os.path.join(root, "sbatch.jsonl"), "a") as f:
  f.write(json.dumps(dict(argv=sys.argv[1:], script=script)) + "\\n")
nodes = int(re.search(r"^#SBATCH --nodes=(\\d+)$", script, re.M).group(1))
tasks = int(
    re.search(r"^#SBATCH --ntasks-per-node=(\\d+)$", script, re.M).group(1)
)
path = os.path.join(root, "job.sh")
with open(path, "w") as f:
  f.write(script)
env = dict(
    os.environ,
    SLURM_JOB_ID={job_id!r},
    SLURM_JOB_NODELIST=f"gpu[07-{{6 + nodes:02d}}]",
    SLURM_JOB_NUM_NODES=str(nodes),
    SLURM_NTASKS=str(nodes * tasks),
)
run = subprocess.run(["bash", path], env=env)
print("Submitted batch job {job_id}")
sys.exit(run.returncode)
"""

_FAKE_SCONTROL = """\
#!{python}
import re, sys
assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
match = re.match(r"(\\w+)\\[(\\d+)-(\\d+)\\]$", sys.argv[3])
prefix, first, last = match.groups()
for n in range(int(first), int(last) + 1):
  print(f"{{prefix}}{{n:0{{len(first)}}d}}")
"""

# srun: one local process per task, with the variables SLURM sets for it.
_FAKE_SRUN = """\
#!{python}
import os, subprocess, sys
args = sys.argv[1:]
options = []
while args and args[0].startswith("--"):
  options.append(args.pop(0))
per_node = [int(o.split("=")[1]) for o in options
            if o.startswith("--ntasks-per-node=")][0]
nodes = int(os.environ["SLURM_JOB_NUM_NODES"])
runs = [
    subprocess.Popen(args, env=dict(
        os.environ,
        SLURM_PROCID=str(i),
        SLURM_LOCALID=str(i % per_node),
        SLURM_NODEID=str(i // per_node),
        SLURM_NTASKS=str(nodes * per_node),
        SLURM_STEP_NODELIST=os.environ["SLURM_JOB_NODELIST"],
    ))
    for i in range(nodes * per_node)
]
sys.exit(max(run.wait() for run in runs))
"""


def _executable(path, text):
  path.write_text(text)
  os.chmod(path, 0o755)
  return str(path)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
  """A bin directory of fakes first on PATH; returns the records directory."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  records = tmp_path / "records"
  records.mkdir()
  for name, text in (
      ("sbatch", _FAKE_SBATCH),
      ("srun", _FAKE_SRUN),
      ("scontrol", _FAKE_SCONTROL),
  ):
    _executable(
        bin_dir / name, text.format(python=sys.executable, job_id=JOB_ID)
    )
  _executable(
      bin_dir / "fake python",
      _FAKE_PYTHON.format(python=sys.executable, search_path=SEARCH_PATH),
  )
  monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setenv("FAKE_SLURM_ROOT", str(records))
  for name, _, _ in slurm.SETTINGS:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  return records, str(bin_dir / "fake python")


def _launch(python, *flags, nodes=2, gpus=2, gin_files=(TINY,)):
  return [
      f"--nodes={nodes}",
      f"--gpus_per_node={gpus}",
      "--partition=gpu",
      "--account=proj-1",
      "--time=2-00:00:00",
      "--job_name=ankh3_test",
      *(f"--gin_file={g}" for g in gin_files),
      *(f"--env={e}" for e in ENV),
      f"--python={python}",
      *flags,
      *OVERRIDES,
      "--",
      *EXTRA,
  ]


def _records(directory, count):
  names = sorted(p for p in os.listdir(directory) if p.startswith("process_"))
  assert names == sorted(f"process_{i}.json" for i in range(count))
  return [
      json.loads((directory / f"process_{i}.json").read_text())
      for i in range(count)
  ]


def test_every_process_gets_the_overrides_and_its_own_flags(fake_slurm):
  records, python = fake_slurm
  assert slurm.main(_launch(python)) == 0
  [call] = [
      json.loads(line)
      for line in (records / "sbatch.jsonl").read_text().splitlines()
  ]
  assert call["argv"] == []  # The script comes on stdin.
  processes = _records(records, 4)  # 2 nodes x 2 GPUs.
  for i, process in enumerate(processes):
    assert process["argv"] == [
        "--multiprocess_gpu",
        "--coordinator_address=gpu07:12345",  # The first node.
        "--process_count=4",
        f"--process_index={i}",
        f"--gin_search_paths={SEARCH_PATH}",
        f"--gin_file={TINY}",
        *OVERRIDES,
        *EXTRA,
    ]
    env = process["env"]
    assert env["JAX_LOCAL_DEVICE_IDS"] == env["SLURM_LOCALID"] == str(i % 2)
    assert env["ANKH3_DATA_DIR"] == ENV[0].split("=", 1)[1]
    assert env["EMPTY"] == ""
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.9"
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert env["NCCL_DEBUG"] == "WARN"
    assert env["XLA_FLAGS"].split() == [f for f, _ in slurm.XLA_FLAGS]


def test_one_node_of_eight_and_the_env_wins(fake_slurm):
  records, python = fake_slurm
  user_flags = "--xla_dump_to='/scratch/dump dir'"
  flags = [
      "--env=XLA_PYTHON_CLIENT_MEM_FRACTION=0.8",
      f"--env=XLA_FLAGS={user_flags}",
      "--coordinator_port=23456",
  ]
  assert slurm.main(_launch(python, *flags, nodes=1, gpus=8)) == 0
  processes = _records(records, 8)
  assert [p["env"]["JAX_LOCAL_DEVICE_IDS"] for p in processes] == [
      str(i) for i in range(8)
  ]
  for i, process in enumerate(processes):
    assert process["argv"][:4] == [
        "--multiprocess_gpu",
        "--coordinator_address=gpu07:23456",
        "--process_count=8",
        f"--process_index={i}",
    ]
    assert process["env"]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.8"
    # The user's flags come after the script's, so they win.
    xla = process["env"]["XLA_FLAGS"]
    assert xla.endswith(" " + user_flags)
    assert xla.startswith(slurm.XLA_FLAGS[0][0])


def test_dry_run_prints_the_script_and_submits_nothing(fake_slurm, capsys):
  records, python = fake_slurm
  flags = ["--dry_run", "--sbatch_option=--qos=high"]
  assert slurm.main(_launch(python, *flags)) == 0
  script = capsys.readouterr().out
  assert not (records / "sbatch.jsonl").exists()
  assert not any(p.startswith("process_") for p in os.listdir(records))
  directives = [
      line.split()[1]
      for line in script.splitlines()
      if line.startswith("#SBATCH ")
  ]
  assert directives == [
      "--job-name=ankh3_test",
      "--nodes=2",
      "--gpus-per-node=2",
      "--ntasks-per-node=2",
      "--partition=gpu",
      "--account=proj-1",
      "--time=2-00:00:00",
      "--exclusive",
      "--requeue",
      "--open-mode=append",
      "--qos=high",
  ]
  assert script.startswith("#!/bin/bash\n")
  syntax = subprocess.run(["bash", "-n"], input=script, text=True, check=False)
  assert syntax.returncode == 0
  # The overrides stand in the script shell-quoted, one per word.
  for override in OVERRIDES:
    assert shlex.quote(override) in script


def test_gpu_nodes_file_with_its_nodes(fake_slurm, capsys):
  _, python = fake_slurm
  argv = _launch(python, "--dry_run", "--gin.NUM_NODES=2", nodes=2)
  argv[argv.index(f"--gin_file={TINY}")] = f"--gin_file={NODES_GIN}"
  assert slurm.main(argv) == 0
  assert "--gin.NUM_NODES=2" in capsys.readouterr().out


def _drop_model_dir(argv):
  return [a for a in argv if "MODEL_DIR" not in a]


def _relative_model_dir(argv):
  return [
      '--gin.MODEL_DIR="runs/here"' if "MODEL_DIR" in a else a for a in argv
  ]


@pytest.mark.parametrize(
    "change, message",
    [
        (_drop_model_dir, "MODEL_DIR"),
        (_relative_model_dir, "relative"),
        (["--partition=gpu a100"], "cannot hold spaces"),
        (["--job_name=a#b"], "cannot hold spaces"),
        (["--time=two days"], "SLURM time"),
        (["--env=1BAD=x"], "NAME=VALUE"),
        (["--sbatch_option=--qos high"], "one sbatch option"),
        (["--gin_search_paths=/x"], "gin_search_paths"),
        (["--gin_file=gin/missing.gin"], "not found"),
        (["--nodes=0"], "at least 1"),
        ([f"--gin_file={NODES_GIN}", "--gin.NUM_NODES=3"], "NUM_NODES = 3"),
    ],
)
def test_refusals(fake_slurm, capsys, change, message):
  records, python = fake_slurm
  argv = _launch(python)
  if callable(change):
    argv = change(argv)
  else:  # Launcher flags, after the defaults so that they win.
    split = argv.index("--")
    argv = argv[:split] + change + argv[split:]
  with pytest.raises(SystemExit) as exit_:
    slurm.main(argv)
  assert exit_.value.code == 2
  assert message in capsys.readouterr().err
  assert not (records / "sbatch.jsonl").exists()


def test_xla_flags_are_known_to_this_jaxlib():
  # XLA aborts at start-up on a flag it does not know.
  code = "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))"
  env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=" ".join(f for f, _ in slurm.XLA_FLAGS),
  )
  run = subprocess.run(
      [sys.executable, "-c", code],
      env=env,
      capture_output=True,
      text=True,
      check=False,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stdout.strip() == "3.0"
