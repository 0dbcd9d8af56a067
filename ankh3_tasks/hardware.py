"""What the planner and the launchers know of accelerators (stdlib only).

One place for the facts both `ankh3_tasks.plan` (memory and FLOPs per
device) and `tpu_launch` (chips and hosts of a slice) need: a TPU v4-N slice
has N TensorCores, two per chip, each chip one JAX device, four chips per
host; H100 and H200 GPUs' memory and bf16 peak; XLA's default share of a
GPU's memory.

  hardware.TOPOLOGIES["v4-128"].devices      # 64 chips
  hardware.tpu_chips("v4", 128), hardware.tpu_hosts("v4", 128)   # 64, 16
"""

import dataclasses

_GIB = 2**30
# TPU families whose accelerator types (`v4-128`) count TensorCores, two per
# chip; the others (`v5litepod-16`, `v6e-8`) count chips.
TENSORCORE_FAMILIES = frozenset({"v2", "v3", "v4", "v5p"})
CHIPS_PER_HOST = 4


def tpu_chips(family: str, size: int) -> int:
  """Chips (JAX devices) of a TPU slice `FAMILY-SIZE`, e.g. 64 for v4-128."""
  if family in TENSORCORE_FAMILIES:
    return max(1, size // 2)
  return size


def tpu_hosts(family: str, size: int) -> int:
  """TPU VM hosts of a slice `FAMILY-SIZE`: one up to 8, else 4 chips each."""
  if size <= 8:
    return 1
  return tpu_chips(family, size) // CHIPS_PER_HOST


@dataclasses.dataclass(frozen=True)
class Topology:
  """A slice or host, as a planner sees it.

  Attributes:
    name: what `--topology` takes.
    devices: JAX devices (TPU v4 and v5e: chips; GPUs).
    hbm_bytes: memory per device, as sold.
    usable_bytes: what one program can use per device.
    peak_flops: dense bfloat16 FLOP/s per device.
    kind: a word for the device.
  """

  name: str
  devices: int
  hbm_bytes: int
  usable_bytes: int
  peak_flops: float
  kind: str


def _tpu_v4(tensorcores: int) -> Topology:
  # cloud.google.com/tpu/docs/v4: a v4-N slice has N TensorCores, two per
  # chip, run as one JAX device per chip (megacore); 32 GiB HBM2 and 275
  # TFLOP/s bf16 peak per chip. XLA's out-of-memory reports on v4 give the
  # capacity as 30.75G of HBM (1.25G reserved), e.g. github.com/erfanzar/
  # EasyDeL/issues/166.
  return Topology(
      f"v4-{tensorcores}",
      tpu_chips("v4", tensorcores),
      32 * _GIB,
      int(30.75 * _GIB),
      275e12,
      "TPU v4 chips",
  )


def _tpu_v5e(chips: int) -> Topology:
  # cloud.google.com/tpu/docs/v5e: a v5litepod-N slice has N chips of one
  # TensorCore; 16 GiB HBM2 and 197 TFLOP/s bf16 peak per chip. XLA's
  # reserve on v5e is not known here: usable = the full 16 GiB.
  return Topology(
      f"v5e-{chips}", chips, 16 * _GIB, 16 * _GIB, 197e12, "TPU v5e chips"
  )


def _tpu_v5p(tensorcores: int) -> Topology:
  # cloud.google.com/tpu/docs/v5p: a v5p-N slice has N TensorCores, two per
  # chip (one JAX device per chip, megacore); 95 GiB HBM2e and 459 TFLOP/s
  # bf16 peak per chip. XLA's reserve is not known here: usable = all.
  return Topology(
      f"v5p-{tensorcores}",
      tpu_chips("v5p", tensorcores),
      95 * _GIB,
      95 * _GIB,
      459e12,
      "TPU v5p chips",
  )


def _tpu_v6e(chips: int) -> Topology:
  # cloud.google.com/tpu/docs/v6e: a v6e-N slice has N chips of one
  # TensorCore; 32 GiB HBM and 918 TFLOP/s bf16 peak per chip. XLA's
  # reserve is not known here: usable = all.
  return Topology(
      f"v6e-{chips}", chips, 32 * _GIB, 32 * _GIB, 918e12, "TPU v6e chips"
  )


# JAX lets XLA take this share of a GPU's memory by default
# (XLA_PYTHON_CLIENT_MEM_FRACTION=.75); `--mem_fraction` plans with another
# (tpu_launch/slurm.py sets 0.9, docs/gpu.md).
GPU_MEM_FRACTION = 0.75


def _gpus(name: str, count: int, hbm_gib: int, peak_flops: float) -> Topology:
  # The datasheets' "80GB" and "141GB" are counted as GiB, as nvidia-smi
  # reports them to within 1%.
  return Topology(
      f"{count}x{name}",
      count,
      hbm_gib * _GIB,
      int(GPU_MEM_FRACTION * hbm_gib * _GIB),
      peak_flops,
      f"{name} {hbm_gib}GB GPUs",
  )


def gpu_devices(nodes: int, gpus_per_node: int = 8) -> int:
  """JAX devices of `nodes` GPU nodes (gin/partitioning/gpu_nodes_8.gin).

  Args:
    nodes: nodes of the job.
    gpus_per_node: GPUs per node, one JAX process each.

  Returns:
    `nodes * gpus_per_node`.

  Raises:
    ValueError: either is below 1.
  """
  if nodes < 1 or gpus_per_node < 1:
    raise ValueError(
        f"A GPU job needs at least 1 node and 1 GPU per node, got {nodes}"
        f" node(s) of {gpus_per_node}."
    )
  return nodes * gpus_per_node


# GPU counts planned for: one GPU, one node of 8, and 2, 4 and 8 such nodes.
_GPU_COUNTS = (1, 8, 16, 32, 64)

TOPOLOGIES: dict[str, Topology] = {
    t.name: t
    for t in (
        *(_tpu_v4(n) for n in (8, 16, 32, 64, 128, 256)),
        *(_tpu_v5e(n) for n in (8, 16, 32, 64, 128, 256)),
        *(_tpu_v5p(n) for n in (8, 16, 32, 64, 128, 256)),
        *(_tpu_v6e(n) for n in (8, 16, 32, 64, 128, 256)),
        # NVIDIA H100 SXM datasheet: 80 GB HBM3, 989 TFLOP/s dense bf16
        # (1,979 sparse).
        *(_gpus("H100", n, 80, 989e12) for n in _GPU_COUNTS),
        # NVIDIA H200 SXM datasheet: 141 GB HBM3e; the same 989 TFLOP/s
        # dense bf16 as the H100 SXM (the H200 NVL is rated lower).
        *(_gpus("H200", n, 141, 989e12) for n in _GPU_COUNTS),
        # NVIDIA A100 80GB datasheet: 312 TFLOP/s dense bf16.
        _gpus("A100", 8, 80, 312e12),
    )
}


def with_mem_fraction(topology: Topology, fraction: float) -> Topology:
  """A GPU topology whose usable memory is `fraction` of each GPU's.

  Args:
    topology: a GPU row of `TOPOLOGIES` (named `NxMODEL`).
    fraction: XLA_PYTHON_CLIENT_MEM_FRACTION, in (0, 1].

  Returns:
    The topology with `usable_bytes = fraction * hbm_bytes`.

  Raises:
    ValueError: a TPU topology, or a fraction outside (0, 1].
  """
  if "x" not in topology.name:
    raise ValueError(
        f"{topology.name} is not a GPU topology: XLA_PYTHON_CLIENT_MEM_FRACTION"
        " applies to GPUs only."
    )
  if not 0 < fraction <= 1:
    raise ValueError(f"Memory fraction {fraction} is not in (0, 1].")
  return dataclasses.replace(
      topology, usable_bytes=int(fraction * topology.hbm_bytes)
  )
