"""Tests of the benchmark metrics against hand-computed values."""

import math

import numpy as np
import pytest
from scipy import stats

from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import metrics

# ------------------------------------------------------------------ accuracy

# Protein A: 3 labelled residues, 2 right (position 3 is ignored, and wrong).
# Protein B: 2 labelled residues (2 of padding), 1 right.
LABELS = [np.array([0, 1, 2, -1]), np.array([1, 1, -1, -1])]
PREDICTED = [np.array([0, 2, 2, 1]), np.array([1, 0, 0, 0])]


def test_accuracy_pools_labelled_residues():
  # (2 + 1) / (3 + 2) = 0.6; the mean of the proteins would be 7/12.
  assert metrics.accuracy(PREDICTED, LABELS) == pytest.approx(0.6)


def test_accuracy_reads_scores_by_argmax():
  scores = [np.eye(3)[p] * 5.0 - 1.0 for p in PREDICTED]  # [L, 3] each
  assert metrics.accuracy(scores, LABELS) == pytest.approx(0.6)


def test_accuracy_other_ignore_index_and_nothing_labelled():
  labels = [np.array([0, 1, 2, -100])]
  assert metrics.accuracy(
      [np.array([0, 1, 0, 0])], labels, ignore_index=-100
  ) == pytest.approx(2 / 3)
  assert math.isnan(metrics.accuracy([np.array([1])], [np.array([-1])]))
  assert math.isnan(metrics.accuracy([], []))


def test_accuracy_shape_mismatch_names_the_protein():
  with pytest.raises(ValueError, match=r"protein 1: prediction shape \(3,\)"):
    metrics.accuracy([PREDICTED[0], np.array([1, 0, 0])], LABELS)
  with pytest.raises(ValueError, match="1 predictions for 2 proteins"):
    metrics.accuracy(PREDICTED[:1], LABELS)


# ------------------------------------------------------------------ spearman


def test_spearman_with_ties_by_hand():
  # x = [1, 2, 2, 3] ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] ranks
  # [1, 3, 2, 4]. Both rank means are 2.5, so the centred ranks are
  # dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5];
  # sum dx*dy = 2.25 + 0 + 0 + 2.25 = 4.5, sum dx^2 = 4.5,
  # sum dy^2 = 2.25 + 0.25 + 0.25 + 2.25 = 5;
  # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9) = 0.9486832980505138.
  rho = metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4])
  assert rho == pytest.approx(math.sqrt(0.9), abs=1e-12)
  assert metrics.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_spearman_equals_scipy_with_many_ties():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 5, size=60).astype(float)
  y = x + rng.integers(0, 4, size=60)
  expected = stats.spearmanr(x, y).statistic
  assert metrics.spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_spearman_undefined_is_nan():
  assert math.isnan(metrics.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
  assert math.isnan(metrics.spearman([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
  assert math.isnan(metrics.spearman([1.0], [2.0]))
  with pytest.raises(ValueError, match="3 predictions for 2 targets"):
    metrics.spearman([1, 2, 3], [1, 2])


# ------------------------------------------------------------------ contacts


def _contact_map():
  """A 12-residue map whose P@L and P@L/5 are worked out below."""
  labels = np.zeros((12, 12), np.int8)
  probabilities = np.full((12, 12), 0.1)
  for i in range(11):  # Neighbours are in contact, and predicted so;
    for j in range(i + 1, min(i + 3, 12)):  # |i - j| < 6 is not scored.
      labels[i, j] = labels[j, i] = 1
      probabilities[i, j] = 0.95
  pairs = {  # (i, j): (probability, label)
      (0, 3): (0.99, 0),  # close in sequence: not scored
      (1, 9): (0.98, -1),  # unknown: not scored
      (0, 6): (0.90, 1),
      (3, 11): (0.80, 1),
      (2, 10): (0.70, 0),
      (4, 10): (0.60, 1),
      (5, 11): (0.05, 1),
  }
  for (i, j), (p, y) in pairs.items():
    probabilities[i, j] = p
    labels[i, j] = labels[j, i] = y
  probabilities[11, 0] = 1.0  # The lower triangle is not read.
  return probabilities, labels


def test_contact_precision_by_hand():
  p, y = _contact_map()
  # Scored: 21 pairs with j - i >= 6, less (1, 9) = 20. By probability:
  # (0,6) .9 yes, (3,11) .8 yes, (2,10) .7 no, (4,10) .6 yes, then 15 pairs
  # at .1 (none a contact), then (5,11) .05 yes.
  # P@L, k = 12: 3 contacts in the top 12.
  assert metrics.contact_precision(p, y) == pytest.approx(3 / 12)
  # P@L/5, k = floor(12 / 5) = 2: (0,6) and (3,11), both contacts. Scoring
  # (0,3), (1,9), a neighbour or (11,0) would each give 0.5.
  assert metrics.contact_precision(p, y, fraction=0.2) == 1.0
  # j - i >= 8: (3,11) .8 yes, (2,10) .7 no.
  assert metrics.contact_precision(
      p, y, fraction=0.2, min_separation=8
  ) == pytest.approx(0.5)


def _ranked(length, labels_in_order):
  """A map whose top pairs (0, 6), (0, 7), ... carry the given labels."""
  labels = np.zeros((length, length), np.int8)
  probabilities = np.zeros((length, length))
  for rank, label in enumerate(labels_in_order):
    labels[0, 6 + rank] = labels[6 + rank, 0] = label
    probabilities[0, 6 + rank] = 0.9 - 0.1 * rank
  return probabilities, labels


def test_contact_precision_k_is_floor_of_l_over_5():
  # L = 14: k = floor(2.8) = 2 -> 2 of 2 (rounding to 3 would give 2/3).
  p, y = _ranked(14, [1, 1, 0])
  assert metrics.contact_precision(p, y, fraction=0.2) == 1.0
  # L = 15: k = 3 exactly -> 2 of 3.
  p, y = _ranked(15, [1, 1, 0])
  assert metrics.contact_precision(p, y, fraction=0.2) == pytest.approx(2 / 3)
  # L = 4: k = 0 (and no pair 6 apart): nothing to score.
  assert math.isnan(
      metrics.contact_precision(np.zeros((4, 4)), np.zeros((4, 4), np.int8))
  )


def test_contact_precision_with_fewer_pairs_than_k():
  labels = np.full((12, 12), -1, np.int8)
  labels[0, 6], labels[1, 7] = 1, 0
  probabilities = np.zeros((12, 12))
  probabilities[1, 7] = 0.5
  # P@L: k = min(12, 2 scorable pairs) = 2 -> 1 of 2.
  assert metrics.contact_precision(probabilities, labels) == 0.5


def test_contact_precision_bad_input():
  p, y = _contact_map()
  with pytest.raises(ValueError, match="shape"):
    metrics.contact_precision(p[:11], y)
  with pytest.raises(ValueError, match="-1, 0 or 1"):
    metrics.contact_precision(p, y * 2)
  p[0, 6] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    metrics.contact_precision(p, y)


def test_mean_contact_precision_is_a_mean_over_proteins():
  a = _contact_map()  # P@L/5 = 2 of 2
  b = (np.zeros((15, 15)), np.zeros((15, 15), np.int8))  # 0 of 3
  c = (np.zeros((4, 4)), np.zeros((4, 4), np.int8))  # k = 0: left out
  proteins = [a, b, c]
  value = metrics.mean_contact_precision(
      [p for p, _ in proteins], [y for _, y in proteins], fraction=0.2
  )
  assert value == pytest.approx(0.5)  # Pooled would be 2 / 5.
  assert math.isnan(metrics.mean_contact_precision([c[0]], [c[1]]))
  with pytest.raises(ValueError, match="protein 1"):
    metrics.mean_contact_precision([a[0], b[0][:3]], [a[1], b[1]])


# ------------------------------------------------------------------ compute


def test_compute_dispatches_by_metric_name():
  assert metrics.compute("accuracy", PREDICTED, LABELS) == {
      "accuracy": pytest.approx(0.6)
  }
  predictions = [np.array([v]) for v in (1.0, 2.0, 2.0, 3.0)]
  labels = [np.array(v, np.float32) for v in (1.0, 3.0, 2.0, 4.0)]
  result = metrics.compute("spearman", predictions, labels)
  assert result == {"spearman": pytest.approx(math.sqrt(0.9))}
  p, y = _contact_map()
  result = metrics.compute("contact", [p], [y])
  assert result["precision_at_l"] == pytest.approx(0.25)
  assert result["precision_at_l5"] == 1.0
  # No pair of a 12-residue protein is 24 apart.
  assert math.isnan(result["long_range_precision_at_l"])
  assert math.isnan(result["long_range_precision_at_l5"])
  with pytest.raises(ValueError, match="protein 1: prediction has 2"):
    metrics.compute("spearman", [np.ones(1), np.ones(2)], labels[:2])
  with pytest.raises(ValueError, match="Unknown metric 'f1'"):
    metrics.compute("f1", PREDICTED, LABELS)


def test_every_task_has_a_metric():
  for spec in datasets.TASKS.values():
    assert spec.metric in metrics.METRICS
