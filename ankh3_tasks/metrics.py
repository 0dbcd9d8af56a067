"""seqio metrics of the Ankh3 evaluation tasks (`t5x.eval`).

From T5X's scores (the summed log-likelihood of each example's targets,
teacher-forced), over a whole split:

  TokenCrossEntropy      nats per target id (`</s>` and sentinels included,
                         as in training) and perplexity.

From T5X's greedy decodes (residues only, no sentinel or `</s>` counted):

  MaskedResidueAccuracy  share of masked residues restored (denoising).
  CompletionIdentity     share of the true continuation reproduced, residue
                         by residue (completion).

Teacher-forced token accuracy cannot be had from sequence scores;
`gin/runs/ankh3_eval.gin` gets it from T5X's training evaluator.
"""

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any, ClassVar, Optional

import numpy as np
import seqio


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
      model_output: one summed log-likelihood per example.
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
    scores = np.asarray(model_output, dtype=np.float64).reshape(-1)
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
