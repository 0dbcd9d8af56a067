r"""Measures T5X train steps of Ankh3 Large (and XL) on one GPU.

  python benchmarks/gpu_step.py                       # on an H200: Large, XL
  python benchmarks/gpu_step.py --topology=1xH100 --models=large
  python benchmarks/gpu_step.py --models=tiny --steps=2 --topology=cpu

For each model (gin/models/ankh3_{large,xl,tiny}.gin at the lengths of
gin/experiments/ankh3_large_pretrain.gin, or ankh3_tiny_sample.gin for
tiny), the script picks the batch: the largest power of two rows whose
memory, by the planner's ESTIMATE for the `--topology` (ankh3_tasks/plan.py,
no microbatches, `--mem_fraction` of the GPU), fits; or `--batch_sizes`. It
then builds and times T5X's own train step with benchmarks/train_step.py's
`measure` (T5X's `TrainStateInitializer`, `Trainer.compile_train`, the
compiled step on synthetic packed batches), halving the batch when the GPU
runs out of memory. It prints compile time, median step time, tokens/s,
model FLOPs/s (`plan.model_flops`: matmuls only), MFU against the
topology's dense bf16 peak, and memory: the device's peak bytes in use (GPU
only; jax `memory_stats`) beside the planner's estimate. On `--topology=cpu`
(a check of the script, not a benchmark) the batch is the run file's and
there is no peak, so no MFU.

XLA_PYTHON_CLIENT_MEM_FRACTION is set to `--mem_fraction` (default 0.9, as
`python -m tpu_launch.slurm` sets it) before JAX starts, and the XLA flags of
tpu_launch/slurm.py are added to XLA_FLAGS. `--time_budget_s` (default 420)
skips models that would start after it. docs/gpu.md: not yet run on a GPU.
"""

import argparse
import gc
import json
import os
import sys
import time
from typing import Any, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)

MODELS = {
    "tiny": (
        "gin/models/ankh3_tiny.gin",
        "gin/experiments/ankh3_tiny_sample.gin",
    ),
    "large": (
        "gin/models/ankh3_large.gin",
        "gin/experiments/ankh3_large_pretrain.gin",
    ),
    "xl": (
        "gin/models/ankh3_xl.gin",
        "gin/experiments/ankh3_large_pretrain.gin",
    ),
}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
      "--models", default="large,xl", help="comma-separated: tiny, large, xl"
  )
  parser.add_argument(
      "--topology",
      default="1xH200",
      help="planner row for the memory estimate and the peak (1xH100,"
      " 1xH200), or `cpu` (no peak)",
  )
  parser.add_argument("--mem_fraction", type=float, default=0.9)
  parser.add_argument(
      "--batch_sizes",
      default="",
      help="comma-separated rows to try, largest first (default: planner)",
  )
  parser.add_argument(
      "--max_batch", type=int, default=1024, help="largest batch tried"
  )
  parser.add_argument("--attempts", type=int, default=3)
  # What benchmarks/train_step.py's `measure` reads.
  parser.add_argument("--steps", type=int, default=5, help="timed steps")
  parser.add_argument("--warmup_steps", type=int, default=1)
  parser.add_argument("--batches", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--time_budget_s", type=float, default=420.0)
  parser.add_argument("--json", default="", help="also write rows here")
  return parser


def _run_settings(run_gin: str) -> tuple[int, int, int]:
  """(inputs length, targets length, batch) as the run file sets them."""
  from ankh3_tasks import t5x_adapter  # pylint: disable=g-import-not-at-top

  settings = t5x_adapter.load_gin([run_gin], search_paths=[_REPO]).settings
  return (
      settings["inputs_length"],
      settings["targets_length"],
      settings["batch_size"],
  )


def planned_bytes(model: Any, batch: int, inputs: int, targets: int) -> int:
  """The planner's memory ESTIMATE of one device at `batch` rows."""
  from ankh3_tasks import plan  # pylint: disable=g-import-not-at-top

  cfg = model.module.config
  state = plan.state_sizes(model, {"data": 1, "model": 1}, ())
  per_row = plan.activation_bytes_per_row(cfg, inputs, targets)["total"]
  return plan.memory_bytes(
      weights=state.weights,
      optimizer=state.optimizer,
      activations_per_row=per_row,
      rows=batch,
      microbatches=1,
  )["total"]


def candidate_batches(
    model: Any, topology: Any, inputs: int, targets: int, max_batch: int
) -> list[int]:
  """Powers of two, largest first, from the largest the planner fits."""
  batch = max_batch
  while batch > 1 and (
      planned_bytes(model, batch, inputs, targets) > topology.usable_bytes
  ):
    batch //= 2
  out = []
  while batch >= 1:
    out.append(batch)
    batch //= 2
  return out


def _out_of_memory(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text


def _device_peak_bytes() -> Optional[int]:
  import jax  # pylint: disable=g-import-not-at-top

  stats = jax.local_devices()[0].memory_stats()
  return None if not stats else stats.get("peak_bytes_in_use")


def run_model(name: str, args: argparse.Namespace, topology: Any) -> dict:
  """Measures one model at the largest batch that runs; returns a row."""
  import jax  # pylint: disable=g-import-not-at-top

  import train_step  # pylint: disable=g-import-not-at-top

  model_gin, run_gin = MODELS[name]
  model = train_step.build_model(model_gin)
  inputs, targets, run_batch = _run_settings(run_gin)
  if args.batch_sizes:
    batches = [int(b) for b in args.batch_sizes.split(",") if b]
  elif args.topology == "cpu":
    batches = [min(run_batch, args.max_batch)]  # No search on a CPU.
  else:
    batches = candidate_batches(
        model, topology, inputs, targets, args.max_batch
    )
  tried = []
  for batch in batches[: args.attempts]:
    print(f"[{name}] batch {batch}: compiling ...", file=sys.stderr, flush=True)
    try:
      row = train_step.measure(name, model, batch, inputs, targets, args)
    except Exception as e:  # pylint: disable=broad-except
      if not _out_of_memory(e):
        raise
      tried.append(batch)
      print(f"[{name}] batch {batch}: out of memory", file=sys.stderr)
      gc.collect()
      jax.clear_caches()
      continue
    row["batch"] = batch
    row["out_of_memory_at"] = tried
    row["device_peak_bytes"] = _device_peak_bytes()
    row["planned_bytes"] = planned_bytes(model, batch, inputs, targets)
    return row
  return {"config": name, "out_of_memory_at": tried, "batch": None}


def _gib(n: Optional[float]) -> str:
  return "n/a" if n is None else f"{n / 2**30:.1f}"


def main(argv: Optional[list[str]] = None) -> int:
  args = _parser().parse_args(argv)
  os.environ.setdefault(
      "XLA_PYTHON_CLIENT_MEM_FRACTION", str(args.mem_fraction)
  )
  sys.path.insert(0, _HERE)  # benchmarks/train_step.py
  sys.path.insert(0, _REPO)
  from tpu_launch import slurm  # pylint: disable=g-import-not-at-top

  if args.topology != "cpu":
    flags = " ".join(flag for flag, _ in slurm.XLA_FLAGS)
    os.environ["XLA_FLAGS"] = f"{flags} {os.environ.get('XLA_FLAGS', '')}"

  from absl import logging  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import hardware  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.ERROR)
  if args.topology == "cpu":
    # Memory for the batch choice: what the planner gives a 1xH100; no peak.
    topology = hardware.TOPOLOGIES["1xH100"]
    peak = None
  else:
    topology = hardware.with_mem_fraction(
        hardware.TOPOLOGIES[args.topology], args.mem_fraction
    )
    peak = topology.peak_flops
  device = jax.local_devices()[0]
  where = (
      "no peak FLOP/s (CPU)"
      if peak is None
      else f"planner row {topology.name}, {_gib(topology.usable_bytes)} GiB"
      f" usable at mem fraction {args.mem_fraction}, {peak / 1e12:g} TFLOP/s"
      " bf16 peak"
  )
  print(
      f"jax {jax.__version__}, backend {jax.default_backend()}, device"
      f" {device.device_kind}; {where}; {args.steps} timed steps after"
      f" {args.warmup_steps} untimed"
  )
  start = time.monotonic()
  rows = []
  for name in [m for m in args.models.split(",") if m]:
    if name not in MODELS:
      sys.exit(f"unknown model {name!r}; use {', '.join(MODELS)}")
    if time.monotonic() - start > args.time_budget_s:
      print(f"[{name}] skipped: past --time_budget_s", file=sys.stderr)
      continue
    rows.append(run_model(name, args, topology))

  print()
  print(
      "| model | batch x (inputs + targets) | compile s | step s |"
      " tokens/s | model TFLOP/s | MFU | peak GiB (device) | planner GiB |"
  )
  print("|" + "---|" * 9)
  for r in rows:
    if r["batch"] is None:
      print(
          f"| {r['config']} | out of memory at {r['out_of_memory_at']} |"
          + " |" * 7
      )
      continue
    tflops = r["flops"] / r["step_s"] / 1e12
    mfu = "n/a" if peak is None else f"{r['flops'] / r['step_s'] / peak:.1%}"
    print(
        f"| {r['config']} | {r['shape']} | {r['compile_s']:.1f} |"
        f" {r['step_s']:.3f} | {r['tokens_s']:,.0f} | {tflops:.3g} | {mfu} |"
        f" {_gib(r['device_peak_bytes'])} | {_gib(r['planned_bytes'])} |"
    )
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2, default=str)
  return 0


if __name__ == "__main__":
  sys.exit(main())
