"""The kinds of downstream task: one object per kind, in one table.

A kind is what a task predicts: `residue` (a class per residue: secondary
structure), `protein` (a value per protein: fluorescence, GB1) or `contact`
(a logit per residue pair). Everything that depends on the kind lives in its
`TaskKind`:

  what            residue             protein            contact
  label           int32 [L]           float32 ()         int8 [L, L]
                  (-1: unlabelled)                       (-1: unknown)
  head            ResidueClassifier   ProteinRegressor   ContactPredictor
  loss            cross entropy       squared error      binary cross entropy
  prediction      class ids [L]       float32 ()         probabilities [L, L]
  metric          accuracy            spearman           contact
  picks epochs    accuracy            spearman           precision_at_l

`datasets.TASKS` names the kind of each task; `train` and `harness` look it
up with `get(name)`. A new kind is a `TaskKind` subclass added to `KINDS`
(and, if it needs one, its metric in `metrics`).
"""

import abc
from collections.abc import Sequence
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import metrics

Array = jax.Array
Params = Any


class TaskKind(abc.ABC):
  """What a kind of task predicts, and how it is trained and scored.

  Attributes:
    name: its key in `KINDS` (`TaskSpec.kind`).
    metric: the `metrics.compute` name of its test metric.
    selection_metric: the entry of that metric's result that picks the best
      validation epoch.
  """

  name: str
  metric: str
  selection_metric: str

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.name!r})"

  # ------------------------------------------------------------- labels

  @abc.abstractmethod
  def label_shape(self, length: int) -> tuple[int, ...]:
    """The label shape of a protein of `length` residues."""
    raise NotImplementedError

  def label_fits(self, label: Any, length: int) -> bool:
    """Whether a label has the shape of this kind for `length` residues."""
    return np.shape(label) == self.label_shape(length)

  def check_labels(self, labels: Sequence[Any], num_outputs: int) -> None:
    """Checks training labels against the head's outputs; see `fit`.

    Raises:
      ValueError: for a label the head cannot predict.
    """
    del labels, num_outputs

  @abc.abstractmethod
  def random_label(
      self, rng: np.random.Generator, length: int, num_outputs: int
  ) -> np.ndarray:
    """A random label of this kind (speed runs and smoke tests)."""
    raise NotImplementedError

  # --------------------------------------------------------------- head

  @abc.abstractmethod
  def head(self, num_outputs: int, config: convbert.HeadConfig) -> nn.Module:
    """The ConvBERT head of this kind.

    Raises:
      ValueError: for a number of outputs the kind cannot have.
    """
    raise NotImplementedError

  def num_outputs(self, params: Params) -> int:
    """The `num_outputs` of the head that has `params`."""
    del params
    return 1

  def label_mean_bias(self, params: Params, labels: Sequence[Any]) -> Params:
    """`params` whose output bias starts at the mean label, where it can."""
    del labels
    return params

  # ----------------------------------------------------------- batching

  @abc.abstractmethod
  def batch_labels(
      self,
      labels: Sequence[Any],
      lengths: Sequence[int],
      rows: int,
      width: int,
  ) -> np.ndarray:
    """Pads labels into an array of `rows` proteins of `width` residues."""
    raise NotImplementedError

  # ---------------------------------------------------------- training

  @abc.abstractmethod
  def losses(
      self,
      outputs: Array,
      mask: Array,
      labels: Array,
      min_separation: int,
  ) -> tuple[Array, Array]:
    """The loss of each item of a micro-batch and whether it counts.

    Args:
      outputs: the head's outputs for the micro-batch.
      mask: bool [B, L], true on residues.
      labels: `batch_labels(...)`.
      min_separation: residue pairs closer than this in sequence do not
        count (`TrainConfig.contact_min_separation`; read by contacts).

    Returns:
      The losses and a boolean array of their shape (labelled items).
    """
    raise NotImplementedError

  # -------------------------------------------------------- prediction

  def decode(self, outputs: Array) -> Array:
    """What `predict` brings back from the device (inside `jax.jit`)."""
    return outputs

  @abc.abstractmethod
  def unbatch(
      self, outputs: np.ndarray, lengths: Sequence[int]
  ) -> list[np.ndarray]:
    """Each protein's prediction from a batch of decoded outputs."""
    raise NotImplementedError

  # ----------------------------------------------------------- scoring

  def score(
      self, predictions: Sequence[Any], labels: Sequence[Any]
  ) -> dict[str, float]:
    """Scores a test set: `metrics.compute(self.metric, ...)`."""
    return metrics.compute(self.metric, predictions, labels)

  def valid_metric(
      self, predictions: Sequence[Any], labels: Sequence[Any]
  ) -> float:
    """The validation metric that picks the best epoch."""
    return self.score(predictions, labels)[self.selection_metric]


class Residue(TaskKind):
  """A class per residue (secondary structure): cross entropy, accuracy.

  Labels are int32 [L] class ids; negative ones (-1) are not labelled and
  count neither in the loss nor in the accuracy.
  """

  name = "residue"
  metric = "accuracy"
  selection_metric = "accuracy"

  def label_shape(self, length: int) -> tuple[int, ...]:
    return (length,)

  def check_labels(self, labels: Sequence[Any], num_outputs: int) -> None:
    top = max(int(np.max(label, initial=-1)) for label in labels)
    if top >= num_outputs:
      raise ValueError(
          f"A train label is {top}, but num_outputs={num_outputs} classes."
      )

  def random_label(
      self, rng: np.random.Generator, length: int, num_outputs: int
  ) -> np.ndarray:
    return rng.integers(0, num_outputs, length).astype(np.int32)

  def head(self, num_outputs: int, config: convbert.HeadConfig) -> nn.Module:
    if num_outputs < 2:
      raise ValueError(f"residue heads need >= 2 classes, got {num_outputs}.")
    return convbert.ResidueClassifier(num_outputs, config)

  def num_outputs(self, params: Params) -> int:
    return params["decoder"]["kernel"].shape[-1]

  def batch_labels(
      self,
      labels: Sequence[Any],
      lengths: Sequence[int],
      rows: int,
      width: int,
  ) -> np.ndarray:
    batch = np.full((rows, width), -1, np.int32)
    for r, (label, n) in enumerate(zip(labels, lengths)):
      batch[r, :n] = label
    return batch

  def losses(
      self,
      outputs: Array,
      mask: Array,
      labels: Array,
      min_separation: int,
  ) -> tuple[Array, Array]:
    del min_separation
    valid = (labels >= 0) & mask
    targets = jnp.maximum(labels, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    return losses, valid

  def decode(self, outputs: Array) -> Array:
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)

  def unbatch(
      self, outputs: np.ndarray, lengths: Sequence[int]
  ) -> list[np.ndarray]:
    return [outputs[r, :n] for r, n in enumerate(lengths)]


class Protein(TaskKind):
  """A value per protein (fluorescence, GB1): squared error, Spearman.

  Labels are float32 scalars (any array of one value is read as one).
  """

  name = "protein"
  metric = "spearman"
  selection_metric = "spearman"

  def label_shape(self, length: int) -> tuple[int, ...]:
    del length
    return ()

  def label_fits(self, label: Any, length: int) -> bool:
    return np.size(label) == 1

  def random_label(
      self, rng: np.random.Generator, length: int, num_outputs: int
  ) -> np.ndarray:
    del length, num_outputs
    return np.float32(rng.normal())

  def head(self, num_outputs: int, config: convbert.HeadConfig) -> nn.Module:
    if num_outputs != 1:
      raise ValueError(f"protein heads have 1 output, got {num_outputs}.")
    return convbert.ProteinRegressor(config)

  def label_mean_bias(self, params: Params, labels: Sequence[Any]) -> Params:
    mean = float(np.mean([np.asarray(y, np.float64) for y in labels]))
    decoder = dict(params["decoder"], bias=jnp.full((1,), mean, jnp.float32))
    return dict(params, decoder=decoder)

  def batch_labels(
      self,
      labels: Sequence[Any],
      lengths: Sequence[int],
      rows: int,
      width: int,
  ) -> np.ndarray:
    del lengths, width
    batch = np.zeros((rows,), np.float32)
    for r, label in enumerate(labels):
      batch[r] = np.asarray(label, np.float32).reshape(())
    return batch

  def losses(
      self,
      outputs: Array,
      mask: Array,
      labels: Array,
      min_separation: int,
  ) -> tuple[Array, Array]:
    del min_separation
    return (outputs - labels) ** 2, jnp.any(mask, axis=1)

  def unbatch(
      self, outputs: np.ndarray, lengths: Sequence[int]
  ) -> list[np.ndarray]:
    return [outputs[r].astype(np.float32) for r in range(len(lengths))]


class Contact(TaskKind):
  """A logit per residue pair: binary cross entropy, contact precision.

  Labels are int8 [L, L]: 1 contact, 0 none, -1 unknown. The loss leaves
  out unknown pairs and pairs closer than `min_separation` in sequence;
  epochs are picked by precision at L over pairs at least 6 apart.
  """

  name = "contact"
  metric = "contact"
  selection_metric = "precision_at_l"

  def label_shape(self, length: int) -> tuple[int, ...]:
    return (length, length)

  def random_label(
      self, rng: np.random.Generator, length: int, num_outputs: int
  ) -> np.ndarray:
    del num_outputs
    label = (rng.random((length, length)) < 0.05).astype(np.int8)
    return np.maximum(label, label.T)

  def head(self, num_outputs: int, config: convbert.HeadConfig) -> nn.Module:
    if num_outputs not in (1, 2):
      raise ValueError(
          f"contact heads have 1 logit (2 classes), got {num_outputs}."
      )
    return convbert.ContactPredictor(config)

  def batch_labels(
      self,
      labels: Sequence[Any],
      lengths: Sequence[int],
      rows: int,
      width: int,
  ) -> np.ndarray:
    batch = np.full((rows, width, width), -1, np.int8)
    for r, (label, n) in enumerate(zip(labels, lengths)):
      batch[r, :n, :n] = label
    return batch

  def losses(
      self,
      outputs: Array,
      mask: Array,
      labels: Array,
      min_separation: int,
  ) -> tuple[Array, Array]:
    labels = labels.astype(jnp.int32)
    index = jnp.arange(labels.shape[-1])
    far = jnp.abs(index[:, None] - index[None, :]) >= min_separation
    valid = (labels >= 0) & far & mask[:, :, None] & mask[:, None, :]
    losses = optax.sigmoid_binary_cross_entropy(
        outputs, (labels > 0).astype(outputs.dtype)
    )
    return losses, valid

  def unbatch(
      self, outputs: np.ndarray, lengths: Sequence[int]
  ) -> list[np.ndarray]:
    # Logits to probabilities in float64: float32 rounds every logit above
    # about 16.6 to 1.0, and ties would rank pairs by position instead.
    probabilities = 1.0 / (1.0 + np.exp(-outputs.astype(np.float64)))
    return [probabilities[r, :n, :n] for r, n in enumerate(lengths)]

  def valid_metric(
      self, predictions: Sequence[Any], labels: Sequence[Any]
  ) -> float:
    # Precision at L alone: the other three of `score` are not needed.
    return metrics.mean_contact_precision(predictions, labels)


KINDS: dict[str, TaskKind] = {
    kind.name: kind for kind in (Residue(), Protein(), Contact())
}


def get(name: str) -> TaskKind:
  """Returns the kind named `name` (`residue`, `protein` or `contact`).

  Raises:
    ValueError: for an unknown name, listing the kinds.
  """
  if name not in KINDS:
    names = [repr(k) for k in KINDS]
    raise ValueError(
        f"kind must be {', '.join(names[:-1])} or {names[-1]}, got {name!r}."
    )
  return KINDS[name]
