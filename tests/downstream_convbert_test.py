"""Tests of `ankh3_tasks.downstream.convbert`.

The layer is checked against Hugging Face's torch `ConvBertLayer` (the one
the Ankh reference code builds its heads from) with the same weights.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import kinds

_NEEDS = "needs torch and transformers (the reference's ConvBertLayer)"

D = 32
LENGTH = 20
CONFIG = convbert.HeadConfig()


def _hf_layer(num_groups=1, seed=0):
  """A Hugging Face ConvBertLayer as the reference builds it, random weights."""
  torch = pytest.importorskip("torch", reason=_NEEDS)
  hf = pytest.importorskip("transformers.models.convbert", reason=_NEEDS)
  torch.manual_seed(seed)
  config = hf.ConvBertConfig(
      hidden_size=D,
      num_attention_heads=4,
      intermediate_size=D // 2,
      conv_kernel_size=7,
      num_hidden_layers=1,
      hidden_dropout_prob=0.1,
      num_groups=num_groups,
  )
  layer = hf.ConvBertLayer(config).eval()
  with torch.no_grad():
    for p in layer.parameters():  # Non-zero biases and norms too.
      p.normal_(0.0, 0.3)
  return layer


def _flax_params(layer):
  """The Flax parameters of `layer` (a torch ConvBertLayer)."""
  w = {k: v.detach().numpy() for k, v in layer.state_dict().items()}

  def dense(prefix):
    if w[prefix + ".weight"].ndim == 3:  # GroupedLinearLayer: [G, in, out].
      return {"kernel": w[prefix + ".weight"], "bias": w[prefix + ".bias"]}
    return {"kernel": w[prefix + ".weight"].T, "bias": w[prefix + ".bias"]}

  def norm(prefix):
    return {"scale": w[prefix + ".weight"], "bias": w[prefix + ".bias"]}

  s = "attention.self."
  return {
      "query": dense(s + "query"),
      "key": dense(s + "key"),
      "value": dense(s + "value"),
      "key_conv": {
          "depthwise": w[s + "key_conv_attn_layer.depthwise.weight"][:, 0].T,
          "pointwise": w[s + "key_conv_attn_layer.pointwise.weight"][..., 0].T,
          "bias": w[s + "key_conv_attn_layer.bias"][:, 0],
      },
      "conv_kernel": dense(s + "conv_kernel_layer"),
      "conv_out": dense(s + "conv_out_layer"),
      "attention_output": dense("attention.output.dense"),
      "attention_norm": norm("attention.output.LayerNorm"),
      "intermediate": dense("intermediate.dense"),
      "output": dense("output.dense"),
      "output_norm": norm("output.LayerNorm"),
  }


def _hf_apply(layer, x, mask):
  """Runs the torch layer with the reference's additive attention mask."""
  torch = pytest.importorskip("torch", reason=_NEEDS)

  mask = torch.tensor(mask, dtype=torch.float32)
  extended = (1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min
  with torch.no_grad():
    out = layer(torch.tensor(x), attention_mask=extended)
  out = out[0] if isinstance(out, tuple) else out
  return out.numpy()


def _inputs(lengths, width=LENGTH, seed=1):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(lengths), width, D)).astype(np.float32)
  mask = (np.arange(width)[None] < np.array(lengths)[:, None]).astype(
      np.float32
  )
  return x, mask


@functools.partial(jax.jit, static_argnums=(0, 4))
def _jit_apply(module, params, x, mask, deterministic=True, rngs=None):
  return module.apply(
      {"params": params}, x, mask, deterministic=deterministic, rngs=rngs
  )


def _flax_apply(params, x, mask, config=CONFIG, **kwargs):
  layer = convbert.ConvBertLayer(config)
  return np.asarray(_jit_apply(layer, params, x, mask, **kwargs))


@pytest.mark.parametrize("num_groups", [1, 2])
def test_layer_equals_hugging_face_without_padding(num_groups):
  layer = _hf_layer(num_groups)
  x, mask = _inputs([LENGTH, LENGTH])
  config = convbert.HeadConfig(num_groups=num_groups)
  ours = _flax_apply(_flax_params(layer), x, mask, config)
  np.testing.assert_allclose(ours, _hf_apply(layer, x, mask), atol=2e-5)


def test_layer_with_padding_equals_hugging_face_on_each_protein_alone():
  layer = _hf_layer()
  lengths = [LENGTH, 13]
  x, mask = _inputs(lengths)
  x[1, 13:] = 5.0  # Padding rows that would show if they leaked in.
  ours = _flax_apply(_flax_params(layer), x, mask)
  batched = _hf_apply(layer, x, mask)
  half = CONFIG.kernel_size // 2
  for i, n in enumerate(lengths):
    alone = _hf_apply(layer, x[i : i + 1, :n], mask[i : i + 1, :n])[0]
    np.testing.assert_allclose(ours[i, :n], alone, atol=2e-5)
    # Hugging Face's batched layer masks the attention as ours does; only
    # the convolutions of the last kernel_size // 2 residues see padding.
    np.testing.assert_allclose(
        ours[i, : n - half], batched[i, : n - half], atol=2e-5
    )


def test_rows_do_not_depend_on_padding():
  x, mask = _inputs([11, 11], width=11)
  params = convbert.init_params(
      convbert.ConvBertLayer(CONFIG), D, jax.random.PRNGKey(0)
  )
  wide = np.concatenate([x, np.full((2, 30, D), 3.0, np.float32)], axis=1)
  wide_mask = np.pad(mask, ((0, 0), (0, 30)))
  short = _flax_apply(params, x, mask)
  padded = _flax_apply(params, wide, wide_mask)[:, :11]
  np.testing.assert_allclose(padded, short, atol=1e-5)


def test_dropout_only_when_not_deterministic():
  x, mask = _inputs([LENGTH, 9])
  params = convbert.init_params(
      convbert.ConvBertLayer(CONFIG), D, jax.random.PRNGKey(0)
  )
  first = _flax_apply(params, x, mask)
  np.testing.assert_array_equal(first, _flax_apply(params, x, mask))
  drop = lambda seed: _flax_apply(
      params,
      x,
      mask,
      deterministic=False,
      rngs={"dropout": jax.random.PRNGKey(seed)},
  )
  assert not np.allclose(drop(1), first)
  assert not np.allclose(drop(1), drop(2))
  np.testing.assert_array_equal(drop(1), drop(1))


def test_parameter_shapes_follow_the_paper_config():
  params = convbert.init_params(
      convbert.ConvBertLayer(CONFIG), D, jax.random.PRNGKey(0)
  )
  shapes = jax.tree_util.tree_map(jnp.shape, params)
  # 4 heads, head_ratio 2: 2 attention + 2 convolution heads of D / 4.
  assert shapes["query"]["kernel"] == (D, D // 2)
  assert shapes["key_conv"]["depthwise"] == (7, D)
  assert shapes["conv_kernel"]["kernel"] == (D // 2, 2 * 7)
  assert shapes["intermediate"]["kernel"] == (D, D // 2)  # ffn = D / 2.
  assert shapes["output"]["kernel"] == (D // 2, D)


@pytest.mark.parametrize(
    "module,shape",
    [
        (convbert.ResidueClassifier(3), (2, LENGTH, 3)),
        (convbert.ProteinRegressor(), (2,)),
        (convbert.ContactPredictor(), (2, LENGTH, LENGTH)),
    ],
)
def test_head_shapes(module, shape):
  x, mask = _inputs([LENGTH, 9])
  params = convbert.init_params(module, D, jax.random.PRNGKey(0))
  out = _jit_apply(module, params, x, mask)
  assert out.shape == shape
  assert np.all(np.isfinite(out))


def test_contact_logits_are_symmetric():
  x, mask = _inputs([LENGTH, 9])
  module = convbert.ContactPredictor()
  params = convbert.init_params(module, D, jax.random.PRNGKey(0))
  out = np.asarray(_jit_apply(module, params, x, mask))
  np.testing.assert_allclose(out, np.swapaxes(out, 1, 2), atol=1e-6)


def test_contact_logits_are_the_references_pair_decoder():
  x, mask = _inputs([LENGTH, 9])
  module = convbert.ContactPredictor()
  params = convbert.init_params(module, D, jax.random.PRNGKey(0))
  rng = np.random.default_rng(2)
  kernel = rng.normal(size=(2 * D, 2)).astype(np.float32)
  bias = rng.normal(size=(2,)).astype(np.float32)
  params = dict(params, decoder={"kernel": kernel, "bias": bias})
  ours = np.asarray(_jit_apply(module, params, x, mask))
  # The reference: Linear(2D, 2) over [h_i * h_j, h_i - h_j], symmetrised.
  h = np.asarray(
      _jit_apply(
          convbert.ConvBertLayer(CONFIG),
          params["encoder"]["layer_0"],
          x,
          mask,
      )
  )
  pairs = np.concatenate(
      [h[:, :, None] * h[:, None], h[:, :, None] - h[:, None]], axis=-1
  )
  logits = pairs @ kernel + bias
  logits = (logits + np.swapaxes(logits, 1, 2)) / 2
  np.testing.assert_allclose(
      ours, logits[..., 1] - logits[..., 0], rtol=1e-4, atol=1e-4
  )


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_pooling_leaves_padding_out(pooling):
  config = convbert.HeadConfig(pooling=pooling)
  module = convbert.ProteinRegressor(config)
  params = convbert.init_params(module, D, jax.random.PRNGKey(0))
  x, mask = _inputs([9], width=9)
  wide = np.concatenate([x, np.full((1, 23, D), 9.0, np.float32)], axis=1)
  alone = _jit_apply(module, params, x, mask)
  padded = _jit_apply(module, params, wide, np.pad(mask, ((0, 0), (0, 23))))
  np.testing.assert_allclose(padded, alone, atol=1e-5)


def test_bad_settings_fail_fast():
  with pytest.raises(ValueError, match="odd"):
    convbert.HeadConfig(kernel_size=6)
  with pytest.raises(ValueError, match="pooling"):
    convbert.HeadConfig(pooling="sum")
  with pytest.raises(ValueError, match="kind"):
    kinds.get("token").head(3, CONFIG)
  layer = convbert.ConvBertLayer(CONFIG)
  with pytest.raises(ValueError, match="multiple"):
    layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 30)), jnp.ones((1, 5)))
