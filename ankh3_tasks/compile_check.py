r"""Compiles T5X's train step for a TPU slice, on a machine with no TPU.

  python -m ankh3_tasks.compile_check \
    --gin_file=gin/experiments/ankh3_large_pretrain.gin --topology=v4-128
  python -m ankh3_tasks.compile_check \
    --gin_file=gin/experiments/ankh3_xl_pretrain.gin --search_microbatches
  python -m ankh3_tasks.compile_check \
    --gin_file=gin/experiments/ankh3_tiny_sample.gin --topology=v4-8 --json

With libtpu at hand (`bash tools/setup.sh --libtpu`), JAX makes
compile-only devices of a TPU slice on a CPU host
(`jax.experimental.topologies.get_topology_desc`). This command builds the
train step from the gin files as `t5x.train` does (gin's `train.partitioner`,
`trainer.Trainer` with its `num_microbatches` and learning-rate schedule,
T5X's `TrainStateInitializer`; T5X's own mesh construction, given the slice's
devices), lowers it on the abstract train state and a batch of
`BATCH_SIZE` rows of `TASK_FEATURE_LENGTHS`, compiles it with the TPU compiler
and prints what one chip needs: arguments, temporaries, outputs, generated
code and the compiler's peak, against the chip's memory (FITS or DOES NOT
FIT), and the compiler's FLOPs beside the planner's model FLOPs. Nothing is
allocated but the compiler's own memory.

`--search_microbatches` compiles NUM_MICROBATCHES = 1, 2, 4, ... (those
that divide the rows a data replica holds) and reports the fewest that fit
with `--margin` to spare. Compiling Large or XL takes minutes and several GB (docs/plan.md).

Exit status: 0 compiled (fitting or not), 1 refused (no libtpu, an unknown
topology, a batch or mesh T5X or XLA refuses), 2 bad arguments.
"""

import argparse
from collections.abc import Iterator, Mapping, Sequence
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import time
from typing import Any, Optional

from ankh3_tasks import cli
from ankh3_tasks import hardware
from ankh3_tasks import t5x_adapter

_GIB = 2**30
INSTALL_HINT = (
    "compile_check needs libtpu (the build jax[tpu]==0.10.2 pins, about 210 "
    "MB): bash tools/setup.sh --libtpu (into the environment's opt/libtpu, "
    "off the import path), or pip install \"libtpu==0.0.42.*\""
)
# Where `tools/setup.sh --libtpu` puts libtpu, under the environment's
# prefix: outside site-packages, so JAX in other commands never loads it.
LIBTPU_DIR = os.path.join("opt", "libtpu")
# Chips of a slice as `get_topology_desc` names them ("4x4x4"), by chip
# count; v4 and v5p run one JAX device per chip (megacore), four chips a
# host; v5e and v6e chips have one TensorCore.
_CUBE = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4",
         128: "4x4x8"}
_SQUARE = {4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
           256: "16x16"}


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """A TPU slice as the compiler and the planner see it.

  Attributes:
    topology: the planner's row (`hardware.TOPOLOGIES`): chips and memory.
    family: `v4`, `v5p`, `v5e` or `v6e`, as `get_topology_desc` names it.
    chips: e.g. "4x4x4".
    chip_config_name: "megacore" for v4 and v5p (one device a chip), else
      "default".
  """

  topology: hardware.Topology
  family: str
  chips: str
  chip_config_name: str


def tpu_slices() -> dict[str, TpuSlice]:
  """Every TPU row of `hardware.TOPOLOGIES` this command can compile for."""
  slices = {}
  for name, topology in hardware.TOPOLOGIES.items():
    family = name.split("-")[0]
    if family in ("v4", "v5p") and topology.devices in _CUBE:
      slices[name] = TpuSlice(
          topology, family, _CUBE[topology.devices], "megacore"
      )
    elif family in ("v5e", "v6e") and topology.devices in _SQUARE:
      slices[name] = TpuSlice(
          topology, family, _SQUARE[topology.devices], "default"
      )
  return slices


def libtpu_path() -> Optional[str]:
  """libtpu.so: $TPU_LIBRARY_PATH, an importable libtpu, or the side install.

  The side install is `tools/setup.sh --libtpu`'s, `sys.prefix/opt/libtpu`;
  None where there is none.
  """
  path = os.environ.get("TPU_LIBRARY_PATH")
  if path and os.path.isfile(path):
    return path
  spec = importlib.util.find_spec("libtpu")
  if spec is not None and spec.submodule_search_locations:
    for location in spec.submodule_search_locations:
      candidate = os.path.join(location, "libtpu.so")
      if os.path.isfile(candidate):
        return candidate
  candidate = os.path.join(sys.prefix, LIBTPU_DIR, "libtpu", "libtpu.so")
  return candidate if os.path.isfile(candidate) else None


def slice_devices(tpu: TpuSlice) -> list[Any]:
  """The compile-only devices of `tpu` (needs libtpu)."""
  # pylint: disable-next=g-import-not-at-top
  from jax.experimental import topologies

  path = libtpu_path()
  if path is None:
    raise ValueError(INSTALL_HINT)
  # JAX loads the TPU plugin from here (jax._src.cloud_tpu_init).
  os.environ["TPU_LIBRARY_PATH"] = path
  # libtpu asks the environment for the slice it runs on; on a CPU host
  # there is none, and it would log that each time.
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", tpu.topology.name)
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  # libtpu takes a lock file for the one process that may drive a real TPU;
  # compile-only devices drive none, so several checks may run at once.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  description = topologies.get_topology_desc(
      platform="tpu",
      topology_name=f"{tpu.family}:{tpu.chips}",
      chip_config_name=tpu.chip_config_name,
      chips_per_host_bounds=(2, 2, 1),
      num_slices=1,
  )
  devices = list(description.devices)
  if len(devices) != tpu.topology.devices:
    raise ValueError(
        f"libtpu made {len(devices)} devices for {tpu.topology.name}; "
        f"expected {tpu.topology.devices}"
    )
  return devices


@contextlib.contextmanager
def _as_the_devices(devices: Sequence[Any]) -> Iterator[None]:
  """T5X's mesh code sees `devices` as this process's JAX devices.

  T5X builds its mesh from `jax.devices()` and `jax.local_devices()`; here
  they are the slice's compile-only devices, process 0's being the local
  ones, as on the first host of the slice.
  """
  import jax  # pylint: disable=g-import-not-at-top

  local = [d for d in devices if d.process_index == 0]
  saved = {
      name: getattr(jax, name)
      for name in ("devices", "local_devices", "device_count",
                   "local_device_count", "process_count")
  }
  jax.devices = lambda backend=None: list(devices)
  jax.local_devices = lambda process_index=None, backend=None, host_id=None: (
      list(local)
  )
  jax.device_count = lambda backend=None: len(devices)
  jax.local_device_count = lambda backend=None: len(local)
  jax.process_count = lambda backend=None: (
      1 + max(d.process_index for d in devices)
  )
  try:
    yield
  finally:
    for name, value in saved.items():
      setattr(jax, name, value)


_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_OUT_OF_MEMORY = re.compile(
    r"RESOURCE_EXHAUSTED: (Ran out of memory in memory space \w+|Ran out of "
    r"memory on HBM)?.*?required for ([\w ]+?) \(([\d.]+)([KMGT])\) exceeds "
    r"available \w+ \(([\d.]+)([KMGT])\)",
    re.DOTALL,
)


def out_of_memory(message: str) -> Optional[dict[str, Any]]:
  """What the TPU compiler's out-of-memory error says; None for another.

  `RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required
  for HLO temporaries (54.53G) exceeds available HBM (30.75G).` ->
  `{"required": 54.53 GiB, "available": 30.75 GiB, "message": ...}` (bytes).
  """
  found = _OUT_OF_MEMORY.search(message)
  if found is None:
    return None
  _, what, required, unit, available, available_unit = found.groups()
  first_line = message[found.start():].split("\n", 1)[0].strip()
  return {
      "what": what,
      "required": int(float(required) * _UNITS[unit]),
      "available": int(float(available) * _UNITS[available_unit]),
      "message": first_line,
  }


def _flops(compiled: Any) -> Optional[float]:
  costs = compiled.cost_analysis()
  if isinstance(costs, (list, tuple)):
    costs = costs[0] if costs else {}
  flops = (costs or {}).get("flops")
  return None if flops is None else float(flops)


def compile_train_step(
    gin_files: Sequence[str],
    bindings: Sequence[str],
    tpu: TpuSlice,
    search_paths: Sequence[str] = (),
) -> dict[str, Any]:
  """Compiles the gin files' train step for `tpu`; what one chip needs.

  Args:
    gin_files: as for `t5x.train`.
    bindings: `NAME = VALUE` strings after the files.
    tpu: the slice (`tpu_slices()`).
    search_paths: extra gin search paths.

  Returns:
    A JSON-ready dict: the mesh, rows, microbatches, memory in bytes
    (`arguments`, `outputs`, `aliased`, `temporaries`, `code`, `peak`),
    `usable` and `fits`, the compiler's and the planner's FLOPs per chip,
    and the seconds to lower and to compile.

  Raises:
    ValueError: a batch or mesh that does not divide, a gin file without
      MODEL, BATCH_SIZE or TASK_FEATURE_LENGTHS.
  """
  # pylint: disable=g-import-not-at-top
  import jax

  from ankh3_tasks import plan

  # pylint: enable=g-import-not-at-top
  devices = slice_devices(tpu)
  with t5x_adapter.parsed_gin(gin_files, bindings, search_paths):
    model = t5x_adapter.query("MODEL/macro.value")
    settings = t5x_adapter.settings()
    for name, what in (
        (model, "MODEL"),
        (settings["batch_size"], "BATCH_SIZE"),
        (settings["inputs_length"], "TASK_FEATURE_LENGTHS"),
    ):
      if name is None:
        raise ValueError(f"The gin files {list(gin_files)} set no {what}.")
    rows = settings["batch_size"]
    inputs, targets = settings["inputs_length"], settings["targets_length"]
    microbatches = settings["microbatches"] or 1
    batch = t5x_adapter.abstract_batch(rows, inputs, targets)
    trainer_cls = t5x_adapter.query("train.trainer_cls")
    with _as_the_devices(devices):
      partitioner = t5x_adapter.query("train.partitioner")
      mesh = partitioner.mesh  # T5X's own construction, cached.
      shape = dict(mesh.shape)
      data_ways = math.prod(
          n for axis, n in shape.items() if axis != "model"
      )
      if rows % data_ways:
        raise ValueError(
            f"BATCH_SIZE {rows} does not divide over the {data_ways}-way "
            f"data axis of {tpu.topology.name}'s mesh {shape}."
        )
      if (rows // data_ways) % microbatches:
        raise ValueError(
            f"NUM_MICROBATCHES {microbatches} does not divide the "
            f"{rows // data_ways} rows of a data replica."
        )
      initializer = t5x_adapter.train_state_initializer(
          model, batch, partitioner
      )
      state = initializer.global_train_state_shape
      trainer = trainer_cls.scoped_configurable_fn(
          model=model,
          train_state=state,
          partitioner=partitioner,
          train_state_axes=initializer.train_state_axes,
          eval_names=[],
          summary_dir=None,
          rng=jax.random.PRNGKey(0),
      )
      refusal = None
      try:
        start = time.monotonic()
        # pylint: disable-next=protected-access
        lowered = trainer._partitioned_train_step.lower(state, batch)
        lowered_s = time.monotonic() - start
        start = time.monotonic()
        try:
          compiled = lowered.compile()
        except jax.errors.JaxRuntimeError as e:
          refusal = out_of_memory(str(e))
          if refusal is None:
            raise
        compiled_s = time.monotonic() - start
      finally:
        trainer.close()
    cfg = model.module.config
    rules = partitioner._logical_axis_rules  # pylint: disable=protected-access
  estimate = _planner_estimate(
      model, dict(shape), tuple(rules), tpu, rows, inputs, targets,
      microbatches,
  )
  usable = tpu.topology.usable_bytes
  if refusal is None:
    stats = compiled.memory_analysis()
    memory = {
        "arguments": stats.argument_size_in_bytes,
        "outputs": stats.output_size_in_bytes,
        "aliased": stats.alias_size_in_bytes,
        "temporaries": stats.temp_size_in_bytes,
        "code": stats.generated_code_size_in_bytes,
        "peak": stats.peak_memory_in_bytes,
    }
    flops = _flops(compiled)
  else:
    # The compiler stops at the first buffer class that overflows: what it
    # names is a lower bound of the peak.
    memory = {"refused": refusal["message"], "required": refusal["required"],
              "peak": None}
    usable = refusal["available"] or usable
    flops = None
  model_flops = plan.model_flops(cfg, rows, inputs, targets)["train"]
  return {
      "topology": tpu.topology.name,
      "devices": len(devices),
      "device_kind": devices[0].device_kind,
      "mesh": shape,
      "batch_size": rows,
      "inputs_length": inputs,
      "targets_length": targets,
      "rows_per_replica": rows // data_ways,
      "microbatches": microbatches,
      "memory": memory,
      "usable": usable,
      "hbm": tpu.topology.hbm_bytes,
      "fits": refusal is None and memory["peak"] <= usable,
      "compiler_flops_per_chip": flops,
      "model_flops_per_chip": model_flops / len(devices),
      # The step's FLOPs by the compiler (the loop body times the
      # microbatches) over the planner's matmuls. The non-matmul ops add a
      # few percent; more than the same run at more microbatches means the
      # compiler recomputes activations to fit (its own rematerialisation).
      "flops_ratio": (
          None
          if flops is None
          else flops * microbatches * len(devices) / model_flops
      ),
      "planner_estimate": estimate,
      "lower_seconds": round(lowered_s, 1),
      "compile_seconds": round(compiled_s, 1),
  }


def _planner_estimate(
    model: Any,
    shape: Mapping[str, int],
    rules: Sequence[Any],
    tpu: TpuSlice,
    rows: int,
    inputs: int,
    targets: int,
    microbatches: int,
) -> Optional[int]:
  """`python -m ankh3_tasks.plan`'s total bytes per device for the same run."""
  from ankh3_tasks import plan  # pylint: disable=g-import-not-at-top

  try:
    result = plan.plan_run(
        model.module.config,
        plan.state_sizes(model, shape, rules),
        tpu.topology,
        batch_size=rows,
        inputs_length=inputs,
        targets_length=targets,
        num_partitions=shape.get("model", 1),
        microbatches=microbatches,
        activation_shards=plan.activation_shards(shape, rules),
    )
  except ValueError:
    return None
  return result["memory"]["total"]


def search_microbatches(
    gin_files: Sequence[str],
    bindings: Sequence[str],
    tpu: TpuSlice,
    margin: float,
    search_paths: Sequence[str] = (),
    report: Any = None,
) -> dict[str, Any]:
  """The fewest NUM_MICROBATCHES (1, 2, 4, ...) that fit with `margin`.

  Compiles each power of two up to the rows of a data replica, from the
  fewest, and stops at the first whose peak is at most `(1 - margin)` of
  the chip's usable memory.

  Args:
    gin_files: as for `t5x.train`.
    bindings: `NAME = VALUE` strings after the files (a NUM_MICROBATCHES
      among them is replaced).
    tpu: the slice.
    margin: share of the usable memory to leave free, in [0, 1).
    search_paths: extra gin search paths.
    report: called with each result as it comes (for progress).

  Returns:
    {"fewest": count or None, "margin", "tried": [results]}.
  """
  tried = []
  count = 1
  while True:
    result = compile_train_step(
        gin_files, [*bindings, f"NUM_MICROBATCHES = {count}"], tpu,
        search_paths,
    )
    tried.append(result)
    if report is not None:
      report(result)
    peak = result["memory"]["peak"]
    if peak is not None and peak <= (1 - margin) * result["usable"]:
      return {"fewest": count, "margin": margin, "tried": tried}
    rows = result["rows_per_replica"]
    count *= 2
    while count <= rows and rows % count:  # Only counts that divide.
      count *= 2
    if count > rows:
      return {"fewest": None, "margin": margin, "tried": tried}


def _gib(n: float) -> str:
  if n < _GIB / 10:
    return f"{n / 2**20:.1f} MiB"
  return f"{n / _GIB:.2f} GiB"


def format_result(result: Mapping[str, Any]) -> str:
  """The human-readable report of one compile."""
  m = result["memory"]
  mesh = " x ".join(f"{n} {axis}" for axis, n in result["mesh"].items())
  lines = [
      f"topology     {result['topology']}: {result['devices']} "
      f"{result['device_kind']} devices, mesh {mesh}",
      f"batch        {result['batch_size']:,} rows x "
      f"({result['inputs_length']} + {result['targets_length']}); "
      f"{result['rows_per_replica']} rows per data replica in "
      f"{result['microbatches']} microbatch(es)",
      f"compiled     lowered in {result['lower_seconds']} s, compiled in "
      f"{result['compile_seconds']} s (the TPU compiler, on this host)",
  ]
  if m["peak"] is None:
    lines += [
        "memory per chip: the TPU compiler refused the step",
        f"  {m['refused']}",
        f"  DOES NOT FIT: needs at least {_gib(m['required'])} of "
        f"{_gib(result['usable'])}",
    ]
  else:
    lines += [
        "memory per chip (the TPU compiler's buffer assignment)",
        f"  arguments              {_gib(m['arguments']):>12}",
        f"  outputs                {_gib(m['outputs']):>12}"
        f"  ({_gib(m['aliased'])} aliased to arguments)",
        f"  temporaries            {_gib(m['temporaries']):>12}",
        f"  generated code         {_gib(m['code']):>12}",
        f"  peak                   {_gib(m['peak']):>12}",
        f"  {'FITS' if result['fits'] else 'DOES NOT FIT'} in "
        f"{_gib(result['usable'])} usable of {_gib(result['hbm'])}",
    ]
  if result["planner_estimate"] is not None:
    lines.append(
        f"  (the planner's estimate: {_gib(result['planner_estimate'])})"
    )
  flops = result["compiler_flops_per_chip"]
  model = result["model_flops_per_chip"]
  if flops is not None:
    note = ""
    if result["microbatches"] > 1:
      note = (
          f" (the microbatch loop's body counted once: x "
          f"{result['microbatches']} = {flops * result['microbatches']:.3g})"
      )
    lines.append(f"FLOPs per chip per step: compiler {flops:.3g}{note}")
  lines.append(f"FLOPs per chip per step: planner's model {model:.3g}")
  if result["flops_ratio"] is not None:
    lines.append(
        f"compiler / model FLOPs per step: {result['flops_ratio']:.3f} "
        "(docs/plan.md: when it means recomputation)"
    )
  return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
  slices = tpu_slices()
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.compile_check",
      description=__doc__.split("\n")[0],
      epilog=(
          "Gin bindings as T5X takes them: --gin.NAME=VALUE, e.g. "
          "--gin.NUM_MICROBATCHES=4. Exit status: 0 compiled (fitting or "
          "not), 1 refused, 2 bad arguments."
      ),
  )
  t5x_adapter.add_gin_flags(parser)
  parser.add_argument(
      "--topology",
      default="v4-128",
      type=lambda name: name.replace("v5litepod-", "v5e-", 1),
      help=f"one of {', '.join(slices)} (default v4-128)",
  )
  parser.add_argument(
      "--search_microbatches",
      action="store_true",
      help="compile NUM_MICROBATCHES = 1, 2, 4, ... and report the fewest "
      "that fit",
  )
  parser.add_argument(
      "--margin",
      type=float,
      default=0.05,
      help="with --search_microbatches: share of the chip's usable memory "
      "to leave free (default 0.05)",
  )
  parser.add_argument("--json", action="store_true", help="print JSON")
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    argv, bindings = t5x_adapter.split_gin_flags(argv)
  except ValueError as e:
    parser.error(str(e))
  args = parser.parse_args(argv)
  if not 0 <= args.margin < 1:
    parser.error(f"--margin is a share of the memory, got {args.margin}")
  slices = tpu_slices()
  if args.topology not in slices:
    print(
        f"refused: unknown topology {args.topology!r}; compile_check knows "
        f"{', '.join(slices)}",
        file=sys.stderr,
    )
    return 1
  if libtpu_path() is None:
    print(f"refused: {INSTALL_HINT}", file=sys.stderr)
    return 1
  # The compile-only devices need no TPU backend: JAX runs on the CPU here,
  # also on a TPU VM, whose chips this leaves alone.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  search = [p for p in args.gin_search_paths.split(",") if p]
  tpu = slices[args.topology]

  from absl import logging  # pylint: disable=g-import-not-at-top

  # T5X logs the mesh and Adafactor one line per parameter: quiet for this
  # command only, as the planner does.
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    if args.search_microbatches:

      def progress(result):
        if args.json:
          return
        peak = result["memory"]["peak"]
        if peak is None:
          said = (
              f"refused, needs at least {_gib(result['memory']['required'])}"
          )
        else:
          said = f"peak {_gib(peak)}"
        print(
            f"NUM_MICROBATCHES = {result['microbatches']}: {said} of "
            f"{_gib(result['usable'])} ({result['compile_seconds']} s to "
            "compile)",
            flush=True,
        )

      found = search_microbatches(
          args.gin_file, bindings, tpu, args.margin, search, progress
      )
      if args.json:
        print(json.dumps(found, indent=2))
      else:
        print(format_result(found["tried"][-1]))
        if found["fewest"] is None:
          print(
              f"no NUM_MICROBATCHES up to {found['tried'][-1]['microbatches']}"
              f" fits with {args.margin:.0%} to spare"
          )
        else:
          print(
              f"fewest NUM_MICROBATCHES that fit with {args.margin:.0%} to "
              f"spare: {found['fewest']}"
          )
      return 0
    result = compile_train_step(args.gin_file, bindings, tpu, search)
  except ValueError as e:
    print(f"refused: {e}", file=sys.stderr)
    return 1
  finally:
    logging.set_verbosity(previous)
  print(json.dumps(result, indent=2) if args.json else format_result(result))
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
