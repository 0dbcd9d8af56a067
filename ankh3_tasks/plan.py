r"""Plans an Ankh3 pretraining run: memory per device, FLOPs and time.

  python -m ankh3_tasks.plan \
    --gin_file=gin/experiments/ankh3_large_pretrain.gin
  python -m ankh3_tasks.plan \
    --gin_file=gin/experiments/ankh3_xl_pretrain.gin --num_partitions=4 \
    --microbatches=16 --json
  python -m ankh3_tasks.plan --gin_file=gin/models/ankh3_large.gin \
    --topology=8xH100 --batch_size=1024 --inputs_length=512 \
    --targets_length=320 --steps=4000000

The gin files give the model and, where they set them, the batch, lengths,
`num_partitions`, `NUM_MICROBATCHES` and `TRAIN_STEPS`; flags override them.
`--topology` names a row of `hardware.TOPOLOGIES` (default v4-128, the paper's slice).
A batch or dimension that does not divide the mesh, or microbatches that do
not divide a replica's rows, is refused (exit status 1) with the numbers.

Memory per device is an ESTIMATE from this model of T5X's train step:

- weights: T5X keeps parameters in float32. Each parameter is divided over
  the mesh axes its logical axes map to under the run's
  `PjitPartitioner.logical_axis_rules` (T5X's standard rules: `heads`,
  `mlp`, `vocab` and `joined_kv` over `model`; `embed` and
  `relpos_buckets` nowhere, so layer norms stay whole on every device).
  Counted parameter by parameter from the shapes and logical axes of T5X's
  own abstract train state (`jax.eval_shape`, nothing allocated).
- gradients: float32, one per weight, sharded as the weights.
- Adafactor state: the shapes of the optimizer state T5X creates for the
  model's `optimizer_def` (the factored row and column second moments of a
  matrix, a full second moment for a vector, the unused slots T5X stores as
  shape (1,), a first moment if `beta1` is set), sharded by the logical axes
  T5X derives for them (factored moments are replicated).
- gradient accumulator: with more than one microbatch, T5X sums gradients
  in a float32 copy of the weights' size.
- activations: what JAX's autodiff saves from the forward pass for the
  backward pass of T5X's network (no rematerialisation), per packed row, times
  the rows a device holds in one microbatch (`activation_bytes_per_row`).
  Tensors over heads or MLP units are divided over the mesh axis T5X
  shards them on; tensors over `embed` are not.

The sum is compared with the device's usable memory: FITS or DOES NOT FIT,
and the smallest power-of-two microbatch count that would fit. Not counted:
XLA's own temporaries (fusion buffers, bfloat16 copies of the weights, layout
copies), the input batch and the runtime's reserve. Gradients and
activations are counted as live together. docs/plan.md compares this model
with what XLA allocates on CPU (`--calibrate`).

Compute: model FLOPs per step (`model_flops`: matmuls only, verified against
XLA's count by benchmarks/train_step.py), tokens per step = batch x (inputs +
targets), step time = FLOPs / (devices x peak x MFU) at an ASSUMED MFU, days
= steps x step time / 86,400.

Needs T5X for the gin files and the train state (see README: Install T5X);
the arithmetic (`model_flops`, `activation_bytes_per_row`, `plan_run`,
`suggest_microbatches`) does not.
"""

import argparse
from collections.abc import Mapping, Sequence
import dataclasses
import json
import math
import sys
from typing import Any, Optional

from ankh3_tasks import hardware
from ankh3_tasks import mesh
from ankh3_tasks import t5x_adapter

# Share of the 512 encoder ids that carry a protein id, by packing, on the
# bundled sample at lengths 512 / 320 (benchmarks/pipeline_throughput.py,
# docs/benchmarks.md): seqio's greedy packing and the best fit over windows
# of 1,024 that gin/runs/ankh3_pretrain.gin uses.
SEQIO_PACKING_FILL = 0.665
BEST_FIT_PACKING_FILL = 0.886
_GIB = 2**30


def model_flops(cfg: Any, batch: int, inputs: int, targets: int) -> dict:
  """Matmul FLOPs of one forward pass and one train step.

  The formula (benchmarks/train_step.py states it, and checks it against the
  matmuls of XLA's lowered train step) counts 2 FLOPs per multiply-add of
  every matmul, including the attention scores and values, cross-attention,
  the logits layer, and T5X's one-hot embedding and relative-position
  contractions; a train step is 3x the forward pass, 2x for the one-hot
  contractions, which need only the table's gradient.

  Args:
    cfg: an `Ankh3Config` (or anything with its size attributes).
    batch: rows per step.
    inputs: encoder length.
    targets: decoder length.

  Returns:
    {"forward": ..., "train": ..., "parts": {name: forward FLOPs}}.
  """
  b, l, t = batch, inputs, targets
  d, f, v = cfg.emb_dim, cfg.mlp_dim, cfg.vocab_size
  a = cfg.num_heads * cfg.head_dim
  g = len(cfg.mlp_activations)
  e, n = cfg.num_encoder_layers, cfg.num_decoder_layers
  parts = {
      "encoder projections": e * 2 * b * 4 * l * d * a,
      "encoder attention": e * 2 * b * 2 * l * l * a,
      "encoder mlp": e * 2 * b * (g + 1) * l * d * f,
      "decoder projections": n * 2 * b * (6 * t + 2 * l) * d * a,
      "decoder attention": n * 2 * b * (2 * t * t + 2 * t * l) * a,
      "decoder mlp": n * 2 * b * (g + 1) * t * d * f,
      "logits": 2 * b * t * d * v,
  }
  one_hot = {
      "embedding (one-hot)": 2 * b * (l + t) * v * d,
      "position bias (one-hot)": (
          2
          * cfg.num_heads
          * cfg.relative_attention_num_buckets
          * (e * l * l + n * t * t)
      ),
  }
  forward = sum(parts.values()) + sum(one_hot.values())
  train = 3 * sum(parts.values()) + 2 * sum(one_hot.values())
  return {"forward": forward, "train": train, "parts": {**parts, **one_hot}}


def _itemsize(dtype: Any) -> int:
  if isinstance(dtype, str):
    return {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
  import numpy as np  # pylint: disable=g-import-not-at-top

  return np.dtype(dtype).itemsize


def activation_bytes_per_row(
    cfg: Any,
    inputs: int,
    targets: int,
    shards: Optional[Mapping[str, int]] = None,
) -> dict[str, int]:
  """Bytes autodiff saves for the backward pass, per packed row and device.

  With L = inputs, T = targets, d = emb_dim, H = heads, a = H x head_dim,
  f = mlp_dim, g = len(mlp_activations), V = vocab, s = bytes of the
  activation dtype (bfloat16: 2), and per position of a layer norm
  n = (2 x 4 + 2 s) d + 2 x 4 (its float32 input and normalised copies, its
  normalised and scaled outputs, two float32 statistics):

    encoder layer  L [2 n + 4 s a + 2 s H + (2 g + 2) s f] + 2 s H L^2
                   (q, k, v and the attention output; the softmax output
                   twice and its sums; six f-vectors in the SwiGLU MLP)
    decoder layer  T [3 n + 6 s a + 4 s H + (2 g + 2) s f] + 2 s a L
                   + 2 s H T (T + L)   (cross-attention keys and values
                   are over the L encoder positions)
    other          L (n + s V) + T (12 d + s d + 12 + s V + 16 V + 8)
                   (final norms, the float32 input of the logits layer,
                   one-hot embedding inputs, four float32 copies of the
                   logits, two float32 per-token loss terms)

  Terms in a and H are divided by `shards["heads"]`, in f by
  `shards["mlp"]`, and the d-vectors by `shards["embed"]` (T5X's standard
  rules: heads and mlp over the model axis, embed not sharded). Checked
  against the residuals of `jax.vjp` of T5X's loss for SwiGLU without
  float32 attention logits and without dropout (tests/plan_test.py);
  other settings save more or less.

  Args:
    cfg: an `Ankh3Config`.
    inputs: encoder length.
    targets: decoder length.
    shards: ways `heads`, `mlp` and `embed` are each split over the devices
      that share a row (default: 1).

  Returns:
    {"encoder layer", "decoder layer", "other", "total"} in bytes; "total"
    is all layers and the rest.
  """
  shards = {"heads": 1, "mlp": 1, "embed": 1, **(shards or {})}
  s = _itemsize(cfg.dtype)
  l, t, v = inputs, targets, cfg.vocab_size
  heads = cfg.num_heads // shards["heads"]
  a = heads * cfg.head_dim
  f = cfg.mlp_dim // shards["mlp"]
  d = -(-cfg.emb_dim // shards["embed"])
  g = len(cfg.mlp_activations)
  norm = (2 * 4 + 2 * s) * d + 2 * 4
  mlp = (2 * g + 2) * s * f
  encoder = l * (2 * norm + 4 * s * a + 2 * s * heads + mlp)
  encoder += 2 * s * heads * l * l
  decoder = t * (3 * norm + 6 * s * a + 4 * s * heads + mlp)
  decoder += 2 * s * a * l + 2 * s * heads * t * (t + l)
  # Decoder end, per target position: the final norm and the float32 input
  # of the logits layer (three float32 d-vectors, one in the activation
  # dtype, three float32 statistics), the one-hot input ids, four float32
  # V-vectors (logits, softmax, loss terms) and two float32 per-token
  # values.
  other = l * (norm + s * v)
  other += t * (3 * 4 * d + s * d + 3 * 4 + s * v + 4 * 4 * v + 2 * 4)
  total = cfg.num_encoder_layers * encoder + cfg.num_decoder_layers * decoder
  return {
      "encoder layer": encoder,
      "decoder layer": decoder,
      "other": other,
      "total": total + other,
  }


def check_run(
    cfg: Any,
    *,
    num_devices: int,
    num_partitions: int,
    batch_size: int,
    microbatches: int,
) -> dict[str, int]:
  """`mesh.check_mesh`, plus microbatches that divide a replica's rows.

  Args:
    cfg: an `Ankh3Config`.
    num_devices: JAX devices.
    num_partitions: model-parallel ways.
    batch_size: global batch, in packed rows.
    microbatches: T5X's `num_microbatches` (1 for none).

  Returns:
    The mesh shape, `{"data": ..., "model": ...}`.

  Raises:
    ValueError: naming the numbers that do not divide.
  """
  shape = mesh.check_mesh(
      num_devices=num_devices,
      num_partitions=num_partitions,
      batch_size=batch_size,
      num_heads=cfg.num_heads,
      mlp_dim=cfg.mlp_dim,
      vocab_size=cfg.vocab_size,
  )
  rows = batch_size // shape["data"]
  if microbatches < 1 or rows % microbatches:
    raise ValueError(
        f"{microbatches} microbatches do not divide the {rows} rows of a data "
        f"replica (batch {batch_size} over the {shape['data']}-way data "
        "axis)."
    )
  return shape


def memory_bytes(
    *,
    weights: int,
    optimizer: int,
    activations_per_row: int,
    rows: int,
    microbatches: int,
) -> dict[str, int]:
  """The memory model's parts for one device (module docstring).

  Args:
    weights: float32 parameter bytes on the device.
    optimizer: optimizer-state bytes on the device.
    activations_per_row: `activation_bytes_per_row(...)["total"]`.
    rows: rows of the batch a data replica holds.
    microbatches: T5X's `num_microbatches` (1 for none).

  Returns:
    {"weights", "gradients", "optimizer", "accumulator", "activations",
    "total"} in bytes.
  """
  parts = {
      "weights": weights,
      "gradients": weights,
      "optimizer": optimizer,
      "accumulator": weights if microbatches > 1 else 0,
      "activations": activations_per_row * (rows // microbatches),
  }
  return {**parts, "total": sum(parts.values())}


def suggest_microbatches(
    *,
    weights: int,
    optimizer: int,
    activations_per_row: int,
    rows: int,
    capacity: int,
) -> Optional[int]:
  """The smallest power of two dividing `rows` whose total fits `capacity`.

  Args:
    weights: float32 parameter bytes on the device.
    optimizer: optimizer-state bytes on the device.
    activations_per_row: `activation_bytes_per_row(...)["total"]`.
    rows: rows of the batch a data replica holds.
    capacity: usable bytes of the device.

  Returns:
    The microbatch count (1: no microbatching), or None where none fits:
    weights, gradients, optimizer state and accumulator alone exceed the
    device, or one row does not fit.
  """
  m = 1
  while m <= rows:
    if rows % m == 0:
      total = memory_bytes(
          weights=weights,
          optimizer=optimizer,
          activations_per_row=activations_per_row,
          rows=rows,
          microbatches=m,
      )["total"]
      if total <= capacity:
        return m
    m *= 2
  return None


@dataclasses.dataclass(frozen=True)
class StateSizes:
  """Sizes of T5X's train state for one mesh.

  Attributes:
    params: parameters of the model.
    weights: float32 parameter bytes on one device.
    replicated_params: parameters not divided over any mesh axis.
    optimizer: optimizer-state bytes on one device.
  """

  params: int
  weights: int
  replicated_params: int
  optimizer: int


def plan_run(
    cfg: Any,
    state: StateSizes,
    topology: hardware.Topology,
    *,
    batch_size: int,
    inputs_length: int,
    targets_length: int,
    num_partitions: int = 1,
    microbatches: int = 1,
    steps: Optional[int] = None,
    fill: float = BEST_FIT_PACKING_FILL,
    mfu: float = 0.3,
    activation_shards: Optional[Mapping[str, int]] = None,
) -> dict[str, Any]:
  """Memory per device, FLOPs and time of a run (module docstring).

  Args:
    cfg: an `Ankh3Config`.
    state: `state_sizes(...)` for the same mesh.
    topology: where it runs.
    batch_size: global batch, in packed rows.
    inputs_length: encoder length.
    targets_length: decoder length.
    num_partitions: model-parallel ways.
    microbatches: T5X's `num_microbatches` (1 for none).
    steps: training steps, for the days; None leaves them out.
    fill: share of the encoder ids that packing fills.
    mfu: ASSUMED model-FLOPs utilisation.
    activation_shards: `activation_bytes_per_row`'s `shards`; default:
      heads and mlp over the model axis.

  Returns:
    The plan, a JSON-ready dict; memory in bytes.

  Raises:
    ValueError: for a batch, dimension or microbatch count that does not
      divide (`check_run`), or an MFU outside (0, 1].
  """
  if not 0 < mfu <= 1:
    raise ValueError(f"MFU {mfu} is not in (0, 1].")
  shape = check_run(
      cfg,
      num_devices=topology.devices,
      num_partitions=num_partitions,
      batch_size=batch_size,
      microbatches=microbatches,
  )
  if activation_shards is None:
    activation_shards = {"heads": shape["model"], "mlp": shape["model"]}
  rows = batch_size // shape["data"]
  per_row = activation_bytes_per_row(
      cfg, inputs_length, targets_length, activation_shards
  )["total"]
  fixed = dict(weights=state.weights, optimizer=state.optimizer)
  memory = memory_bytes(
      **fixed, activations_per_row=per_row, rows=rows, microbatches=microbatches
  )
  suggested = suggest_microbatches(
      **fixed,
      activations_per_row=per_row,
      rows=rows,
      capacity=topology.usable_bytes,
  )
  flops = model_flops(cfg, batch_size, inputs_length, targets_length)["train"]
  step_s = flops / (topology.devices * topology.peak_flops * mfu)
  return {
      "topology": dataclasses.asdict(topology),
      "params": state.params,
      "replicated_params": state.replicated_params,
      "mesh": shape,
      "batch_size": batch_size,
      "inputs_length": inputs_length,
      "targets_length": targets_length,
      "tokens_per_step": batch_size * (inputs_length + targets_length),
      "rows_per_replica": rows,
      "microbatches": microbatches,
      "rows_per_microbatch": rows // microbatches,
      "activation_bytes_per_row": per_row,
      "memory": memory,
      "fits": memory["total"] <= topology.usable_bytes,
      "suggested_microbatches": suggested,
      "suggested_total": (
          None
          if suggested is None
          else memory_bytes(
              **fixed,
              activations_per_row=per_row,
              rows=rows,
              microbatches=suggested,
          )["total"]
      ),
      "flops_per_step": flops,
      "mfu_assumed": mfu,
      "step_seconds": step_s,
      "steps": steps,
      "days": None if steps is None else steps * step_s / 86400,
      "packing": packing_plan(
          batch_size, inputs_length, steps, step_s, fill=fill
      ),
  }


def packing_plan(
    batch_size: int,
    inputs_length: int,
    steps: Optional[int],
    step_seconds: float,
    fill: float = BEST_FIT_PACKING_FILL,
    reference_fill: float = SEQIO_PACKING_FILL,
) -> dict[str, Any]:
  """Useful input ids per step, and the steps that see a reference's ids.

  The reference is `steps` of rows filled to `reference_fill` (ASSUMED: the
  paper's runs packed greedily, as seqio does); at `fill` the same ids take
  `steps * reference_fill / fill` steps.

  Args:
    batch_size: rows per step.
    inputs_length: encoder ids per row.
    steps: the reference's steps (None: no step counts).
    step_seconds: seconds per step.
    fill: share of the encoder ids filled.
    reference_fill: the reference's share.

  Returns:
    {"fill", "reference_fill", "useful_input_ids_per_step",
    "reference_input_ids", "steps_for_reference_ids",
    "days_for_reference_ids", "days_saved"} (the last four None without
    steps).
  """
  if not 0 < fill <= 1 or not 0 < reference_fill <= 1:
    raise ValueError(
        f"Fills must be in (0, 1], got {fill} and {reference_fill}."
    )
  per_step = batch_size * inputs_length * fill
  plan = {
      "fill": fill,
      "reference_fill": reference_fill,
      "useful_input_ids_per_step": per_step,
      "reference_input_ids": None,
      "steps_for_reference_ids": None,
      "days_for_reference_ids": None,
      "days_saved": None,
  }
  if steps is not None:
    same = math.ceil(steps * reference_fill / fill)
    plan.update(
        reference_input_ids=steps * batch_size * inputs_length * reference_fill,
        steps_for_reference_ids=same,
        days_for_reference_ids=same * step_seconds / 86400,
        days_saved=(steps - same) * step_seconds / 86400,
    )
  return plan


def _gib(n: float) -> str:
  return f"{n / _GIB:.2f} GiB"


def format_plan(plan: Mapping[str, Any]) -> str:
  """The plan as a text table."""
  top = plan["topology"]
  mem = plan["memory"]
  m = plan["microbatches"]
  lines = [
      f"model        {plan['params']:,} parameters"
      + (f" ({plan['model']})" if plan.get("model") else ""),
      (
          f"topology     {top['name']}: {top['devices']} {top['kind']},"
          f" {_gib(top['hbm_bytes'])} each ({_gib(top['usable_bytes'])}"
          f" usable), {top['peak_flops'] / 1e12:g} TFLOP/s bf16 peak each"
      ),
      (
          f"mesh         {plan['mesh']['data']} data x {plan['mesh']['model']} "
          "model"
      ),
      (
          f"batch        {plan['batch_size']:,} rows x ({plan['inputs_length']}"
          f" + {plan['targets_length']}) = {plan['tokens_per_step']:,} tokens"
          f" per step; {plan['rows_per_replica']} rows per data replica, {m}"
          f" microbatch{'es' if m > 1 else ''} of {plan['rows_per_microbatch']}"
      ),
      "",
      "memory per device (ESTIMATE; the model is in docs/plan.md)",
      *(
          f"  {label:<36}{_gib(mem[key]):>12}"
          for label, key in (
              ("weights, float32", "weights"),
              ("gradients, float32", "gradients"),
              ("Adafactor state", "optimizer"),
              ("gradient accumulator", "accumulator"),
              (
                  f"activations, {plan['rows_per_microbatch']} rows x "
                  + _gib(plan["activation_bytes_per_row"]),
                  "activations",
              ),
              ("total", "total"),
          )
      ),
      "  "
      + ("FITS" if plan["fits"] else "DOES NOT FIT")
      + f" in {_gib(top['usable_bytes'])} usable",
  ]
  suggested = plan["suggested_microbatches"]
  if suggested is None:
    lines += [
        "  no microbatch count fits: weights, gradients, Adafactor state and",
        "  accumulator alone need more (shard the weights further)",
    ]
  else:
    lines.append(
        f"  smallest fitting NUM_MICROBATCHES: {suggested} "
        f"({plan['rows_per_replica'] // suggested} rows each), total "
        f"{_gib(plan['suggested_total'])}"
    )
  mfu = f"{plan['mfu_assumed']:.0%} MFU"
  lines += [
      "",
      f"model FLOPs per step   {plan['flops_per_step']:.4g}",
      (
          f"step time              {plan['step_seconds']:.3g} s at an ASSUMED "
          f"{mfu}"
      ),
  ]
  if plan["days"] is not None:
    lines.append(
        f"training               {plan['steps']:,} steps: "
        f"{plan['days']:.1f} days at an ASSUMED {mfu}"
    )
  packing = plan.get("packing")
  if packing is not None:
    lines.append(
        f"useful ids             {packing['useful_input_ids_per_step']:,.0f}"
        f" input ids per step at fill {packing['fill']:.3f} (seqio's greedy"
        f" packing: {packing['reference_fill']:.3f})"
    )
    if packing["steps_for_reference_ids"] is not None:
      same = packing["steps_for_reference_ids"]
      lines.append(
          f"same ids               {plan['steps']:,} steps of seqio-packed"
          f" rows (ASSUMED the paper's packing) = {same:,} steps"
          f" (--gin.TRAIN_STEPS={same}):"
          f" {packing['days_for_reference_ids']:.1f} days,"
          f" {packing['days_saved']:.1f} fewer"
      )
  for note in plan.get("notes", ()):
    lines.append(f"note: {note}")
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# T5X: gin files, the abstract train state, XLA's allocation.
# ---------------------------------------------------------------------------


def _ways(
    mesh_axes: Optional[str | Sequence[str]], mesh_shape: Mapping[str, int]
) -> int:
  """Ways a dimension is split: the product of the sizes of its mesh axes.

  Args:
    mesh_axes: one entry of a `PartitionSpec` (None: not split).
    mesh_shape: `{"data": ..., "model": ...}`.

  Returns:
    The ways, 1 for None.
  """
  if mesh_axes is None:
    return 1
  names = (mesh_axes,) if isinstance(mesh_axes, str) else mesh_axes
  return math.prod(mesh_shape[n] for n in names)


def state_sizes(
    model: Any,
    mesh_shape: Mapping[str, int],
    rules: Sequence[tuple[str, Optional[str]]],
) -> StateSizes:
  """Bytes of T5X's train state on one device of a mesh, leaf by leaf.

  Each leaf of the abstract train state (parameters under `target`,
  optimizer state under `state`) is divided over the mesh axes that its
  logical axes map to under `rules` (T5X's `PjitPartitioner.get_mesh_axes`).

  Args:
    model: T5X's `EncoderDecoderModel`.
    mesh_shape: `{"data": ..., "model": ...}`.
    rules: logical axis rules.

  Returns:
    The `StateSizes`.
  """
  # pylint: disable=g-import-not-at-top
  from flax import traverse_util
  from flax.linen import partitioning as flax_partitioning

  # pylint: enable=g-import-not-at-top

  state = t5x_adapter.abstract_train_state(model)
  leaves = traverse_util.flatten_dict(state.state_dict(), sep="/")
  axes = traverse_util.flatten_dict(
      state.as_logical_axes().state_dict(), keep_empty_nodes=True, sep="/"
  )
  params = weights = replicated = optimizer = 0
  for key, leaf in leaves.items():
    logical = axes.get(key)
    spec = (
        flax_partitioning.logical_to_mesh_axes(logical, rules)
        if logical is not None and logical is not traverse_util.empty_node
        else ()
    )
    local = list(leaf.shape)
    for i, mesh_axes in enumerate(spec):
      local[i] = -(-local[i] // _ways(mesh_axes, mesh_shape))
    size = math.prod(local) * leaf.dtype.itemsize
    if key.startswith("target/"):
      count = math.prod(leaf.shape)
      params += count
      weights += size
      if math.prod(local) == count:
        replicated += count
    else:
      optimizer += size
  return StateSizes(params, weights, replicated, optimizer)


def activation_shards(
    mesh_shape: Mapping[str, int],
    rules: Sequence[tuple[str, Optional[str]]],
) -> dict[str, int]:
  """Ways T5X splits activations over heads, MLP units and `embed`.

  From the logical axes T5X's layers constrain their activations to
  (`('batch', 'length', 'heads', 'kv')`, `('batch', 'length', 'mlp')`,
  `('batch', 'length', 'embed')`) under `rules`, the batch axis left out.

  Args:
    mesh_shape: `{"data": ..., "model": ...}`.
    rules: logical axis rules.

  Returns:
    `activation_bytes_per_row`'s `shards`.
  """
  # pylint: disable-next=g-import-not-at-top
  from flax.linen import partitioning as flax_partitioning

  shards = {}
  for name, logical in (
      ("heads", ("batch", "length", "heads", "kv")),
      ("mlp", ("batch", "length", "mlp")),
      ("embed", ("batch", "length", "embed")),
  ):
    spec = flax_partitioning.logical_to_mesh_axes(logical, rules)
    shards[name] = math.prod(_ways(a, mesh_shape) for a in tuple(spec)[1:])
  return shards


def saved_residual_bytes(
    model: Any, rows: int, inputs: int, targets: int
) -> int:
  """Bytes of the residuals `jax.vjp` of T5X's loss keeps for the backward.

  Residuals that are the parameters or the batch themselves are not counted
  (they are resident anyway); nothing is allocated.

  Args:
    model: T5X's `EncoderDecoderModel`.
    rows: batch rows.
    inputs: encoder length.
    targets: decoder length.

  Returns:
    The bytes, for the whole batch on one device.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.extend import core  # pylint: disable=g-import-not-at-top

  params = t5x_adapter.abstract_train_state(model).params

  def forward(p, batch):
    return jax.vjp(lambda q: model.loss_fn(q, batch, None)[0], p)

  closed, shape = jax.make_jaxpr(forward, return_shape=True)(
      params, t5x_adapter.abstract_batch(rows, inputs, targets)
  )
  jaxpr = closed.jaxpr
  residuals = jaxpr.outvars[
      len(jaxpr.outvars) - len(jax.tree_util.tree_leaves(shape[1])) :
  ]
  inputs_ = {id(v) for v in jaxpr.invars}
  seen = set()
  total = 0
  for var in residuals:
    if isinstance(var, core.Literal) or id(var) in inputs_ | seen:
      continue
    seen.add(id(var))
    total += math.prod(var.aval.shape) * var.aval.dtype.itemsize
  return total


def xla_train_step_bytes(
    model: Any, rows: int, inputs: int, targets: int, microbatches: int = 1
) -> int:
  """XLA's temporary plus argument bytes of T5X's train step, one device.

  T5X's `Trainer` train step (forward, backward, Adafactor) with
  `PjitPartitioner(num_partitions=1)`, lowered on abstract arrays and
  compiled for the local backend; `memory_analysis()` of the executable.

  Args:
    model: T5X's `EncoderDecoderModel`.
    rows: batch rows.
    inputs: encoder length.
    targets: decoder length.
    microbatches: `Trainer(num_microbatches=...)` (1 for None).

  Returns:
    `temp_size_in_bytes + argument_size_in_bytes`.
  """
  batch = t5x_adapter.abstract_batch(rows, inputs, targets)
  initializer, make_trainer = t5x_adapter.training(
      model, batch, lambda step: 1e-2, microbatches
  )
  state = initializer.global_train_state_shape
  trainer = make_trainer(state)
  # pylint: disable-next=protected-access
  lowered = trainer._partitioned_train_step.lower(state, batch)
  trainer.close()
  stats = lowered.compile().memory_analysis()
  return stats.temp_size_in_bytes + stats.argument_size_in_bytes


def calibrate(
    model: Any, inputs: int, targets: int, rows: tuple[int, int] = (2, 4)
) -> dict[str, Any]:
  """Compares the memory model with JAX's residuals and XLA's allocation.

  On one local device (no sharding): activations per row by
  `activation_bytes_per_row`, by the residuals of `jax.vjp`
  (`saved_residual_bytes`) and by XLA (the growth of the train step's
  allocation from `rows[0]` to `rows[1]` rows, per row); and the whole
  step by the model (`memory_bytes`) and by XLA, at `rows[0]` and `rows[1]`
  rows and at `rows[1]` rows in `rows[1] // rows[0]` microbatches.

  Args:
    model: T5X's `EncoderDecoderModel`.
    inputs: encoder length.
    targets: decoder length.
    rows: two batch sizes, the second a multiple of the first.

  Returns:
    {"formula", "residuals", "xla"} bytes per row, and "steps": a list of
    {"rows", "microbatches", "model", "xla"} bytes.
  """
  import jax  # pylint: disable=g-import-not-at-top

  r1, r2 = rows
  cfg = model.module.config
  per_row = activation_bytes_per_row(cfg, inputs, targets)["total"]
  state = state_sizes(model, {"data": 1, "model": 1}, ())
  residuals = saved_residual_bytes(model, r2, inputs, targets)
  residuals -= saved_residual_bytes(model, r1, inputs, targets)
  steps = []
  for n, m in ((r1, 1), (r2, 1), (r2, r2 // r1)):
    planned = memory_bytes(
        weights=state.weights,
        optimizer=state.optimizer,
        activations_per_row=per_row,
        rows=n,
        microbatches=m,
    )["total"]
    xla = xla_train_step_bytes(model, n, inputs, targets, m)
    steps.append({"rows": n, "microbatches": m, "model": planned, "xla": xla})
  return {
      "backend": jax.default_backend(),
      "params": state.params,
      "formula": per_row,
      "residuals": residuals // (r2 - r1),
      "xla": (steps[1]["xla"] - steps[0]["xla"]) // (r2 - r1),
      "steps": steps,
  }


def _format_calibration(result: Mapping[str, Any]) -> str:
  f = result["formula"]
  lines = [
      f"{result['params']:,} parameters, XLA backend {result['backend']}",
      "activations per row (bytes):",
      f"  formula                     {f:>14,}",
      (
          f"  jax.vjp residuals           {result['residuals']:>14,}"
          f"  ({result['residuals'] / f:.3f} x formula)"
      ),
      (
          f"  XLA train step, per row     {result['xla']:>14,}"
          f"  ({result['xla'] / f:.3f} x formula)"
      ),
      "whole train step (bytes): model vs XLA temp + arguments",
  ]
  for s in result["steps"]:
    lines.append(
        f"  {s['rows']} rows, {s['microbatches']} microbatch(es): model "
        f"{s['model']:,}, XLA {s['xla']:,} ({s['xla'] / s['model']:.3f} x)"
    )
  return "\n".join(lines)


def _config_notes(cfg: Any, dropout_rate: float) -> list[str]:
  notes = []
  if tuple(cfg.mlp_activations) != ("silu", "linear"):
    notes.append(
        f"mlp_activations {tuple(cfg.mlp_activations)}: the activation "
        "estimate is checked for SwiGLU only"
    )
  if cfg.float32_attention_logits:
    notes.append(
        "float32_attention_logits: the activation estimate does not count "
        "the float32 copies"
    )
  if getattr(cfg, "remat_policy", "none") != "none":
    notes.append(
        f"remat_policy {cfg.remat_policy!r}: the activation estimate counts "
        "what autodiff saves without rematerialisation (an upper bound); "
        "python -m ankh3_tasks.compile_check gives the compiler's figure"
    )
  if dropout_rate:
    notes.append(
        f"DROPOUT_RATE {dropout_rate}: dropout masks are not in the "
        "activation estimate"
    )
  return notes


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.plan",
      description=__doc__.split("\n")[0],
      epilog=(
          "Gin bindings as T5X takes them: --gin.NAME=VALUE, e.g. "
          "--gin.NUM_MICROBATCHES=8. Exit status: 0 a plan (fitting or "
          "not), 1 refused (does not divide), 2 bad arguments."
      ),
  )
  t5x_adapter.add_gin_flags(parser)
  parser.add_argument(
      "--topology",
      default="v4-128",
      # gcloud's name for a v5e slice is v5litepod-N.
      type=lambda name: name.replace("v5litepod-", "v5e-", 1),
      choices=list(hardware.TOPOLOGIES),
      metavar="TOPOLOGY",
      help=f"one of {', '.join(hardware.TOPOLOGIES)} (default v4-128)",
  )
  for name, what in (
      ("num_partitions", "model-parallel ways"),
      ("batch_size", "global batch, in packed rows"),
      ("inputs_length", "encoder length"),
      ("targets_length", "decoder length"),
      ("microbatches", "T5X's num_microbatches (1: none)"),
      ("steps", "training steps"),
  ):
    parser.add_argument(
        f"--{name}", type=int, default=None, help=f"{what} (default: gin)"
    )
  parser.add_argument(
      "--mfu", type=float, default=0.3, help="ASSUMED MFU (default 0.3)"
  )
  parser.add_argument(
      "--mem_fraction",
      type=float,
      default=None,
      help=(
          "GPUs: the XLA_PYTHON_CLIENT_MEM_FRACTION the run sets (default "
          f"JAX's {hardware.GPU_MEM_FRACTION}; python -m tpu_launch.slurm sets 0.9)"
      ),
  )
  parser.add_argument(
      "--fill",
      type=float,
      default=BEST_FIT_PACKING_FILL,
      help=(
          "share of the encoder ids packing fills (default "
          f"{BEST_FIT_PACKING_FILL}, best fit; seqio's packing: "
          f"{SEQIO_PACKING_FILL})"
      ),
  )
  parser.add_argument("--json", action="store_true", help="print JSON")
  parser.add_argument(
      "--calibrate",
      action="store_true",
      help=(
          "compare the memory model with jax.vjp's residuals and XLA on "
          "the local backend (compiles the train step: use a small model)"
      ),
  )
  parser.add_argument(
      "--calibrate_rows",
      default="2,4",
      help="two batch sizes for --calibrate (default 2,4)",
  )
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    argv, bindings = t5x_adapter.split_gin_flags(argv)
  except ValueError as e:
    parser.error(str(e))
  args = parser.parse_args(argv)
  search = [p for p in args.gin_search_paths.split(",") if p]
  if not 0 < args.fill <= 1:
    parser.error(f"--fill is a share of the encoder ids, got {args.fill}")

  from absl import logging  # pylint: disable=g-import-not-at-top

  # Adafactor warns once per parameter that it factors by heuristics. Quiet
  # for this command only: the process may go on (tests, other commands).
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return _run(parser, args, bindings, search)
  finally:
    logging.set_verbosity(previous)


def _run(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    bindings: Sequence[str],
    search: Sequence[str],
) -> int:
  """Plans (or calibrates) the run the parsed flags describe."""
  run = t5x_adapter.load_gin(args.gin_file, bindings, search)
  cfg = run.model.module.config
  settings = run.settings
  for name in (
      "num_partitions",
      "batch_size",
      "inputs_length",
      "targets_length",
      "microbatches",
      "steps",
  ):
    if getattr(args, name) is not None:
      settings[name] = getattr(args, name)

  if args.calibrate:
    try:
      rows = tuple(int(r) for r in args.calibrate_rows.split(","))
    except ValueError:
      rows = ()
    if len(rows) != 2 or rows[0] < 1 or rows[1] % rows[0] or rows[1] <= rows[0]:
      parser.error("--calibrate_rows takes two sizes, the second a multiple")
    for name in ("inputs_length", "targets_length"):
      if settings[name] is None:
        parser.error(f"the gin files set no {name}: pass --{name}")
    result = calibrate(
        run.model, settings["inputs_length"], settings["targets_length"], rows
    )
    print(json.dumps(result) if args.json else _format_calibration(result))
    return 0

  for name in ("batch_size", "inputs_length", "targets_length"):
    if settings[name] is None:
      parser.error(f"the gin files set no {name}: pass --{name}")
  topology = hardware.TOPOLOGIES[args.topology]
  if args.mem_fraction is not None:
    try:
      topology = hardware.with_mem_fraction(topology, args.mem_fraction)
    except ValueError as e:
      parser.error(str(e))
  partitions = settings["num_partitions"] or 1
  microbatches = settings["microbatches"] or 1
  try:
    shape = check_run(
        cfg,
        num_devices=topology.devices,
        num_partitions=partitions,
        batch_size=settings["batch_size"],
        microbatches=microbatches,
    )
    plan = plan_run(
        cfg,
        state_sizes(run.model, shape, run.rules),
        topology,
        batch_size=settings["batch_size"],
        inputs_length=settings["inputs_length"],
        targets_length=settings["targets_length"],
        num_partitions=partitions,
        microbatches=microbatches,
        steps=settings["steps"],
        mfu=args.mfu,
        activation_shards=activation_shards(shape, run.rules),
        fill=args.fill,
    )
  except ValueError as e:
    print(f"refused: {e}", file=sys.stderr)
    return 1
  notes = _config_notes(cfg, run.dropout_rate)
  devices = settings["num_devices"]
  if devices is not None and devices != topology.devices:
    notes.append(
        f"the gin files set NUM_DEVICES = {devices}; planned for "
        f"{topology.name}'s {topology.devices}"
    )
  plan = {
      "gin_files": list(args.gin_file),
      "gin_bindings": bindings,
      "model": (
          f"emb {cfg.emb_dim}, {cfg.num_heads} heads x {cfg.head_dim}, mlp "
          f"{cfg.mlp_dim}, {cfg.num_encoder_layers} + "
          f"{cfg.num_decoder_layers} layers, {cfg.dtype} activations"
      ),
      **plan,
      "notes": notes,
  }
  print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
  return 0


if __name__ == "__main__":
  sys.exit(main())
