"""Trains a ConvBERT head on frozen embeddings, as the Ankh papers do.

  result = train.fit("residue", 3, train_pairs, valid_pairs,
                     metric_fn=accuracy)   # the paper's settings
  predictions = train.predict("residue", result.params, test_pairs)

The reference (github.com/agemagician/Ankh, `examples/*.ipynb`) trains each
head with the Hugging Face `Trainer`; this loop does what that Trainer does
with the papers' `TrainingArguments` (Ankh3 Table 4): batch size 1, 16
gradient-accumulation steps, learning rate 1e-2 warmed up over 1,000
optimizer steps, 20 epochs, no weight decay, seeds 7, 0 and 42, evaluation
every epoch and `load_best_model_at_end=True` on the task's metric. What the
Trainer adds by default, this loop adds too:

  * AdamW (betas 0.9 / 0.999, epsilon 1e-8; `optax.adamw`), weight decay
    (none here) on kernels only, not on biases and layer norms;
  * the gradient clipped to global norm 1 (`max_grad_norm`) before each
    optimizer step;
  * the "linear" schedule: 0 -> learning rate over the warm-up, then down to
    0 at the last step. Both count optimizer steps (each one after
    `grad_accumulation` micro-batches), not micro-batches; the first
    optimizer step runs at learning rate 0, as in the Trainer;
  * a gradient-accumulation window is the mean of its micro-batches'
    gradients; the last window of an epoch may be shorter, is still stepped
    and is the mean over its own micro-batches (as the Trainer of
    transformers 5 does; older releases treated that remainder otherwise).

Losses (`kinds.TaskKind.losses`; each the mean over a micro-batch's
labelled items, as the reference heads compute them): cross entropy over
residues with a label >= 0 (the reference marks unlabelled ones -100, here
any negative label); squared error of the protein's value; binary cross
entropy of contacts over pairs with a label >= 0 and
`|i - j| >= contact_min_separation` (6: the short-range pairs every contact
benchmark leaves out; the reference's loss itself masks only -1, which
`contact_min_separation=0` reproduces).

Where the Trainer's randomness cannot be matched, the seed decides instead:
the head's initialisation (`jax.random.PRNGKey(seed)`), dropout (one key per
micro-batch, folded from it) and the order of the examples in each epoch
(`numpy.random.default_rng(seed)`). The same seed gives the same history and
parameters.

Proteins differ in length. A micro-batch is padded, with a mask, to the
next multiple of `pad_multiple` (64) residues, so the loop compiles once
per such length; the heads' outputs for a protein do not depend on its
padding.
"""

from collections.abc import Callable, Sequence
import dataclasses
import functools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from ankh3_tasks import progress as progress_lib
from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import kinds

Array = jax.Array
Params = Any
# (embedding float32 [L, D], label): int [L] for residue tasks, a float for
# protein tasks, int [L, L] for contacts; -1 (any negative) = no label.
Example = tuple[np.ndarray, Any]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The training settings; defaults are the papers' (Ankh3 Table 4).

  Attributes:
    learning_rate: peak learning rate (paper: 1e-2).
    warmup_steps: optimizer steps of linear warm-up from 0 (paper: 1,000).
    epochs: passes over the training set (paper: 20).
    batch_size: proteins per micro-batch (paper: 1).
    grad_accumulation: micro-batches per optimizer step (paper: 16).
    weight_decay: decoupled weight decay of AdamW (paper: 0).
    seeds: the seeds a benchmark runs and averages (paper: 7, 0, 42);
      `fit` uses the first unless given one.
    adam_b1: AdamW beta 1 (Trainer default: 0.9).
    adam_b2: AdamW beta 2 (Trainer default: 0.999).
    adam_eps: AdamW epsilon (Trainer default: 1e-8).
    max_grad_norm: global-norm clipping of each step's gradient, 0 for none
      (Trainer default: 1.0).
    keep_best: return the parameters of the epoch with the best validation
      metric (the reference's `load_best_model_at_end=True`); else the last
      epoch's.
    contact_min_separation: contact pairs closer than this in sequence are
      left out of the loss.
    label_mean_bias: a protein regressor's output bias starts at the mean
      training label (the reference's `training_labels_mean`, which its
      regression notebook passes); else at 0.
    pad_multiple: proteins are padded to a multiple of this length (one
      compilation per multiple).
    eval_batch_size: proteins per batch when predicting.
  """

  learning_rate: float = 1e-2
  warmup_steps: int = 1000
  epochs: int = 20
  batch_size: int = 1
  grad_accumulation: int = 16
  weight_decay: float = 0.0
  seeds: tuple[int, ...] = (7, 0, 42)
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  max_grad_norm: float = 1.0
  keep_best: bool = True
  contact_min_separation: int = 6
  label_mean_bias: bool = True
  pad_multiple: int = 64
  eval_batch_size: int = 8

  def __post_init__(self):
    positive = {
        "epochs": self.epochs,
        "batch_size": self.batch_size,
        "grad_accumulation": self.grad_accumulation,
        "pad_multiple": self.pad_multiple,
        "eval_batch_size": self.eval_batch_size,
    }
    bad = {k: v for k, v in positive.items() if v < 1}
    if bad:
      raise ValueError(f"These must be >= 1: {bad}.")
    if self.warmup_steps < 0 or self.contact_min_separation < 0:
      raise ValueError(
          "warmup_steps and contact_min_separation must be >= 0; got "
          f"{self.warmup_steps}, {self.contact_min_separation}."
      )

  def steps_per_epoch(self, num_examples: int) -> int:
    """Optimizer steps per epoch: 1000 proteins, batch 1, 16 -> 63."""
    micro = math.ceil(num_examples / self.batch_size)
    return math.ceil(micro / self.grad_accumulation)


@dataclasses.dataclass
class FitResult:
  """What `fit` returns.

  Attributes:
    params: the head's parameters: of the best validation epoch (or the
      last, with `keep_best=False`).
    history: one dict per epoch: `epoch` (from 1), `train_loss` (mean over
      its micro-batches), `valid_metric`, `learning_rate` (of its last
      optimizer step), `steps` (optimizer steps so far).
    best_epoch: the epoch (from 1) of the best validation metric; the first
      of equals (as the Trainer), and a NaN metric only before any number.
    best_valid_metric: its metric.
  """

  params: Params
  history: list[dict[str, float]]
  best_epoch: int
  best_valid_metric: float


def learning_rate_schedule(
    config: TrainConfig, total_steps: int
) -> optax.Schedule:
  """The Trainer's "linear" schedule over `total_steps` optimizer steps.

  With warm-up w, peak r and T steps, step s runs at r * s / w while s < w,
  then at r * (T - s) / (T - w), never below 0.

  Args:
    config: learning rate and warm-up.
    total_steps: optimizer steps of the whole run.

  Returns:
    A function of the optimizer step count.
  """
  peak = config.learning_rate
  warmup = config.warmup_steps
  decay = max(1, total_steps - warmup)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    up = step / max(1, warmup)
    down = jnp.maximum(0.0, (total_steps - step) / decay)
    return peak * jnp.where(step < warmup, up, down)

  return schedule


def _decays(params: Params) -> Params:
  """True for kernels: the Trainer spares biases and layer norms decay."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key not in ("bias", "scale"), params
  )


def optimizer(
    config: TrainConfig, total_steps: int
) -> optax.GradientTransformation:
  """Clipping, then AdamW on the linear schedule, as the Trainer steps."""
  adamw = optax.adamw(
      learning_rate_schedule(config, total_steps),
      b1=config.adam_b1,
      b2=config.adam_b2,
      eps=config.adam_eps,
      weight_decay=config.weight_decay,
      mask=_decays,
  )
  if config.max_grad_norm > 0:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adamw)
  return adamw


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _embedding(example: Any) -> np.ndarray:
  return example[0] if isinstance(example, tuple) else example


def _check(
    kind: kinds.TaskKind, examples: Sequence[Example], name: str
) -> tuple[int, list[Any]]:
  """Checks the examples of a set in one pass over them.

  Returns:
    Their embedding width and their labels, in order.

  Raises:
    ValueError: for no examples, or an embedding or label of the wrong shape
      (naming the set and index).
  """
  if not examples:
    raise ValueError(f"{name} has no examples.")
  width = None
  labels = []
  for i, (embedding, label) in enumerate(examples):
    shape = np.shape(embedding)
    if len(shape) != 2 or shape[0] < 1:
      raise ValueError(f"{name}[{i}]: embedding shape {shape}, not [L, D].")
    if width is None:
      width = shape[1]
    elif shape[1] != width:
      raise ValueError(
          f"{name}[{i}]: embedding width {shape[1]}, but {name}[0] has {width}."
      )
    labels.append(label)
    if not kind.label_fits(label, shape[0]):
      raise ValueError(
          f"{name}[{i}]: {kind.name} label shape {np.shape(label)}, expected "
          f"{kind.label_shape(shape[0])} for a protein of {shape[0]} residues."
      )
  return width, labels


def _lengths(examples: Sequence[Any]) -> list[int]:
  """Proteins' lengths: from `examples.lengths()` if it has one (no reads)."""
  lengths = getattr(examples, "lengths", None)
  if lengths is not None:
    return list(lengths())
  return [len(_embedding(e)) for e in examples]


def _batch(
    kind: kinds.TaskKind, examples: Sequence[Any], rows: int, multiple: int
) -> tuple[np.ndarray, ...]:
  """Pads examples into arrays of `rows` proteins; labels too if given."""
  lengths = [len(_embedding(e)) for e in examples]
  width = _round_up(max(lengths), multiple)
  dim = np.shape(_embedding(examples[0]))[1]
  x = np.zeros((rows, width, dim), np.float32)
  mask = np.zeros((rows, width), bool)
  for r, (e, n) in enumerate(zip(examples, lengths)):
    x[r, :n] = _embedding(e)
    mask[r, :n] = True
  if not isinstance(examples[0], tuple):
    return x, mask
  labels = kind.batch_labels([e[1] for e in examples], lengths, rows, width)
  return x, mask, labels


def _loss(
    kind: kinds.TaskKind,
    min_separation: int,
    outputs: Array,
    mask: Array,
    labels: Array,
) -> Array:
  """Mean loss over the labelled items of a micro-batch (0 if none)."""
  losses, valid = kind.losses(outputs, mask, labels, min_separation)
  count = jnp.maximum(jnp.sum(valid), 1)
  return jnp.sum(jnp.where(valid, losses, 0.0)) / count


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(4,))
def _accumulate(model, kind, min_separation, params, acc, x, mask, labels, rng):
  """Adds a micro-batch's gradient to `acc`; returns it and the loss."""

  def loss_fn(p):
    outputs = model.apply(
        {"params": p}, x, mask, deterministic=False, rngs={"dropout": rng}
    )
    return _loss(kind, min_separation, outputs, mask, labels)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  return jax.tree_util.tree_map(jnp.add, acc, grads), loss


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(3, 4))
def _step(config, total_steps, params, opt_state, acc, count):
  """One optimizer step on the mean of `count` accumulated gradients."""
  grads = jax.tree_util.tree_map(lambda g: g / count, acc)
  updates, opt_state = optimizer(config, total_steps).update(
      grads, opt_state, params
  )
  return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(model, kind, params, x, mask):
  return kind.decode(model.apply({"params": params}, x, mask))


def predict(
    kind: str,
    params: Params,
    examples: Sequence[Any],
    head_config: Optional[convbert.HeadConfig] = None,
    *,
    batch_size: int = 8,
    pad_multiple: int = 64,
) -> list[np.ndarray]:
  """Returns the head's predictions, one array per protein, in order.

  Args:
    kind: `residue`, `protein` or `contact`.
    params: the head's parameters (`FitResult.params`).
    examples: embeddings float [L, D], or (embedding, label) pairs (labels
      are ignored); each is read once. If it has a `lengths()` method
      (`harness.Pairs`), the proteins' lengths come from it.
    head_config: the head's settings (`convbert.HeadConfig()` if None).
    batch_size: proteins per batch (proteins are batched by length).
    pad_multiple: proteins are padded to a multiple of this length.

  Returns:
    Per protein: class ids int32 [L] (`residue`), a float32 scalar
    (`protein`) or contact probabilities float64 [L, L], symmetric
    (`contact`; float64 so that confident pairs keep their order).
  """
  task_kind = kinds.get(kind)
  head_config = head_config or convbert.HeadConfig()
  model = task_kind.head(task_kind.num_outputs(params), head_config)
  lengths = _lengths(examples)
  order = sorted(range(len(examples)), key=lambda i: lengths[i])
  results = [None] * len(examples)
  for start in range(0, len(order), batch_size):
    members = order[start : start + batch_size]
    # Each embedding read once (`examples` may read it from a file).
    x, mask = _batch(
        task_kind,
        [_embedding(examples[i]) for i in members],
        batch_size,
        pad_multiple,
    )
    out = np.asarray(_forward(model, task_kind, params, x, mask))
    predictions = task_kind.unbatch(out, [lengths[i] for i in members])
    for i, prediction in zip(members, predictions):
      results[i] = prediction
  return results


def _better(
    metric: float, best: Optional[float], higher_is_better: bool
) -> bool:
  """Strictly better (ties keep the earlier epoch); NaN loses to a number."""
  if best is None or (math.isnan(best) and not math.isnan(metric)):
    return True
  return metric > best if higher_is_better else metric < best


def fit(
    kind: str,
    num_outputs: int,
    train: Sequence[Example],
    valid: Sequence[Example],
    *,
    metric_fn: Callable[[list[np.ndarray], list[Any]], float],
    head_config: Optional[convbert.HeadConfig] = None,
    train_config: Optional[TrainConfig] = None,
    seed: Optional[int] = None,
    higher_is_better: bool = True,
    progress: bool = True,
) -> FitResult:
  """Trains a head on frozen embeddings; keeps its best validation epoch.

  `fit("residue", 3, train, valid, metric_fn=accuracy)` trains a
  `ResidueClassifier` on (embedding [L, D], label [L]) pairs for 20 epochs
  and returns the parameters of the epoch whose `predict(...)` on `valid`
  scored the highest `accuracy(predictions, labels)`.

  Args:
    kind: `residue` (label int [L], class ids, negative = unlabelled),
      `protein` (label: a float) or `contact` (label int [L, L]: 1 contact,
      0 none, negative = unknown).
    num_outputs: classes per residue (`residue`); 1 (`protein`); 1 or 2
      (`contact`).
    train: training (embedding float32 [L, D], label) pairs.
    valid: validation pairs, scored after every epoch.
    metric_fn: `metric_fn(predictions, labels) -> float`, with `predict`'s
      outputs for `valid` and its labels, in order.
    head_config: the head (`convbert.HeadConfig()`, the paper's, if None).
    train_config: the training (`TrainConfig()`, the paper's, if None).
    seed: the run's seed (`train_config.seeds[0]` if None).
    higher_is_better: whether a larger metric is better.
    progress: show a progress bar per epoch.

  Returns:
    The `FitResult`.

  Raises:
    ValueError: for an unknown kind, a bad number of outputs, or examples
      of the wrong shapes or widths (naming the set and index).
  """
  head_config = head_config or convbert.HeadConfig()
  cfg = train_config or TrainConfig()
  seed = cfg.seeds[0] if seed is None else seed
  task_kind = kinds.get(kind)
  model = task_kind.head(num_outputs, head_config)
  # One pass over each set (the embeddings may be read from a file); the
  # labels it returns serve below, without reading the embeddings again.
  width, train_labels = _check(task_kind, train, "train")
  valid_width, valid_labels = _check(task_kind, valid, "valid")
  if valid_width != width:
    raise ValueError(
        f"valid embeddings are {valid_width} wide, train embeddings {width}."
    )
  task_kind.check_labels(train_labels, num_outputs)

  init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  params = convbert.init_params(model, width, init_key)
  if cfg.label_mean_bias:
    params = task_kind.label_mean_bias(params, train_labels)
  total_steps = cfg.epochs * cfg.steps_per_epoch(len(train))
  opt_state = optimizer(cfg, total_steps).init(params)
  schedule = learning_rate_schedule(cfg, total_steps)
  order_rng = np.random.default_rng(seed)
  zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)

  history = []
  best = None  # (metric, epoch, params)
  micro_step = 0
  steps = 0
  for epoch in range(1, cfg.epochs + 1):
    order = order_rng.permutation(len(train))
    batches = [
        order[i : i + cfg.batch_size]
        for i in range(0, len(order), cfg.batch_size)
    ]
    losses = []
    bar = tqdm.tqdm(
        total=len(batches),
        desc=f"epoch {epoch}/{cfg.epochs}",
        unit="batch",
        disable=not progress,
        leave=False,
        **progress_lib.bar_options(),
    )
    for start in range(0, len(batches), cfg.grad_accumulation):
      window = batches[start : start + cfg.grad_accumulation]
      acc = zeros()
      for members in window:
        x, mask, labels = _batch(
            task_kind,
            [train[i] for i in members],
            cfg.batch_size,
            cfg.pad_multiple,
        )
        rng = jax.random.fold_in(dropout_key, micro_step)
        acc, loss = _accumulate(
            model,
            task_kind,
            cfg.contact_min_separation,
            params,
            acc,
            x,
            mask,
            labels,
            rng,
        )
        losses.append(loss)
        micro_step += 1
        bar.update(1)
      params, opt_state = _step(
          cfg,
          total_steps,
          params,
          opt_state,
          acc,
          jnp.float32(len(window)),
      )
      steps += 1
      if progress:
        bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
    bar.close()

    predictions = predict(
        kind,
        params,
        valid,
        head_config,
        batch_size=cfg.eval_batch_size,
        pad_multiple=cfg.pad_multiple,
    )
    metric = float(metric_fn(predictions, valid_labels))
    history.append({
        "epoch": epoch,
        "train_loss": float(np.mean(jax.device_get(losses))),
        "valid_metric": metric,
        "learning_rate": float(schedule(steps - 1)),
        "steps": steps,
    })
    if _better(metric, best and best[0], higher_is_better):
      best = (metric, epoch, params)
    if progress:
      tqdm.tqdm.write(
          f"epoch {epoch}/{cfg.epochs}: train loss "
          f"{history[-1]['train_loss']:.4f}, valid metric {metric:.4f}"
      )
  return FitResult(
      params=best[2] if cfg.keep_best else params,
      history=history,
      best_epoch=best[1],
      best_valid_metric=best[0],
  )
