r"""XManager launcher: Ankh3 pretraining as a Vertex AI custom job on TPU.

  python -m tpu_launch.xm_launch --accelerator_type=v4-128 \
    --gin_file=gin/experiments/ankh3_large_pretrain.gin \
    --gin.MODEL_DIR=\"gs://BUCKET/ankh3_large\" \
    --env=ANKH3_DATA_DIR=gs://BUCKET/uniref50 [--dry_run]

or, with XManager's command (its flags end at the first `--`, absl's at the
second): `xmanager launch tpu_launch/xm_launch.py -- -- ARGS...`.

The job runs `python -m t5x.train --gin_file=... GIN_OVERRIDES... [flags
after --]` in an image built from this checkout (`python:3.11`, the package
with its `t5x` extra, `jax[tpu]` at the package's pin, T5X, airio and
jestimator at the commits of requirements/t5x-git.txt). The arguments go to
XManager as a list and from there to Vertex AI's container args: no shell
parses them, so they reach t5x.train exactly as given.

Unlike T5X's own t5x/scripts/xm_launch.py (fixed to `tpu_v2`), the TPU is
chosen by `--accelerator_type`: v2-8, v3-8 (XManager's own Vertex mapping),
v4-N and v5litepod-N. XManager 0.8's Vertex backend maps only TPU v2 and v3
to a Vertex machine, so for v4 and v5e this launcher supplies the machine
spec (machine type, accelerator type and count, TPU topology; `--dry_run`
prints it). Vertex AI documents custom training on TPU v2, v3, v5e and v6e;
TPU v4 (accelerator type TPU_V4_POD) is in its API but not in that list, so
treat v4 on Vertex AI as unverified: the TPU VM path (`python -m
tpu_launch`) is the paper's setup.

`--dry_run` prints the job as JSON and needs neither XManager nor a cloud.
"""

import argparse
import importlib
import json
import os
import shlex
import sys
from typing import Any, Sequence

from tpu_launch import accelerators
from tpu_launch import cli
from tpu_launch import gcloud
from tpu_launch import t5x_args

if "xmanager" in sys.modules:
  # Loaded by `xmanager launch`: register XManager's flags (such as the
  # --xm_launch_script it passes) before absl parses the command line.
  importlib.import_module("xmanager.xm")

BASE_IMAGE = "python:3.11"  # setup.cfg: python_requires = >=3.11,<3.13.
IMAGE_WORKDIR = "/ankh3"

# Generation -> (XManager resource, Vertex AI accelerator type).
_TPUS = {
    "v2": ("tpu_v2", "TPU_V2"),
    "v3": ("tpu_v3", "TPU_V3"),
    "v4": ("tpu_v4", "TPU_V4_POD"),
    "v5litepod": ("tpu_v5e", "TPU_V5_LITEPOD"),
}
# Slice shapes of Cloud TPU's "TPU v4" and "TPU v5e" configuration tables.
_TOPOLOGIES = {
    "v4": {
        8: "2x2x1",
        16: "2x2x2",
        32: "2x2x4",
        64: "2x4x4",
        128: "4x4x4",
        256: "4x4x8",
        512: "4x8x8",
        1024: "8x8x8",
    },
    "v5litepod": {
        1: "1x1",
        4: "2x2",
        8: "2x4",
        16: "4x4",
        32: "4x8",
        64: "8x8",
        128: "8x16",
        256: "16x16",
    },
}


def _machine_spec(
    accelerator: accelerators.Accelerator,
    topology: str | None,
    machine_type: str | None,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
  """(XManager requirements, Vertex machine spec, whether XManager lacks it)."""
  if accelerator.family not in _TPUS:
    raise ValueError(
        f"{accelerator.name}: this launcher knows "
        + ", ".join(f"{f}-N" for f in _TPUS)
    )
  resource, vertex_type = _TPUS[accelerator.family]
  if accelerator.family in ("v2", "v3"):
    if accelerator.size != 8:
      raise ValueError(
          f"{accelerator.name}: Vertex AI trains on v2-8 and v3-8 only"
      )
    spec = dict(
        machine_type=machine_type or "cloud-tpu",
        accelerator_type=vertex_type,
        accelerator_count=8,
    )
    return {resource: 8}, spec, False
  topology = topology or _TOPOLOGIES[accelerator.family].get(accelerator.size)
  if not topology:
    raise ValueError(
        f"no known topology for {accelerator.name}: pass --tpu_topology"
    )
  per_host = accelerator.chips // accelerator.hosts
  if accelerator.family == "v4":
    default_machine = "ct4p-hightpu-4t"
  else:
    default_machine = f"ct5lp-hightpu-{per_host}t"
  spec = dict(
      machine_type=machine_type or default_machine,
      accelerator_type=vertex_type,
      accelerator_count=per_host,
      tpu_topology=topology,
  )
  return {resource: topology}, spec, True


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m tpu_launch.xm_launch",
      description="Submit Ankh3 pretraining to Vertex AI with XManager.",
      allow_abbrev=False,
      parents=[
          t5x_args.train_options(
              gin_file_help=(
                  "gin file, relative to the checkout (repeatable, in order)"
              ),
              env_help="environment variable for the job (repeatable)",
          )
      ],
  )
  parser.add_argument("--accelerator_type", default=cli.DEFAULT_ACCELERATOR)
  parser.add_argument("--tpu_topology", help="default: by accelerator type")
  parser.add_argument("--machine_type", help="default: by accelerator type")
  parser.add_argument("--name", default="ankh3", help="experiment title")
  parser.add_argument("--project", help="Cloud project (default: gcloud's)")
  parser.add_argument(
      "--region", help="Vertex AI region (default: XManager's, us-central1)"
  )
  parser.add_argument("--base_image", default=BASE_IMAGE)
  parser.add_argument(
      "--repo",
      default=cli.CHECKOUT,
      help="the checkout to put in the image (default: this one)",
  )
  parser.add_argument(
      "--dry_run",
      action="store_true",
      help="print the job as JSON; needs neither XManager nor a cloud",
  )
  return parser


def job_spec(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any]]:
  """The XManager job a command line describes, as plain data.

  Args:
    argv: the launcher's arguments (flags, `--gin.NAME=VALUE`, `--` and more
      t5x.train flags).

  Returns:
    The launcher's flags, and the job as a JSON-serializable dict whose
    `job.args` is the exact t5x.train argv.

  Raises:
    ValueError: a bad configuration.
    SystemExit: a malformed command line.
  """
  launcher, overrides, extra = t5x_args.split_args(argv)
  args = _parser().parse_args(launcher)
  if not args.gin_file:
    raise ValueError("pass at least one --gin_file")
  accelerator = accelerators.parse(args.accelerator_type)
  requirements, machine, extend = _machine_spec(
      accelerator, args.tpu_topology, args.machine_type
  )
  t5x_args.check_model_dir(
      t5x_args.model_dir(overrides),
      reason="a Vertex AI job's disk is discarded when the job ends",
  )
  repo = os.path.abspath(args.repo)
  version, jax, _ = cli.read_checkout(repo)
  del version
  for path in args.gin_file:
    if not t5x_args.shippable(path):
      raise ValueError(
          f"gin file {path!r}: give gin files relative to the checkout"
          f" ({repo}), which the image holds as {IMAGE_WORKDIR}"
      )
  t5x_roots = [r for r in t5x_args.search_roots() if r[0] == "T5X"]
  t5x_args.resolve_gin_files(args.gin_file, cwd=repo, roots=t5x_roots)
  pip = ["python", "-m", "pip", "install", "--no-cache-dir"]
  return args, {
      "experiment_title": args.name,
      "executor": {
          "backend": "xm_local.Vertex",
          "project": args.project,
          "region": args.region,
          "requirements": requirements,
          "vertex_machine_spec": machine,
          "machine_spec_from": "tpu_launch" if extend else "xmanager",
      },
      "packaging": {
          "kind": "xm.python_container",
          "path": repo,
          "base_image": args.base_image,
          "docker_instructions": [
              f"COPY {os.path.basename(repo)}/ {IMAGE_WORKDIR}",
              f"WORKDIR {IMAGE_WORKDIR}",
              "RUN "
              + shlex.join(
                  [
                      *pip,
                      "-c",
                      cli.CONSTRAINTS,
                      ".[t5x]",
                      jax,
                      "-f",
                      gcloud.LIBTPU_FIND_LINKS,
                  ]
              ),
              "RUN "
              + shlex.join(
                  [*pip, "--no-deps", "-r", "requirements/t5x-git.txt"]
              ),
          ],
          "entrypoint": "python -m t5x.train",
      },
      "job": {
          "args": t5x_args.t5x_argv(args.gin_file, overrides, extra),
          "env_vars": dict(t5x_args.parse_env(args.env)),
      },
  }


def _extend_vertex(vertex: Any, xm: Any, spec: dict[str, Any]) -> None:
  """Lets XManager's Vertex backend place the job on a v4 / v5e slice."""
  machine = dict(spec["executor"]["vertex_machine_spec"])
  (resource,) = spec["executor"]["requirements"]
  wanted = xm.ResourceType[resource]
  original = vertex.get_machine_spec

  def get_machine_spec(job: Any) -> dict[str, Any]:
    if job.executor.requirements.accelerator != wanted:
      return original(job)
    accelerator_type = vertex.aip_v1.AcceleratorType[
        machine["accelerator_type"]
    ]
    return {**machine, "accelerator_type": accelerator_type}

  vertex.get_machine_spec = get_machine_spec


def launch(
    spec: dict[str, Any], *, xm: Any, xm_local: Any, vertex: Any
) -> None:
  """Submits the job `job_spec` describes.

  Args:
    spec: from `job_spec`.
    xm: the `xmanager.xm` module.
    xm_local: the `xmanager.xm_local` module.
    vertex: the `xmanager.cloud.vertex` module.
  """
  executor_spec = spec["executor"]
  if executor_spec["machine_spec_from"] == "tpu_launch":
    _extend_vertex(vertex, xm, spec)
  if executor_spec["project"] or executor_spec["region"]:
    options = {"project": executor_spec["project"]}
    if executor_spec["region"]:
      options["location"] = executor_spec["region"]
    vertex.set_default_client(vertex.Client(**options))
  packaging = spec["packaging"]
  with xm_local.create_experiment(
      experiment_title=spec["experiment_title"]
  ) as experiment:
    executor = xm_local.Vertex(
        requirements=xm.JobRequirements(**executor_spec["requirements"])
    )
    [executable] = experiment.package([
        xm.python_container(
            executor.Spec(),
            path=packaging["path"],
            base_image=packaging["base_image"],
            docker_instructions=list(packaging["docker_instructions"]),
            entrypoint=xm.ModuleName("t5x.train"),
        )
    ])
    experiment.add(
        xm.Job(
            executable=executable,
            executor=executor,
            args=list(spec["job"]["args"]),
            env_vars=dict(spec["job"]["env_vars"]),
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
  """Prints (--dry_run) or submits the job; returns the exit status.

  Args:
    argv: the program name and arguments (as `xmanager launch` and absl
      pass them); `sys.argv` if None.
  """
  argv = list(sys.argv if argv is None else argv)[1:]
  try:
    args, spec = job_spec(argv)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.dry_run:
    print(json.dumps(spec, indent=2))
    return 0
  try:
    # pylint: disable=g-import-not-at-top
    from absl import flags
    from xmanager import xm
    from xmanager import xm_local
    from xmanager.cloud import vertex
  except ImportError as e:
    print(
        f"error: {e}. The launch needs XManager (`pip install xmanager`),"
        " Docker or Cloud Build, and gcloud credentials; --dry_run needs"
        " none of them.",
        file=sys.stderr,
    )
    return 2
  if not flags.FLAGS.is_parsed():
    flags.FLAGS([sys.argv[0]])
  wrap = "xm_wrap_late_bindings"
  if wrap in flags.FLAGS and flags.FLAGS[wrap].value:
    print(
        "error: --xm_wrap_late_bindings re-splits container arguments on"
        " spaces and drops ',' '[' ']'; run without it",
        file=sys.stderr,
    )
    return 2
  launch(spec, xm=xm, xm_local=xm_local, vertex=vertex)
  return 0


if __name__ == "__main__":
  sys.exit(main())
