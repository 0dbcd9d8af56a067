"""seqio metrics of the Ankh3 evaluation tasks (`t5x.eval`).

From T5X's scores (the summed log-likelihood of each example's targets,
teacher-forced), over a whole split:

  TokenCrossEntropy      nats per target id (`</s>` and sentinels included,
                         as in training) and perplexity.

From per-token scores (`t5x_adapter.token_scoring`, which
`gin/runs/ankh3_eval.gin` sets up):

  ResidueCrossEntropy    nats per target residue (sentinels and `</s>`
                         excluded), beside the composition baseline: the
                         same residues guessed from the training residues'
                         frequencies alone.

From T5X's greedy decodes (residues only, no sentinel or `</s>` counted):

  MaskedResidueAccuracy  share of masked residues restored (denoising).
  CompletionIdentity     share of the true continuation reproduced, residue
                         by residue (completion).

Teacher-forced token accuracy cannot be had from sequence scores;
`gin/runs/ankh3_eval.gin` gets it from T5X's training evaluator.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import math
from typing import Any, ClassVar, Optional

import numpy as np
import seqio

from ankh3_tasks import vocabularies


@dataclasses.dataclass(frozen=True)
class TokenCrossEntropy(seqio.metrics.Metric):
  """Cross entropy per target token (nats) and perplexity, from scores.

  For two examples with targets of 4 and 6 ids (`</s>` included) and scores
  -8.0 and -3.0: cross entropy (8 + 3) / 10 = 1.1, perplexity e^1.1.

  Attributes:
    negative_log_likelihood: summed over examples.
    num_tokens: target ids scored, summed over examples.
    num_examples: examples scored.
  """

  negative_log_likelihood: float
  num_tokens: int
  num_examples: int

  model_output_type: ClassVar[seqio.metrics.ModelOutputType] = (
      seqio.metrics.ModelOutputType.SCORE
  )

  @classmethod
  def from_model_output(
      cls,
      inputs: Sequence[Mapping[str, Any]],
      model_output: np.ndarray,
      features: Mapping[str, seqio.Feature],
      target_field_name: str = "targets",
      mask: Optional[np.ndarray] = None,
      indices_2d: Optional[np.ndarray] = None,
  ) -> "TokenCrossEntropy":
    """Sums scores and target lengths; see the class docstring.

    Args:
      inputs: the task's examples, in the order of `model_output`.
      model_output: one summed log-likelihood per example, or one per
        target id (`[examples, target length]`), summed here.
      features: the task's output features (unused).
      target_field_name: the feature scored.
      mask: optional bool per example; False drops the example.
      indices_2d: unused.

    Returns:
      The metric over these examples.

    Raises:
      ValueError: if there are more or fewer scores than examples.
    """
    del features, indices_2d
    scores = np.asarray(model_output, dtype=np.float64)
    if scores.ndim == 2:
      scores = scores.sum(-1)
    scores = scores.reshape(-1)
    lengths = np.array(
        [np.count_nonzero(ex[target_field_name]) for ex in inputs],
        dtype=np.int64,
    )
    if len(lengths) != len(scores):
      raise ValueError(
          f"{len(scores)} scores for {len(lengths)} examples: the scores "
          "must be one per example, in order."
      )
    if mask is None:
      keep = np.ones(len(scores), bool)
    else:
      keep = np.asarray(mask, bool)
    return cls(
        negative_log_likelihood=float(-scores[keep].sum()),
        num_tokens=int(lengths[keep].sum()),
        num_examples=int(keep.sum()),
    )

  def merge(self, other: "TokenCrossEntropy") -> "TokenCrossEntropy":
    return TokenCrossEntropy(
        negative_log_likelihood=(
            self.negative_log_likelihood + other.negative_log_likelihood
        ),
        num_tokens=self.num_tokens + other.num_tokens,
        num_examples=self.num_examples + other.num_examples,
    )

  def compute(self) -> dict[str, float]:
    """Returns `cross_entropy_per_token`, `perplexity` and the counts."""
    if not self.num_tokens:
      cross_entropy = float("nan")
    else:
      cross_entropy = self.negative_log_likelihood / self.num_tokens
    return {
        "cross_entropy_per_token": cross_entropy,
        "perplexity": float(np.exp(cross_entropy)),
        "num_target_tokens": float(self.num_tokens),
        "num_examples": float(self.num_examples),
    }


def entropy(composition: Mapping[str, int]) -> float:
  """Entropy (nats) of residue counts: `{"A": 1, "K": 1}` -> ln 2."""
  counts = np.array([n for n in composition.values() if n > 0], np.float64)
  if not counts.size:
    return float("nan")
  p = counts / counts.sum()
  return float(-(p * np.log(p)).sum())


@dataclasses.dataclass(frozen=True)
class ResidueCrossEntropy(seqio.metrics.Metric):
  """Cross entropy per target residue (nats), beside the composition.

  Only residues count: sentinels, `</s>`, `<unk>` and padding are left out.
  The baseline scores the same residues by the training residues'
  frequencies q (a model that learned the composition and nothing else):
  `composition_baseline` = mean of -ln q(residue); `composition_entropy` is
  the entropy of q itself. A model learns more than the composition where
  `residue_cross_entropy` < `composition_baseline`. Targets `<extra_id_0> K
  A </s>` with per-token scores [-0.1, -1.0, -2.0, -0.2] give (1.0 + 2.0) /
  2 = 1.5.

  Bind the composition with `with_composition`; without one the baseline
  fields are NaN.

  Attributes:
    negative_log_likelihood: summed over residues.
    baseline_negative_log_likelihood: -ln q summed over the same residues.
    num_residues: residues scored.
    composition_entropy: entropy of q.
  """

  negative_log_likelihood: float
  baseline_negative_log_likelihood: float
  num_residues: int
  composition_entropy: float

  model_output_type: ClassVar[seqio.metrics.ModelOutputType] = (
      seqio.metrics.ModelOutputType.SCORE
  )
  # () -> {residue letter: count in the training split}; None: no baseline.
  composition_fn: ClassVar[Optional[Callable[[], Mapping[str, int]]]] = None

  @classmethod
  def with_composition(
      cls, composition_fn: Callable[[], Mapping[str, int]]
  ) -> type["ResidueCrossEntropy"]:
    """This metric with its baseline from `composition_fn()` (called late)."""
    return type(
        cls.__name__, (cls,), {"composition_fn": staticmethod(composition_fn)}
    )

  @classmethod
  def from_model_output(
      cls,
      inputs: Sequence[Mapping[str, Any]],
      model_output: np.ndarray,
      features: Mapping[str, seqio.Feature],
      target_field_name: str = "targets",
      mask: Optional[np.ndarray] = None,
      indices_2d: Optional[np.ndarray] = None,
  ) -> "ResidueCrossEntropy":
    """Sums residue scores and the baseline's; see the class docstring.

    Args:
      inputs: the task's examples, in the order of `model_output`.
      model_output: log-likelihood per target id, `[examples, length]`.
      features: the task's output features (for the vocabulary).
      target_field_name: the feature scored.
      mask: optional bool per example; False drops the example.
      indices_2d: unused.

    Returns:
      The metric over these examples.

    Raises:
      ValueError: for one score per example instead of one per token, or a
        count of examples that differs.
    """
    del indices_2d
    scores = np.asarray(model_output, dtype=np.float64)
    if scores.ndim != 2:
      raise ValueError(
          f"{cls.__name__} needs one score per target token, got scores of "
          f"shape {scores.shape}: evaluate with the model that "
          "`t5x_adapter.token_scoring` makes, as gin/runs/ankh3_eval.gin does."
      )
    if len(scores) != len(inputs):
      raise ValueError(
          f"{len(scores)} scores for {len(inputs)} examples: the scores "
          "must be one row per example, in order."
      )
    vocabulary = features[target_field_name].vocabulary
    composition = dict(cls.composition_fn()) if cls.composition_fn else {}
    total = sum(composition.values())
    # By id: -ln q of each residue (inf for one the training split never
    # had: no finite baseline), NaN for every other id.
    neg_log_q = np.full(vocabulary.vocab_size, np.nan)
    for residue in vocabularies.RESIDUES:
      n = composition.get(residue, 0)
      neg_log_q[vocabulary.token_id(residue)] = (
          -math.log(n / total) if n else math.inf
      )
    nll = baseline = 0.0
    count = 0
    for i, ex in enumerate(inputs):
      if mask is not None and not mask[i]:
        continue
      targets = np.asarray(ex[target_field_name]).reshape(-1)
      residue = ~np.isnan(neg_log_q[targets])
      nll -= float(scores[i, : len(targets)][residue].sum())
      baseline += float(neg_log_q[targets[residue]].sum())
      count += int(residue.sum())
    return cls(
        negative_log_likelihood=nll,
        baseline_negative_log_likelihood=(
            baseline if composition else float("nan")
        ),
        num_residues=count,
        composition_entropy=(
            entropy(composition) if composition else float("nan")
        ),
    )

  def merge(self, other: "ResidueCrossEntropy") -> "ResidueCrossEntropy":
    return type(self)(
        negative_log_likelihood=(
            self.negative_log_likelihood + other.negative_log_likelihood
        ),
        baseline_negative_log_likelihood=(
            self.baseline_negative_log_likelihood
            + other.baseline_negative_log_likelihood
        ),
        num_residues=self.num_residues + other.num_residues,
        composition_entropy=self.composition_entropy,
    )

  def compute(self) -> dict[str, float]:
    """Returns the residue cross entropy, the baselines and the count."""
    n = self.num_residues
    return {
        "residue_cross_entropy": (
            self.negative_log_likelihood / n if n else float("nan")
        ),
        "composition_baseline": (
            self.baseline_negative_log_likelihood / n if n else float("nan")
        ),
        "composition_entropy": self.composition_entropy,
        "scored_residues": float(n),
    }


def _until_eos(ids: np.ndarray, eos_id: int) -> np.ndarray:
  ids = np.asarray(ids).reshape(-1)
  ends = np.flatnonzero((ids == eos_id) | (ids == 0))
  return ids[: ends[0]] if len(ends) else ids


def _spans(ids: np.ndarray, sentinels: frozenset[int]) -> dict[int, list[int]]:
  """Maps each sentinel id to the ids after it, up to the next sentinel.

  A sentinel that comes again keeps its first span; the later ones are
  dropped (a decode that repeats `<extra_id_0>` gets no second chance).
  """
  spans = {}
  current = None
  for token in ids.tolist():
    if token in sentinels:
      current = [] if token in spans else spans.setdefault(token, [])
    elif current is not None:
      current.append(token)
  return spans


@dataclasses.dataclass(frozen=True)
class _DecodedResidues(seqio.metrics.Metric):
  """Residues of the targets the greedy decode gets right, pooled."""

  num_correct: int
  num_residues: int

  model_output_type: ClassVar[seqio.metrics.ModelOutputType] = (
      seqio.metrics.ModelOutputType.PREDICTION
  )

  @classmethod
  def _count(
      cls, target: np.ndarray, prediction: np.ndarray, vocabulary: Any
  ) -> tuple[int, int]:
    raise NotImplementedError

  @classmethod
  def from_model_output(
      cls,
      inputs: Sequence[Mapping[str, Any]],
      model_output: np.ndarray,
      features: Mapping[str, seqio.Feature],
      target_field_name: str = "targets",
      mask: Optional[np.ndarray] = None,
      indices_2d: Optional[np.ndarray] = None,
  ) -> "_DecodedResidues":
    del indices_2d
    vocabulary = features[target_field_name].vocabulary
    if len(model_output) != len(inputs):
      raise ValueError(
          f"{len(model_output)} predictions for {len(inputs)} examples: the "
          "predictions must be one per example, in order."
      )
    correct = residues = 0
    for i, (ex, prediction) in enumerate(zip(inputs, model_output)):
      if mask is not None and not mask[i]:
        continue
      c, n = cls._count(
          _until_eos(ex[target_field_name], vocabulary.eos_id),
          _until_eos(prediction, vocabulary.eos_id),
          vocabulary,
      )
      correct += c
      residues += n
    return cls(num_correct=correct, num_residues=residues)

  def merge(self, other: "_DecodedResidues") -> "_DecodedResidues":
    return type(self)(
        num_correct=self.num_correct + other.num_correct,
        num_residues=self.num_residues + other.num_residues,
    )


@dataclasses.dataclass(frozen=True)
class MaskedResidueAccuracy(_DecodedResidues):
  """Share of masked residues the greedy decode restores, pooled.

  Sentinel by sentinel, the decoded span is compared with the true one
  position by position: a residue is right if the decode has the same
  residue at the same place of that sentinel's span; a span the decode
  misses or cuts short counts its residues wrong, extra residues are not
  counted. Targets `<extra_id_0> P <extra_id_1> T E` and decode
  `<extra_id_0> P <extra_id_1> T A`: 2 of 3 residues right.
  Sentinels and `</s>` are not counted: unlike the teacher-forced token
  accuracy, this measures the residues alone.
  """

  @classmethod
  def _count(cls, target, prediction, vocabulary):
    sentinels = frozenset(vocabulary.sentinel_ids)
    predicted = _spans(prediction, sentinels)
    correct = total = 0
    for sentinel, residues in _spans(target, sentinels).items():
      guess = predicted.get(sentinel, [])
      total += len(residues)
      correct += sum(a == b for a, b in zip(residues, guess))
    return correct, total

  def compute(self) -> dict[str, float]:
    return {
        "masked_residue_accuracy": (
            self.num_correct / self.num_residues
            if self.num_residues
            else float("nan")
        ),
        "masked_residues": float(self.num_residues),
    }


@dataclasses.dataclass(frozen=True)
class CompletionIdentity(_DecodedResidues):
  """Share of the true continuation the greedy decode reproduces, pooled.

  Residue i of the decode is compared with residue i of the true rest of the
  protein; a decode that stops early counts the residues it left out wrong,
  one that runs on is not penalised beyond the true length. True rest
  `TEAL`, decode `TEGLKK`: 3 of 4 residues right.
  """

  @classmethod
  def _count(cls, target, prediction, vocabulary):
    del vocabulary
    overlap = min(len(target), len(prediction))
    correct = int(np.sum(target[:overlap] == prediction[:overlap]))
    return correct, len(target)

  def compute(self) -> dict[str, float]:
    return {
        "completion_identity": (
            self.num_correct / self.num_residues
            if self.num_residues
            else float("nan")
        ),
        "completion_residues": float(self.num_residues),
    }
