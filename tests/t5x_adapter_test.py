"""Tests of the T5X glue (`ankh3_tasks.t5x_adapter`) not covered elsewhere."""

import numpy as np
import pytest

from conftest import init_params
from conftest import small_ankh3_model


@pytest.mark.t5x
def test_token_scoring_splits_t5x_scores_by_token():
  from ankh3_tasks import t5x_adapter  # pylint: disable=g-import-not-at-top

  model = small_ankh3_model()
  params = init_params(model)
  rng = np.random.default_rng(0)
  targets = rng.integers(3, 30, size=(2, 12)).astype(np.int32)
  targets[1, 7:] = 0  # Padding.
  decoder_inputs = np.zeros_like(targets)
  decoder_inputs[:, 1:] = targets[:, :-1]
  batch = {
      "encoder_input_tokens": rng.integers(3, 30, (2, 24)).astype(np.int32),
      "decoder_input_tokens": decoder_inputs,
      "decoder_target_tokens": targets,
      "decoder_loss_weights": (targets > 0).astype(np.int32),
  }
  scored = t5x_adapter.token_scoring(model)
  per_token = np.asarray(scored.score_batch(params, batch))
  assert per_token.shape == (2, 12)
  assert np.all(per_token[1, 7:] == 0)
  assert np.all(per_token[:, :7] < 0)
  np.testing.assert_allclose(
      per_token.sum(-1), model.score_batch(params, batch), rtol=1e-5
  )
  # The original model still sums; the copy keeps its vocabulary.
  assert np.asarray(model.score_batch(params, batch)).shape == (2,)
  assert scored.output_vocabulary is model.output_vocabulary
