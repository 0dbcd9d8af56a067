r"""Submits Ankh3 pretraining to a SLURM GPU cluster: one T5X process per GPU.

  python -m tpu_launch.slurm --nodes=2 --gpus_per_node=8 \
    --partition=gpu --account=my_project --time=48:00:00 \
    --job_name=ankh3_large \
    --gin_file=gin/models/ankh3_large.gin \
    --gin_file=gin/runs/ankh3_pretrain.gin \
    --gin_file=gin/partitioning/gpu_nodes_8.gin --gin.NUM_NODES=2 \
    --gin.MIXTURE_OR_TASK_NAME=\"ankh3_uniref50_multitask\" \
    --gin.TRAIN_STEPS=4000000 --gin.NUM_MICROBATCHES=8 \
    --gin.MODEL_DIR=\"/shared/runs/ankh3_large\" \
    --env=ANKH3_DATA_DIR=/shared/uniref50 --dry_run

writes a batch script and hands it to `sbatch` (`--dry_run`: prints it and
submits nothing). The script asks for `--nodes` whole nodes with
`--gpus_per_node` GPUs and as many tasks, and `srun` starts one
`python -m t5x.train` per GPU with T5X's multi-process flags:
`--multiprocess_gpu`, `--coordinator_address` on the first node of the
allocation, `--process_count=$SLURM_NTASKS` and
`--process_index=$SLURM_PROCID`; JAX gives each process GPU
`$SLURM_LOCALID` of its node. The `--gin.NAME=VALUE` overrides and the flags
after `--` reach every process byte for byte (tpu_launch/t5x_args.py).

The job is `--requeue`d: when SLURM requeues it (node failure, preemption)
T5X restores the latest checkpoint in MODEL_DIR, which must therefore be on
storage every node sees (an absolute path on a shared file system, or a
`gs://` bucket). The nodes are expected to share the working directory and
the Python environment the job is submitted from (`sbatch` passes the
submitting shell's environment on); `--python` names another interpreter.

The XLA and NCCL settings, each with its reason, are `SETTINGS`; docs/gpu.md
explains them. `--env NAME=VALUE` sets more (or overrides one); XLA_FLAGS
given so are appended to the script's, so theirs win.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import textwrap
from typing import Optional, Sequence

from tpu_launch import t5x_args

# The XLA flags the job sets, with why. Each exists in the jaxlib the tests
# run (tests/slurm_test.py): XLA aborts on a flag it does not know, as it
# does on `--xla_gpu_simplify_all_fp_conversions`, which T5X's own GPU
# scripts (t5x/contrib/gpu/scripts_gpu) still set.
XLA_FLAGS: tuple[tuple[str, str], ...] = (
    (
        "--xla_gpu_enable_latency_hiding_scheduler=true",
        "let XLA schedule the gradient all-reduces (and XL's weight"
        " all-gathers) to overlap with compute; set in NVIDIA's JAX"
        " containers (JAX-Toolbox) and JAX's GPU performance tips",
    ),
    (
        "--xla_gpu_all_reduce_combine_threshold_bytes=136314880",
        "combine the many small per-parameter gradient all-reduces into"
        " ~130 MiB ones, fewer and faster NCCL calls; the value T5X's GPU"
        " scripts use",
    ),
)

# Environment variables the job sets unless the submitting environment or
# `--env` already does: (name, value, why).
SETTINGS: tuple[tuple[str, str, str], ...] = (
    (
        "XLA_PYTHON_CLIENT_MEM_FRACTION",
        "0.9",
        "let XLA take 90% of each GPU's memory rather than JAX's default 75%;"
        " the rest is left to CUDA, cuBLAS and NCCL (NVIDIA's JAX-Toolbox"
        " GPU performance guide: 0.9 or 0.8). Plan with"
        " `python -m ankh3_tasks.plan --mem_fraction=0.9`",
    ),
    (
        "CUDA_DEVICE_MAX_CONNECTIONS",
        "1",
        "one hardware work queue per GPU, so that kernels start in the order"
        " the latency-hiding scheduler chose (NVIDIA's JAX-Toolbox GPU"
        " performance guide, for Hopper: H100, H200)",
    ),
    (
        "NCCL_DEBUG",
        "WARN",
        "NCCL writes why a collective failed (a network or NVLink error)"
        " into the job's log, rather than the job only hanging or aborting",
    ),
)

# Where the coordinator listens on the first node; the port T5X's GPU
# scripts use. The nodes are the job's alone (`--exclusive`).
DEFAULT_PORT = 12345
_DIRECTIVE_VALUE = re.compile(r"^[^\s#]+$")
_TIME = re.compile(r"^(\d+-)?\d+(:\d\d){0,2}$")


def _comment(text: str) -> list[str]:
  """`text` as shell comment lines of at most 80 columns."""
  return ["# " + line for line in textwrap.wrap(text, 78)]


def _directive_value(value: str, flag: str) -> str:
  """`value` if it can stand in an `#SBATCH` line (not shell-parsed)."""
  if not _DIRECTIVE_VALUE.match(value):
    raise ValueError(
        f"{flag}={value!r}: an #SBATCH value cannot hold spaces, newlines or"
        " '#'"
    )
  return value


def _sbatch_option(option: str) -> str:
  if not option.startswith("--") or not _DIRECTIVE_VALUE.match(option):
    raise ValueError(
        f"--sbatch_option={option!r} is not one sbatch option such as"
        " --qos=high (no spaces)"
    )
  return option


def _check_model_dir(overrides: Sequence[str]) -> str:
  directory = t5x_args.model_dir(overrides)
  if not (directory.startswith("/") or "://" in directory):
    raise ValueError(
        f"MODEL_DIR {directory!r} is relative: every node writes and the"
        " requeued job restores there, so give an absolute path on a shared"
        ' file system (--gin.MODEL_DIR=\\"/shared/runs/NAME\\") or a gs://'
        " path"
    )
  return directory


def _check_nodes_macro(
    args: argparse.Namespace, gin_files: Sequence[str], overrides: Sequence[str]
) -> None:
  """Refuses a NUM_NODES macro that disagrees with `--nodes`."""
  value = t5x_args.gin_macro(
      "NUM_NODES",
      gin_files,
      overrides,
      cwd=os.getcwd(),
      roots=t5x_args.search_roots(),
  )
  if value is None or value == "%gin.REQUIRED":
    return
  if value.strip() != str(args.nodes):
    raise ValueError(
        f"the gin files give NUM_NODES = {value.strip()} but --nodes="
        f"{args.nodes}: pass --gin.NUM_NODES={args.nodes}"
    )


def batch_script(
    args: argparse.Namespace,
    overrides: Sequence[str],
    extra: Sequence[str],
) -> str:
  """The batch script `sbatch` receives.

  Args:
    args: the parsed launcher flags (`_parser()`).
    overrides: `--gin.NAME=VALUE` / `--gin_bindings=` arguments, as given.
    extra: `t5x.train` flags given after `--`, as given.

  Returns:
    The script's text.

  Raises:
    ValueError: a flag, `--env` or `--sbatch_option` that cannot be used, a
      gin file found nowhere, or MODEL_DIR unset or not on shared storage.
  """
  if args.nodes < 1 or args.gpus_per_node < 1:
    raise ValueError(
        f"--nodes={args.nodes} and --gpus_per_node={args.gpus_per_node} must"
        " both be at least 1"
    )
  if not args.gin_file:
    raise ValueError("give at least one --gin_file")
  model_dir = _check_model_dir(overrides)
  env = t5x_args.parse_env(args.env)
  t5x_args.resolve_gin_files(
      args.gin_file, cwd=os.getcwd(), roots=t5x_args.search_roots()
  )
  _check_nodes_macro(args, args.gin_file, overrides)
  if args.time is not None and not _TIME.match(args.time):
    raise ValueError(
        f"--time={args.time!r} is not a SLURM time such as 48:00:00 or"
        " 2-00:00:00"
    )

  directives = [
      ("--job-name", _directive_value(args.job_name, "--job_name"), None),
      ("--nodes", str(args.nodes), None),
      ("--gpus-per-node", str(args.gpus_per_node), None),
      (
          "--ntasks-per-node",
          str(args.gpus_per_node),
          "one T5X process per GPU",
      ),
  ]
  for name, value in (
      ("--partition", args.partition),
      ("--account", args.account),
      ("--time", args.time),
  ):
    if value is not None:
      directives.append((name, _directive_value(value, name), None))
  directives += [
      ("--exclusive", None, "whole nodes: no other job's processes or port"),
      (
          "--requeue",
          None,
          "requeued on node failure or preemption; T5X resumes from the"
          " latest checkpoint in MODEL_DIR",
      ),
      ("--open-mode", "append", "a requeued job appends to its log"),
  ]
  lines = ["#!/bin/bash"]
  for name, value, why in directives:
    if why:
      lines += _comment(why)
    lines.append(f"#SBATCH {name}" + (f"={value}" if value else ""))
  lines += [f"#SBATCH {_sbatch_option(o)}" for o in args.sbatch_option]
  lines += [
      "# Written by `python -m tpu_launch.slurm` (see docs/gpu.md).",
      *_comment(f"MODEL_DIR: {model_dir!r}"),
      "set -euo pipefail",
      "",
      "# --env",
      *(f"export {name}={shlex.quote(value)}" for name, value in env),
      "",
      "# XLA and NCCL settings; a value already set (--env, or the",
      "# submitting environment) is kept.",
  ]
  for name, value, why in SETTINGS:
    lines += [*_comment(f"{why}."), f'export {name}="${{{name}:-{value}}}"']
  for flag, why in XLA_FLAGS:
    lines += _comment(f"{flag}: {why}.")
  xla = " ".join(flag for flag, _ in XLA_FLAGS)
  lines += [
      "# Flags already in XLA_FLAGS come last, so they win.",
      f'export XLA_FLAGS="{xla}${{XLA_FLAGS:+ $XLA_FLAGS}}"',
      "",
      f"PYTHON={shlex.quote(args.python)}",
      "# The coordinator: the first node of the allocation (process 0's).",
      'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
      f'export ANKH3_COORDINATOR="${{NODES[0]}}:{args.coordinator_port}"',
      "# The installed package's gin tree, as the TPU launcher passes it.",
      'GIN_SEARCH_PATH="$("$PYTHON" -m ankh3_tasks.gin_search_path)"',
      'echo "$(date -u) job $SLURM_JOB_ID: ${SLURM_NTASKS:-?} processes,'
      ' coordinator $ANKH3_COORDINATOR"',
      "",
      "# Each task: GPU $SLURM_LOCALID of its node (JAX's own SLURM",
      "# detection picks the same), its index and the count from SLURM.",
      "# --kill-on-bad-exit: one failed process ends the step rather than",
      "# leaving the others blocked in a collective.",
  ]
  per_process = (
      'export JAX_LOCAL_DEVICE_IDS="$SLURM_LOCALID"; exec "$0" -m t5x.train'
      ' --multiprocess_gpu --coordinator_address="$ANKH3_COORDINATOR"'
      ' --process_count="$SLURM_NTASKS" --process_index="$SLURM_PROCID" "$@"'
  )
  srun = [
      "srun",
      f"--ntasks-per-node={args.gpus_per_node}",
      "--kill-on-bad-exit=1",
      *args.srun_option,
      "bash",
      "-c",
      per_process,
  ]
  train = t5x_args.t5x_argv(args.gin_file, overrides, extra)
  lines.append(
      " \\\n  ".join([
          shlex.join(srun),
          '"$PYTHON"',
          '--gin_search_paths="$GIN_SEARCH_PATH"',
          *(shlex.quote(a) for a in train),
      ])
  )
  return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m tpu_launch.slurm",
      description=__doc__.split("\n")[0],
      parents=[
          t5x_args.train_options(
              gin_file_help="gin file for t5x.train (repeatable, in order)",
              env_help="environment variable for every process (repeatable)",
          )
      ],
      epilog=(
          "Also: any number of --gin.NAME=VALUE overrides, and after -- any"
          " other t5x.train flags; both reach t5x.train unchanged."
      ),
  )
  parser.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
  parser.add_argument(
      "--gpus_per_node",
      type=int,
      default=8,
      help="GPUs per node, one T5X process each (default 8)",
  )
  parser.add_argument("--partition", default=None, help="SLURM partition")
  parser.add_argument("--account", default=None, help="SLURM account")
  parser.add_argument(
      "--time", default=None, help="wall-clock limit, e.g. 48:00:00"
  )
  parser.add_argument("--job_name", default="ankh3", help="(default ankh3)")
  parser.add_argument(
      "--python",
      default="python3",
      help="the interpreter on the nodes (default: python3 on the job's PATH)",
  )
  parser.add_argument(
      "--coordinator_port",
      type=int,
      default=DEFAULT_PORT,
      help=f"coordinator port on the first node (default {DEFAULT_PORT})",
  )
  parser.add_argument(
      "--sbatch_option",
      action="append",
      default=[],
      help="another #SBATCH option, e.g. --qos=high (repeatable)",
  )
  parser.add_argument(
      "--srun_option",
      action="append",
      default=[],
      help="another srun option, e.g. --container-image=IMAGE (repeatable)",
  )
  parser.add_argument(
      "--dry_run",
      action="store_true",
      help="print the batch script; submit nothing",
  )
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Writes the batch script and submits it; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = _parser()
  try:
    launcher, overrides, extra = t5x_args.split_args(argv)
  except ValueError as e:
    parser.error(str(e))
  args = parser.parse_args(launcher)
  try:
    script = batch_script(args, overrides, extra)
  except ValueError as e:
    parser.error(str(e))
  if args.dry_run:
    sys.stdout.write(script)
    return 0
  submitted = subprocess.run(["sbatch"], input=script, text=True, check=False)
  return submitted.returncode


if __name__ == "__main__":
  sys.exit(main())
