r"""Times T5X train steps of small Ankh3 models and counts model FLOPs per step.

  python benchmarks/train_step.py                    # tiny, mid, Large, XL
  python benchmarks/train_step.py --steps 10 --mid_batch_size 8
  python benchmarks/train_step.py --configs= --no-xla_paper  # arithmetic only

Part 1, measured. For `tiny` (gin/models/ankh3_tiny.gin at the lengths and
batch of gin/experiments/ankh3_tiny_sample.gin) and `mid` (the same file with
the sizes overridden by the `--mid_*` flags), the script builds the model from
the gin file's `MODEL` macro and runs T5X's own training path:
`utils.TrainStateInitializer(...).from_scratch`, a `trainer.Trainer` with a
`PjitPartitioner(num_partitions=1)`, `Trainer.compile_train` (timed as compile
seconds) and then the compiled `Trainer` train step (forward, backward,
Adafactor update, metrics), timed one step at a time on synthetic packed
batches. A batch has the features `seqio.EncDecFeatureConverter(pack=True)`
gives T5X: tokens, segment ids, positions and loss weights of examples of
random lengths packed greedily into rows. Tokens/s counts every encoder and
target position, and separately the non-padding ones.

Part 2, counted. Model FLOPs per train step, from the config alone (no
weights are allocated). Only matrix multiplications are counted, at 2 FLOPs
per multiply-add; B = batch, L = inputs length, T = targets length,
d = emb_dim, a = num_heads * head_dim, f = mlp_dim, g = number of
mlp_activations (2 for SwiGLU), V = vocab_size, E / D = encoder / decoder
layers, H = heads, R = relative-position buckets. Forward FLOPs:

  encoder layer   2B [4 L d a + 2 L^2 a + (g + 1) L d f]
  decoder layer   2B [4 T d a + 2 T^2 a                   (self-attention)
                      + 2 T d a + 2 L d a + 2 T L a       (cross-attention)
                      + (g + 1) T d f]
  logits          2B T d V
  embedding       2B (L + T) V d    (T5X's one-hot embedding is a matmul)
  position bias   2 H R (E L^2 + D T^2)   (one-hot contraction per layer)

A train step costs 3x the forward FLOPs (backward: 2x, the gradients of both
operands), except the two one-hot contractions, which need the gradient of
the table only (2x). Layer norms, softmax, activations, the loss and the
optimizer are not counted. Two checks against XLA: its own count,
`cost_analysis()` (of the compiled train step for tiny and mid; for Large and
XL of the same step lowered on abstract arrays, nothing allocated or
compiled; `--no-xla_paper` skips these, about 30 s), which also counts
elementwise operations and so runs slightly above; and the sum over every
`dot_general` in the lowered step's StableHLO ("HLO matmuls"), which should
equal the count exactly.

Part 3, derived. For Ankh3 Large and XL (gin/models/ankh3_{large,xl}.gin) at
the lengths and batch of gin/experiments/ankh3_large_pretrain.gin (the
paper's: batch 1024, inputs 512, targets 320; `--paper_*` flags override):
FLOPs per step, and the step time and days of training that an ASSUMED
model-FLOPs utilisation (`--mfu`, 30%) would give on `--chips` TPU v4 chips
(`--chip_tflops`, 275 bf16 peak each). These are arithmetic, not
measurements.
"""

import argparse
import math
import os
import re
import statistics
import sys
import time

import numpy as np

# The FLOP count and the packed features T5X's model takes; kept with the
# planner.
from ankh3_tasks import checkpoints
from ankh3_tasks import plan
from ankh3_tasks import t5x_adapter
from ankh3_tasks.t5x_adapter import FEATURES
from ankh3_tasks.plan import model_flops

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gin_run_settings(path: str) -> tuple[dict[str, int], int]:
  """Returns TASK_FEATURE_LENGTHS and BATCH_SIZE as a gin file binds them.

  Args:
    path: an experiment gin file, relative to the repository root.

  Returns:
    (feature lengths, batch size).
  """
  settings = t5x_adapter.load_gin([path], search_paths=[_REPO]).settings
  lengths = {
      "inputs": settings["inputs_length"],
      "targets": settings["targets_length"],
  }
  return lengths, settings["batch_size"]


def build_model(gin_file: str, bindings: tuple[str, ...] = ()):
  """The `MODEL` of a model gin file (no weights allocated)."""
  return checkpoints.load_model(gin_file, [_REPO], bindings)


def count_params(model) -> int:
  """Parameter count from T5X's abstract train state (nothing allocated)."""
  return plan.state_sizes(model, {"data": 1, "model": 1}, ()).params


def packed_batch(
    rng: np.random.Generator, batch: int, inputs: int, targets: int
) -> dict[str, np.ndarray]:
  """A synthetic batch shaped as `EncDecFeatureConverter(pack=True)` emits.

  Examples have encoder length uniform in [inputs / 8, inputs] and a target
  of 40-100% of the same fraction of `targets`; they are packed greedily in
  order (a row is closed when the next example does not fit). Token ids are
  random residues and sentinels, each sequence ending in `</s>` (1).

  Args:
    rng: numpy generator.
    batch: rows.
    inputs: encoder length.
    targets: decoder length.

  Returns:
    The int32 `FEATURES`, [batch, inputs] or [batch, targets].
  """
  names = ("tokens", "segment_ids", "positions")
  enc = {k: np.zeros((batch, inputs), np.int32) for k in names}
  dec = {k: np.zeros((batch, targets), np.int32) for k in names}
  dec_inputs = np.zeros((batch, targets), np.int32)
  pending = None
  for row in range(batch):
    used_in = used_tgt = 0
    segment = 0
    while True:
      if pending is None:
        frac = rng.uniform(1 / 8, 1)
        pending = (
            max(2, int(frac * inputs)),
            max(2, int(frac * targets * rng.uniform(0.4, 1.0))),
        )
      n_in, n_tgt = pending
      if used_in + n_in > inputs or used_tgt + n_tgt > targets:
        break
      segment += 1
      pending = None
      for feats, used, n in ((enc, used_in, n_in), (dec, used_tgt, n_tgt)):
        span = slice(used, used + n)
        feats["tokens"][row, span] = rng.integers(3, 256, n)
        feats["tokens"][row, used + n - 1] = 1
        feats["segment_ids"][row, span] = segment
        feats["positions"][row, span] = np.arange(n)
      # Decoder inputs: targets shifted right within the segment, 0 first.
      dec_inputs[row, used_tgt + 1 : used_tgt + n_tgt] = dec["tokens"][
          row, used_tgt : used_tgt + n_tgt - 1
      ]
      used_in += n_in
      used_tgt += n_tgt
  features = {f"encoder_{k}": x for k, x in enc.items()}
  features["encoder_input_tokens"] = features.pop("encoder_tokens")
  features.update({f"decoder_{k}": x for k, x in dec.items()})
  features["decoder_target_tokens"] = features.pop("decoder_tokens")
  features["decoder_input_tokens"] = dec_inputs
  features["decoder_loss_weights"] = (dec["tokens"] != 0).astype(np.int32)
  return {k: features[k] for k in FEATURES}


def _xla_flops(cost) -> float:
  # `cost_analysis()` gives a dict, or a list of one dict per computation.
  if isinstance(cost, (list, tuple)):
    return float(sum(c.get("flops", 0.0) for c in cost))
  return float(cost.get("flops", 0.0))


def t5x_training(model, batch: int, inputs: int, targets: int):
  """T5X's train-state initializer and a `Trainer` factory, as `t5x.train`.

  Args:
    model: the `EncoderDecoderModel`.
    batch: rows per step.
    inputs: encoder length.
    targets: decoder length.

  Returns:
    (`utils.TrainStateInitializer`, function of a train state -> `Trainer`).
  """
  from t5x import utils  # pylint: disable=g-import-not-at-top

  # Learning rate as gin/runs/ankh3_pretrain.gin sets it.
  learning_rate = utils.create_learning_rate_scheduler(
      factors="constant * rsqrt_decay",
      base_learning_rate=1.0,
      warmup_steps=10000,
  )
  # pylint: disable=protected-access
  abstract = t5x_adapter.abstract_batch(batch, inputs, targets)
  return t5x_adapter.training(model, abstract, learning_rate)


def measure(name: str, model, batch: int, inputs: int, targets: int, args):
  """Compiles and times T5X's train step; returns a row of the table."""
  import jax  # pylint: disable=g-import-not-at-top

  initializer, make_trainer = t5x_training(model, batch, inputs, targets)
  params = count_params(model)
  trainer = make_trainer(initializer.from_scratch(jax.random.PRNGKey(0)))
  rng = np.random.default_rng(args.seed)
  batches = [
      packed_batch(rng, batch, inputs, targets) for _ in range(args.batches)
  ]

  tick = time.perf_counter()
  trainer.compile_train(batches[0])
  compile_s = time.perf_counter() - tick
  # The executable `Trainer.train` would call (pre-compiled by compile_train).
  # pylint: disable=protected-access
  step = trainer._compiled_train_step
  xla = _xla_flops(step.cost_analysis())
  matmul = hlo_matmul_flops(
      trainer._partitioned_train_step.lower(
          trainer.train_state, batches[0]
      ).as_text()
  )
  # pylint: enable=protected-access

  state = trainer.train_state
  times = []
  for i in range(args.warmup_steps + args.steps):
    tick = time.perf_counter()
    state, metrics = step(state, batches[i % len(batches)])
    jax.block_until_ready((state, metrics))
    if i >= args.warmup_steps:
      times.append(time.perf_counter() - tick)
  trainer.train_state = state
  trainer.close()
  loss = float(metrics["loss_per_nonpadding_target_token"].compute())

  median = statistics.median(times)
  tokens = batch * (inputs + targets)
  real = np.mean([
      (b["encoder_segment_ids"] > 0).sum()
      + (b["decoder_segment_ids"] > 0).sum()
      for b in batches
  ])
  flops = model_flops(model.module.config, batch, inputs, targets)["train"]
  return {
      "config": name,
      "params": params,
      "shape": f"{batch} x ({inputs} + {targets})",
      "fill": real / tokens,
      "compile_s": compile_s,
      "step_s": median,
      "step_range": (min(times), max(times)),
      "tokens_s": tokens / median,
      "real_tokens_s": real / median,
      "flops": flops,
      "xla": xla,
      "matmul": matmul,
      "gflops_s": flops / median / 1e9,
      "loss": loss,
  }


def hlo_matmul_flops(stablehlo: str) -> float | None:
  """2 x multiply-adds of every `dot_general` in a StableHLO module's text.

  Args:
    stablehlo: `Lowered.as_text()`.

  Returns:
    The FLOPs, or None where a `dot_general` line could not be read.
  """
  total = 0
  for line in stablehlo.splitlines():
    if "stablehlo.dot_general" not in line:
      continue
    types = re.findall(r"tensor<([^>]*)>", line.rsplit(" : ", 1)[-1])
    if len(types) != 3:
      return None
    lhs, out = (
        [int(x) for x in t.split("x")[:-1]] for t in (types[0], types[2])
    )
    found = re.search(r"contracting_dims = \[([\d, ]*)\]", line)
    contracted = [int(x) for x in found.group(1).split(",") if x.strip()]
    total += 2 * math.prod(out) * math.prod(lhs[i] for i in contracted)
  return float(total)


def xla_lowered_flops(
    model, batch: int, inputs: int, targets: int
) -> tuple[float, float | None]:
  """XLA's counts for the T5X train step, lowered on abstract arrays only.

  Args:
    model: the `EncoderDecoderModel`.
    batch: rows per step.
    inputs: encoder length.
    targets: decoder length.

  Returns:
    (`cost_analysis()` FLOPs, all operations; FLOPs of the matmuls alone).
  """
  initializer, make_trainer = t5x_training(model, batch, inputs, targets)
  state = initializer.global_train_state_shape
  abstract = t5x_adapter.abstract_batch(
      batch, inputs, targets
  )
  trainer = make_trainer(state)
  # pylint: disable-next=protected-access
  lowered = trainer._partitioned_train_step.lower(state, abstract)
  trainer.close()
  return _xla_flops(lowered.cost_analysis()), hlo_matmul_flops(
      lowered.as_text()
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
      "--configs", default="tiny,mid", help="measured configs: tiny, mid"
  )
  parser.add_argument("--steps", type=int, default=5, help="timed steps")
  parser.add_argument(
      "--warmup_steps", type=int, default=1, help="untimed steps after compile"
  )
  parser.add_argument(
      "--batches", type=int, default=2, help="distinct synthetic batches"
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tiny_gin", default="gin/models/ankh3_tiny.gin")
  parser.add_argument(
      "--tiny_run_gin",
      default="gin/experiments/ankh3_tiny_sample.gin",
      help="lengths and batch of the tiny config are read from this file",
  )
  parser.add_argument(
      "--mid_gin",
      default="gin/models/ankh3_tiny.gin",
      help="the mid config is this file with the --mid_* sizes bound",
  )
  parser.add_argument("--mid_emb_dim", type=int, default=512)
  parser.add_argument("--mid_num_heads", type=int, default=8)
  parser.add_argument("--mid_head_dim", type=int, default=64)
  parser.add_argument("--mid_mlp_dim", type=int, default=1280)
  parser.add_argument("--mid_encoder_layers", type=int, default=8)
  parser.add_argument("--mid_decoder_layers", type=int, default=4)
  parser.add_argument("--mid_inputs_length", type=int, default=512)
  parser.add_argument("--mid_targets_length", type=int, default=320)
  parser.add_argument("--mid_batch_size", type=int, default=4)
  parser.add_argument(
      "--paper_run_gin",
      default="gin/experiments/ankh3_large_pretrain.gin",
      help="lengths and batch of Large and XL are read from this file",
  )
  parser.add_argument("--paper_batch_size", type=int, default=None)
  parser.add_argument("--paper_inputs_length", type=int, default=None)
  parser.add_argument("--paper_targets_length", type=int, default=None)
  parser.add_argument(
      "--xla_paper",
      action=argparse.BooleanOptionalAction,
      default=True,
      help="lower Large and XL at the paper's settings for XLA's count",
  )
  parser.add_argument(
      "--mfu", type=float, default=0.30, help="ASSUMED utilisation"
  )
  parser.add_argument("--chips", type=int, default=64, help="TPU v4 chips")
  parser.add_argument(
      "--chip_tflops", type=float, default=275.0, help="peak per chip"
  )
  parser.add_argument("--large_steps", type=float, default=4e6)
  parser.add_argument("--xl_steps", type=float, default=5e6)
  args = parser.parse_args()

  from absl import logging  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  # Adafactor warns once per parameter that it factors by heuristics.
  logging.set_verbosity(logging.ERROR)
  configs = [c for c in args.configs.split(",") if c]
  rows = []
  for name in configs:
    if name == "tiny":
      lengths, batch = _gin_run_settings(args.tiny_run_gin)
      model = build_model(args.tiny_gin)
      shape = (batch, lengths["inputs"], lengths["targets"])
    elif name == "mid":
      model = build_model(
          args.mid_gin,
          (
              f"network.Ankh3Config.emb_dim = {args.mid_emb_dim}",
              f"network.Ankh3Config.num_heads = {args.mid_num_heads}",
              f"network.Ankh3Config.head_dim = {args.mid_head_dim}",
              f"network.Ankh3Config.mlp_dim = {args.mid_mlp_dim}",
              (
                  "network.Ankh3Config.num_encoder_layers = "
                  f"{args.mid_encoder_layers}"
              ),
              (
                  "network.Ankh3Config.num_decoder_layers = "
                  f"{args.mid_decoder_layers}"
              ),
          ),
      )
      shape = (
          args.mid_batch_size,
          args.mid_inputs_length,
          args.mid_targets_length,
      )
    else:
      sys.exit(f"unknown config {name!r}; use tiny, mid")
    print(f"[{name}] compiling and timing ...", file=sys.stderr, flush=True)
    rows.append(measure(name, model, *shape, args))

  cpus = len(os.sched_getaffinity(0))
  print(
      f"jax {jax.__version__}, backend {jax.default_backend()}, {cpus} CPU "
      f"cores; {args.steps} timed steps after {args.warmup_steps} untimed"
  )
  if rows:
    print()
    _print_table(
        (
            "config",
            "params",
            "batch x (inputs + targets)",
            "non-pad",
            "compile s",
            "median step s (min-max)",
            "tokens/s",
            "non-pad tokens/s",
            "model FLOPs/step",
            "XLA FLOPs/step",
            "XLA / model",
            "HLO matmuls / model",
            "model GFLOP/s",
        ),
        [
            (
                r["config"],
                f"{r['params']:,}",
                r["shape"],
                f"{r['fill']:.0%}",
                f"{r['compile_s']:.1f}",
                (
                    f"{r['step_s']:.3f} ({r['step_range'][0]:.3f}-"
                    f"{r['step_range'][1]:.3f})"
                ),
                f"{r['tokens_s']:,.0f}",
                f"{r['real_tokens_s']:,.0f}",
                f"{r['flops']:.3e}",
                f"{r['xla']:.3e}",
                f"{r['xla'] / r['flops']:.3f}",
                _ratio(r["matmul"], r["flops"]),
                f"{r['gflops_s']:.1f}",
            )
            for r in rows
        ],
    )
    print(
        "loss per non-padding target token at the last step: "
        + ", ".join(f"{r['config']} {r['loss']:.3f}" for r in rows)
    )

  lengths, batch = _gin_run_settings(args.paper_run_gin)
  b = args.paper_batch_size or batch
  l = args.paper_inputs_length or lengths["inputs"]
  t = args.paper_targets_length or lengths["targets"]
  mfu = f"{args.mfu:.0%} MFU"
  print()
  print(
      f"Paper settings: batch {b}, inputs {l}, targets {t}. Step time and "
      f"days are DERIVED from an ASSUMED {mfu} on {args.chips} TPU v4 chips "
      f"x {args.chip_tflops:g} TFLOP/s peak; not measured."
  )
  print()
  header = ["model", "params", "model FLOPs/step", "attention share"]
  header += ["6 x params x (inputs + targets) x batch"]
  if args.xla_paper:
    header += ["XLA FLOPs/step", "XLA / model", "HLO matmuls / model"]
  header += [f"step s at {mfu}", "steps", f"days at {mfu}"]
  table = []
  for name, gin_file, steps in (
      ("Large", "gin/models/ankh3_large.gin", args.large_steps),
      ("XL", "gin/models/ankh3_xl.gin", args.xl_steps),
  ):
    model = build_model(gin_file)
    params = count_params(model)
    counted = model_flops(model.module.config, b, l, t)
    parts = counted["parts"]
    attention = (
        parts["encoder attention"] + parts["decoder attention"]
    ) / counted["forward"]
    step_s = counted["train"] / (args.mfu * args.chips * args.chip_tflops)
    step_s /= 1e12
    row = [name, f"{params:,}", f"{counted['train']:.3e}", f"{attention:.1%}"]
    row += [f"{6 * params * (l + t) * b:.3e}"]
    if args.xla_paper:
      print(f"[{name}] lowering ...", file=sys.stderr, flush=True)
      xla, matmul = xla_lowered_flops(model, b, l, t)
      row += [f"{xla:.3e}", f"{xla / counted['train']:.3f}"]
      row += [_ratio(matmul, counted["train"])]
    row += [f"{step_s:.2f}", f"{steps:,.0f}", f"{steps * step_s / 86400:.0f}"]
    table.append(row)
  _print_table(header, table)


def _ratio(x: float | None, y: float) -> str:
  return "n/a" if x is None else f"{x / y:.6f}"


def _print_table(header, rows) -> None:
  """Prints a Markdown table."""
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for row in rows:
    print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
  main()
