"""Metrics of the downstream benchmark, in numpy.

* `accuracy`: per-residue accuracy pooled over every labelled residue of a
  test set (secondary structure, Q3 / Q8).
* `spearman`: Spearman's rank correlation, ties given their average rank
  (fluorescence, GB1).
* `contact_precision`, `mean_contact_precision`: precision of the top L (or
  L/5) predicted contacts among residue pairs at least 6 apart in sequence.

`compute(metric_name, predictions, labels)` scores a test set by the metric
of its task's kind (`kinds.TaskKind.metric`). A metric over nothing (no
labelled residue, no valid pair, fewer than two values, a constant input) is
NaN, not an error.
"""

from collections.abc import Sequence
import math

import numpy as np

# Sequence separation of "long-range" contacts (CASP; the Ankh README's
# contact tables report long-range precision).
LONG_RANGE = 24


def accuracy(
    predictions: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    ignore_index: int = -1,
) -> float:
  """Per-residue accuracy pooled over every labelled residue of all proteins.

  Proteins `[0 1 2 -1]` (predicted `[0 2 2 1]`) and `[1 1 -1 -1]` (predicted
  `[1 0 0 0]`): 2 + 1 right of 3 + 2 labelled, 0.6. The proteins are not
  weighted equally: a long protein counts for more.

  Args:
    predictions: per protein, class ids [L] or class scores [L, C] (their
      argmax is the prediction).
    labels: per protein, class ids [L]; `ignore_index` marks residues not
      labelled (and padding).
    ignore_index: the label of residues not scored.

  Returns:
    Right predictions over labelled residues; NaN when none is labelled.

  Raises:
    ValueError: when the lists differ in length, or a protein's prediction
      and label shapes do not match (naming the protein's index).
  """
  if len(predictions) != len(labels):
    raise ValueError(
        f"{len(predictions)} predictions for {len(labels)} proteins."
    )
  right = total = 0
  for index, (prediction, label) in enumerate(zip(predictions, labels)):
    prediction, label = np.asarray(prediction), np.asarray(label)
    if prediction.ndim == label.ndim + 1:
      if prediction.shape[:-1] == label.shape:
        prediction = prediction.argmax(axis=-1)
    if prediction.shape != label.shape:
      raise ValueError(
          f"protein {index}: prediction shape {prediction.shape} does not "
          f"match label shape {label.shape}."
      )
    scored = label != ignore_index
    right += int(np.count_nonzero(prediction[scored] == label[scored]))
    total += int(np.count_nonzero(scored))
  return right / total if total else math.nan


def _average_ranks(values: np.ndarray) -> np.ndarray:
  """Ranks 1..n, tied values sharing their average rank."""
  order = np.argsort(values, kind="stable")
  ordered = values[order]
  starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
  group = np.cumsum(starts_group) - 1
  starts = np.flatnonzero(starts_group)
  ends = np.r_[starts[1:], len(values)]  # Exclusive.
  average = (starts + 1 + ends) / 2.0  # Mean of the ranks starts+1 .. ends.
  ranks = np.empty(len(values))
  ranks[order] = average[group]
  return ranks


def spearman(predictions: Sequence[float], targets: Sequence[float]) -> float:
  """Spearman's rank correlation, tied values given their average rank.

  The Pearson correlation of the ranks: x = [1, 2, 2, 3] ranks as
  [1, 2.5, 2.5, 4]. Equal to `scipy.stats.spearmanr`.

  Args:
    predictions: one value per protein (any shape; flattened).
    targets: one value per protein, as many.

  Returns:
    The correlation in [-1, 1]; NaN when there are fewer than two values, a
    value is NaN, or either side is constant (its ranks have no variance).

  Raises:
    ValueError: when the two differ in size.
  """
  x = np.asarray(predictions, dtype=np.float64).reshape(-1)
  y = np.asarray(targets, dtype=np.float64).reshape(-1)
  if x.size != y.size:
    raise ValueError(f"{x.size} predictions for {y.size} targets.")
  if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
    return math.nan
  rx = _average_ranks(x) - (x.size + 1) / 2.0
  ry = _average_ranks(y) - (y.size + 1) / 2.0
  denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
  if denominator == 0.0:
    return math.nan
  return float(np.clip(float(rx @ ry) / denominator, -1.0, 1.0))


def _top_k(length: int, fraction: float) -> int:
  """The number of pairs scored: floor(length * fraction), L // 5 for 0.2."""
  # The epsilon keeps floor(15 * 0.2) at 3 whatever the rounding of 0.2.
  return int(math.floor(length * fraction + 1e-9))


def contact_precision(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    min_separation: int = 6,
    fraction: float = 1.0,
) -> float:
  """Precision of the most probable contacts of one protein (P@L, P@L/5).

  The candidates are the pairs i < j with j - i >= `min_separation` and a
  label other than -1; only the upper triangle of `probabilities` is read
  (symmetrize it first if the model's map is not symmetric). The top
  k = floor(L * `fraction`) candidates by probability are scored, L being the
  sequence length (`labels.shape[0]`, residues without coordinates
  included): P@L/5 of a 12-residue protein scores 2 pairs. When there are
  fewer candidates than k, all of them are scored (k = their number). Ties
  in probability go to the earlier pair (smaller i, then smaller j).

  Args:
    probabilities: float [L, L], the predicted contact probabilities (or
      logits: only their order counts).
    labels: int [L, L]; 1 contact, 0 not, -1 unknown (`contacts_from_ca`).
    min_separation: the least j - i scored; 6 (TAPE), or 24 for long range.
    fraction: k as a fraction of L; 1.0 for P@L, 0.2 for P@L/5.

  Returns:
    The fraction of the k pairs that are contacts; NaN when k is 0.

  Raises:
    ValueError: for maps that are not [L, L] alike, labels outside
      {-1, 0, 1}, a NaN probability among the candidates, or
      `min_separation` < 1 or `fraction` <= 0.
  """
  probabilities = np.asarray(probabilities, dtype=np.float64)
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.shape[0] != labels.shape[1]:
    raise ValueError(f"labels have shape {labels.shape}; expected [L, L].")
  if probabilities.shape != labels.shape:
    raise ValueError(
        f"probabilities have shape {probabilities.shape}, labels "
        f"{labels.shape}."
    )
  if min_separation < 1 or fraction <= 0:
    raise ValueError(
        f"min_separation must be >= 1 and fraction > 0, not {min_separation} "
        f"and {fraction}."
    )
  if not np.isin(labels, (-1, 0, 1)).all():
    raise ValueError("labels must be -1, 0 or 1.")
  length = labels.shape[0]
  i, j = np.triu_indices(length, k=min_separation)
  candidate = labels[i, j] != -1
  scores = probabilities[i, j][candidate]
  truth = labels[i, j][candidate]
  if np.isnan(scores).any():
    raise ValueError("probabilities hold NaN among the scored pairs.")
  k = min(_top_k(length, fraction), scores.size)
  if k == 0:
    return math.nan
  best = np.argsort(-scores, kind="stable")[:k]
  return float(np.count_nonzero(truth[best] == 1) / k)


def mean_contact_precision(
    probabilities: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    min_separation: int = 6,
    fraction: float = 1.0,
) -> float:
  """`contact_precision` averaged over proteins, each weighing the same.

  TAPE's training code pools instead (right pairs of all proteins over pairs
  of all proteins), so long proteins weigh more there; the mean over proteins
  is the usual report (ESM, CASP assessments). Proteins with nothing to score
  (k = 0: fewer than 1 / `fraction` residues, or no candidate pair) are left
  out of the mean.

  Args:
    probabilities: per protein, float [L, L].
    labels: per protein, int [L, L].
    min_separation: see `contact_precision`.
    fraction: see `contact_precision`.

  Returns:
    The mean precision; NaN when no protein has anything to score.

  Raises:
    ValueError: when the lists differ in length, or for a bad protein
      (naming its index).
  """
  if len(probabilities) != len(labels):
    raise ValueError(
        f"{len(probabilities)} predictions for {len(labels)} proteins."
    )
  values = []
  for index, (p, y) in enumerate(zip(probabilities, labels)):
    try:
      value = contact_precision(
          p, y, min_separation=min_separation, fraction=fraction
      )
    except ValueError as e:
      raise ValueError(f"protein {index}: {e}") from None
    if not math.isnan(value):
      values.append(value)
  return float(np.mean(values)) if values else math.nan


def _one_per_protein(values: Sequence[np.ndarray], what: str) -> np.ndarray:
  out = np.empty(len(values))
  for index, value in enumerate(values):
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    if value.size != 1:
      raise ValueError(
          f"protein {index}: {what} has {value.size} values, expected 1."
      )
    out[index] = value[0]
  return out


def _accuracy_metrics(
    predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray]
) -> dict[str, float]:
  return {"accuracy": accuracy(predictions, labels)}


def _spearman_metrics(
    predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray]
) -> dict[str, float]:
  return {
      "spearman": spearman(
          _one_per_protein(predictions, "prediction"),
          _one_per_protein(labels, "label"),
      )
  }


def _contact_metrics(
    predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray]
) -> dict[str, float]:
  results = {}
  for prefix, separation in (("", 6), ("long_range_", LONG_RANGE)):
    for suffix, fraction in (("l", 1.0), ("l5", 0.2)):
      results[f"{prefix}precision_at_{suffix}"] = mean_contact_precision(
          predictions,
          labels,
          min_separation=separation,
          fraction=fraction,
      )
  return results


# Metric name (`TaskKind.metric`) -> its scores of a test set.
_COMPUTE = {
    "accuracy": _accuracy_metrics,
    "spearman": _spearman_metrics,
    "contact": _contact_metrics,
}
METRICS = tuple(_COMPUTE)


def compute(
    metric_name: str,
    predictions: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
) -> dict[str, float]:
  """Scores a test set with the metric of its task (`TaskSpec.metric`).

  Args:
    metric_name: `accuracy`, `spearman` or `contact`.
    predictions: per protein: class ids [L] or scores [L, C] (accuracy), a
      value of shape () or (1,) (spearman), contact probabilities [L, L]
      (contact).
    labels: per protein, the `Example.label`s.

  Returns:
    `accuracy`: {"accuracy"}; `spearman`: {"spearman"}; `contact`:
    {"precision_at_l", "precision_at_l5"} over pairs at least 6 apart, and
    {"long_range_precision_at_l", "long_range_precision_at_l5"} over pairs at
    least 24 apart, each a mean over proteins.

  Raises:
    ValueError: for an unknown metric, or predictions that do not fit the
      labels.
  """
  if metric_name not in _COMPUTE:
    raise ValueError(f"Unknown metric {metric_name!r}; metrics: {METRICS}.")
  return _COMPUTE[metric_name](predictions, labels)
