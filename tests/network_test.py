"""Tests of the Ankh3 network on T5X's layers (marker `t5x`)."""

import numpy as np
import pytest

from conftest import SMALL_ANKH3
from conftest import init_params
from conftest import small_ankh3_model

pytestmark = pytest.mark.t5x


_model = small_ankh3_model
_init = init_params


@pytest.mark.parametrize("buckets", [64, 32, 16])
def test_bucket_count_sets_both_relative_tables(buckets):
  params = _init(_model(relative_attention_num_buckets=buckets))
  for stack in ("encoder", "decoder"):
    assert params[stack]["relpos_bias"]["rel_embedding"].shape == (2, buckets)
    # One table per stack, shared by its layers.
    assert "relpos_bias" not in params[stack]["layers_0"]


def test_output_layer_is_untied_and_mlp_is_gated():
  params = _init(_model())
  embedding = np.asarray(params["token_embedder"]["embedding"])
  logits = np.asarray(params["decoder"]["logits_dense"]["kernel"])
  assert embedding.shape == (256, 32) and logits.shape == (32, 256)
  assert not np.allclose(embedding.T, logits)
  mlp = params["encoder"]["layers_0"]["mlp"]
  assert set(mlp) == {"wi_0", "wi_1", "wo"}


@pytest.mark.parametrize("tied", [False, True])
def test_with_32_buckets_it_is_t5x_own_network(tied):
  # Same parameter paths, initial values, logical axes and outputs as T5X's
  # `network.Transformer`, with and without dropout: only the bucket count
  # is ours.
  import jax  # pylint: disable=g-import-not-at-top
  from t5x.examples.t5 import network as t5_network  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top

  settings = dict(
      SMALL_ANKH3,
      num_decoder_layers=2,
      dropout_rate=0.1,
      logits_via_embedding=tied,
  )
  ours = network.Transformer(
      network.Ankh3Config(relative_attention_num_buckets=32, **settings)
  )
  theirs = t5_network.Transformer(t5_network.T5Config(**settings))
  rng = np.random.RandomState(0)
  inputs = rng.randint(3, 250, (2, 20)).astype(np.int32)
  inputs[:, -3:] = 0
  targets = rng.randint(3, 250, (2, 10)).astype(np.int32)
  targets[:, -2:] = 0
  decoder_inputs = np.concatenate(
      [np.zeros((2, 1), np.int32), targets[:, :-1]], 1
  )
  key = jax.random.PRNGKey(0)
  args = (inputs, decoder_inputs, targets)
  ours_vars = ours.init(key, *args, enable_dropout=False)
  theirs_vars = theirs.init(key, *args, enable_dropout=False)
  leaves = jax.tree_util.tree_leaves_with_path
  assert [p for p, _ in leaves(ours_vars)] == [
      p for p, _ in leaves(theirs_vars)
  ]
  for (_, x), (_, y) in zip(leaves(ours_vars), leaves(theirs_vars)):
    assert np.array_equal(x, y)
  for dropout in (False, True):
    rngs = {"dropout": jax.random.PRNGKey(1)}
    np.testing.assert_array_equal(
        ours.apply(ours_vars, *args, enable_dropout=dropout, rngs=rngs),
        theirs.apply(ours_vars, *args, enable_dropout=dropout, rngs=rngs),
    )


def test_greedy_completion_runs_with_the_decoding_cache():
  model = _model()
  params = _init(model)
  batch = {
      "encoder_input_tokens": np.array(
          [[4, 8, 7, 9, 11, 1, 0, 0]] * 2, dtype=np.int32  # [S2S]ALGV</s>
      ),
      "decoder_input_tokens": np.zeros((2, 6), dtype=np.int32),
      "decoder_target_tokens": np.zeros((2, 6), dtype=np.int32),
  }
  tokens = np.asarray(model.predict_batch(params, batch))
  assert tokens.shape == (2, 6)
  assert ((tokens >= 0) & (tokens < 256)).all()
  # The same inputs give the same greedy output.
  assert (tokens[0] == tokens[1]).all()


def test_remat_policies_keep_parameters_and_gradients():
  # Every policy: the same parameter paths and initial values, and the same
  # loss and gradients (to float rounding) with dropout on; only what the
  # backward pass keeps differs.
  import jax  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top

  settings = dict(SMALL_ANKH3, num_decoder_layers=2, dropout_rate=0.1)
  rng = np.random.RandomState(0)
  inputs = rng.randint(3, 250, (2, 20)).astype(np.int32)
  targets = rng.randint(3, 250, (2, 10)).astype(np.int32)
  decoder_inputs = np.concatenate(
      [np.zeros((2, 1), np.int32), targets[:, :-1]], 1
  )
  args = (inputs, decoder_inputs, targets)
  key = jax.random.PRNGKey(0)

  def run(policy):
    model = network.Transformer(
        network.Ankh3Config(remat_policy=policy, **settings)
    )
    variables = model.init(key, *args, enable_dropout=False)

    def loss(params):
      logits = model.apply(
          {"params": params},
          *args,
          enable_dropout=True,
          rngs={"dropout": jax.random.PRNGKey(1)},
      )
      return jax.nn.log_softmax(logits).mean()

    # What the backward pass keeps: the residuals of jax.vjp.
    value, vjp = jax.vjp(loss, variables["params"])
    (grads,) = vjp(np.float32(1.0))
    residuals = sum(
        x.size * x.dtype.itemsize
        for x in jax.tree_util.tree_leaves(vjp)
        if hasattr(x, "dtype")
    )
    return variables, value, grads, residuals

  base_vars, base_value, base_grads, base_kept = run("none")
  leaves = jax.tree_util.tree_leaves_with_path
  for policy in network.REMAT_POLICIES[1:]:
    variables, value, grads, kept = run(policy)
    assert [p for p, _ in leaves(variables)] == [
        p for p, _ in leaves(base_vars)
    ], policy
    for (_, x), (_, y) in zip(leaves(variables), leaves(base_vars)):
      np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(value, base_value, rtol=1e-6)
    for (path, x), (_, y) in zip(leaves(grads), leaves(base_grads)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7, err_msg=str(path))
    # Each policy keeps less for the backward pass than none does.
    assert kept < base_kept, (policy, kept, base_kept)
  with pytest.raises(ValueError, match="remat_policy 'some'"):
    run("some")
