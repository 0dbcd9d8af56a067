"""Tests of the evaluation tasks' seqio metrics (`ankh3_tasks.metrics`)."""

import math

import numpy as np
import pytest
import seqio

from ankh3_tasks import metrics
from ankh3_tasks import tasks
from ankh3_tasks import vocabularies

VOCAB = vocabularies.Ankh3Vocabulary()
FEATURES = tasks.output_features(VOCAB)


def _ids(text):
  return np.array(VOCAB.encode(text) + [VOCAB.eos_id], np.int32)


def _padded(texts, length=16):
  """Decodes as T5X returns them: ids, `</s>`, then 0 padding."""
  out = np.zeros((len(texts), length), np.int32)
  for i, text in enumerate(texts):
    ids = _ids(text)
    out[i, : len(ids)] = ids
  return out


def test_token_cross_entropy_by_hand():
  # Targets of 4 and 6 ids with `</s>`; scores -8 and -3: 11 / 10 nats.
  inputs = [{"targets": _ids("MKT")}, {"targets": _ids("AYIAK")}]
  metric = metrics.TokenCrossEntropy.from_model_output(
      inputs, np.array([-8.0, -3.0]), FEATURES
  )
  result = metric.compute()
  assert result["cross_entropy_per_token"] == pytest.approx(1.1)
  assert result["perplexity"] == pytest.approx(math.exp(1.1))
  assert result["num_target_tokens"] == 10
  # A mask drops the second example; merge adds it back.
  first = metrics.TokenCrossEntropy.from_model_output(
      inputs, np.array([-8.0, -3.0]), FEATURES, mask=np.array([True, False])
  )
  assert first.compute()["cross_entropy_per_token"] == pytest.approx(2.0)
  second = metrics.TokenCrossEntropy.from_model_output(
      inputs[1:], np.array([-3.0]), FEATURES
  )
  assert first.merge(second).compute() == pytest.approx(result)


def test_token_cross_entropy_needs_one_score_per_example():
  with pytest.raises(ValueError, match="1 scores for 2 examples"):
    metrics.TokenCrossEntropy.from_model_output(
        [{"targets": _ids("M")}] * 2, np.array([-1.0]), FEATURES
    )


def test_masked_residue_accuracy_by_hand():
  inputs = [
      {"targets": _ids("<extra_id_0>P<extra_id_1>TE")},
      {"targets": _ids("<extra_id_0>MK<extra_id_1>W<extra_id_2>G")},
  ]
  decodes = _padded([
      # 2 of 3: E is wrong.
      "<extra_id_0>P<extra_id_1>TA",
      # Span 0 too long (M right, extra R not counted), span 1 missing,
      # span 2 right: 2 of 4 (M, G).
      "<extra_id_0>MRR<extra_id_2>G",
  ])
  result = metrics.MaskedResidueAccuracy.from_model_output(
      inputs, decodes, FEATURES
  ).compute()
  assert result["masked_residue_accuracy"] == pytest.approx(4 / 7)
  assert result["masked_residues"] == 7


def test_masked_residue_accuracy_ignores_ids_after_eos():
  inputs = [{"targets": _ids("<extra_id_0>P")}]
  decodes = _padded(["<extra_id_0>A"])
  decodes[0, 3] = VOCAB.token_id("P")  # After `</s>`: not read.
  result = metrics.MaskedResidueAccuracy.from_model_output(
      inputs, decodes, FEATURES
  ).compute()
  assert result["masked_residue_accuracy"] == 0.0


def test_completion_identity_by_hand():
  inputs = [{"targets": _ids("TEAL")}, {"targets": _ids("MKTW")}]
  # TEGLKK: T, E, L right (3 of 4); MK then stop: 2 of 4.
  decodes = _padded(["TEGLKK", "MK"])
  result = metrics.CompletionIdentity.from_model_output(
      inputs, decodes, FEATURES
  ).compute()
  assert result["completion_identity"] == pytest.approx(5 / 8)
  assert result["completion_residues"] == 8
  with pytest.raises(ValueError, match="1 predictions for 2 examples"):
    metrics.CompletionIdentity.from_model_output(inputs, decodes[:1], FEATURES)


def test_a_repeated_sentinel_keeps_its_first_span():
  inputs = [{"targets": _ids("<extra_id_0>PK")}]
  # The second <extra_id_0> span (the right residues) is not read.
  decodes = _padded(["<extra_id_0>AA<extra_id_0>PK"])
  result = metrics.MaskedResidueAccuracy.from_model_output(
      inputs, decodes, FEATURES
  ).compute()
  assert result["masked_residue_accuracy"] == 0.0


def _token_scores(inputs, per_id, length=16):
  """Per-token scores as `t5x_adapter.token_scoring` gives them."""
  out = np.zeros((len(inputs), length))
  for i, ex in enumerate(inputs):
    out[i, : len(ex["targets"])] = [per_id(t) for t in ex["targets"]]
  return out


def test_token_cross_entropy_sums_per_token_scores():
  inputs = [{"targets": _ids("MKT")}, {"targets": _ids("AYIAK")}]
  scores = _token_scores(inputs, lambda t: -0.5)
  result = metrics.TokenCrossEntropy.from_model_output(
      inputs, scores, FEATURES
  ).compute()
  assert result["cross_entropy_per_token"] == pytest.approx(0.5)
  assert result["num_target_tokens"] == 10


def test_residue_cross_entropy_by_hand():
  # Sentinels score -0.1, `</s>` -0.2, K -1, A -2: (1 + 2 + 1) / 3 residues.
  by_token = {
      VOCAB.token_id("K"): -1.0,
      VOCAB.token_id("A"): -2.0,
      VOCAB.eos_id: -0.2,
  }
  inputs = [
      {"targets": _ids("<extra_id_0>KA")},
      {"targets": _ids("<extra_id_0>K<extra_id_1>")},
  ]
  scores = _token_scores(inputs, lambda t: by_token.get(t, -0.1))
  composition = {"K": 3, "A": 1}
  metric = metrics.ResidueCrossEntropy.with_composition(lambda: composition)
  result = metric.from_model_output(inputs, scores, FEATURES).compute()
  assert result["residue_cross_entropy"] == pytest.approx(4.0 / 3)
  assert result["scored_residues"] == 3
  # The baseline guesses K with 3/4 and A with 1/4, residue by residue.
  baseline = (2 * -math.log(0.75) - math.log(0.25)) / 3
  assert result["composition_baseline"] == pytest.approx(baseline)
  entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
  assert result["composition_entropy"] == pytest.approx(entropy)
  # Merging two halves gives the whole.
  first = metric.from_model_output(inputs[:1], scores[:1], FEATURES)
  second = metric.from_model_output(inputs[1:], scores[1:], FEATURES)
  assert first.merge(second).compute() == pytest.approx(result)


def test_residue_cross_entropy_without_composition_has_no_baseline():
  inputs = [{"targets": _ids("MK")}]
  scores = _token_scores(inputs, lambda t: -1.0)
  result = metrics.ResidueCrossEntropy.from_model_output(
      inputs, scores, FEATURES
  ).compute()
  assert result["residue_cross_entropy"] == pytest.approx(1.0)
  assert math.isnan(result["composition_baseline"])


def test_residue_cross_entropy_needs_per_token_scores():
  with pytest.raises(ValueError, match="one score per target token"):
    metrics.ResidueCrossEntropy.from_model_output(
        [{"targets": _ids("MK")}], np.array([-3.0]), FEATURES
    )


def test_sample_eval_tasks_take_the_training_composition():

  task = seqio.get_mixture_or_task("ankh3_sample_eval_complete")
  (metric,) = [
      m for m in task.metric_objs if issubclass(m, metrics.ResidueCrossEntropy)
  ]
  counts = metric.composition_fn()
  assert set(counts) <= set(vocabularies.RESIDUES)
  # Real proteins: leucine is the commonest residue, tryptophan rare.
  assert max(counts, key=counts.get) == "L"
  assert counts["W"] < counts["L"] / 4
  assert sum(counts.values()) > 100_000
