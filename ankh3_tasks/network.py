"""The Ankh3 encoder-decoder, built from T5X's own T5 layers.

Ankh3 is T5 v1.1 (pre-layer-norm, gated MLP, no biases, relative position
biases shared by the layers of a stack) with SwiGLU, an untied output layer
and 64 relative-position buckets. T5X's example network fixes the bucket count
at 32, so this module supplies the two stacks with configurable buckets and
reuses everything else from `t5x.examples.t5`: the layer modules, the
embedding, and `network.Transformer`'s encode / decode / masking logic.

Parameter paths and logical axis names are T5X's (`token_embedder`,
`encoder/layers_0/attention/query/kernel`, `decoder/logits_dense/kernel`,
`relpos_bias/rel_embedding` on axes `('heads', 'relpos_buckets')`, ...), so
T5X's partitioning rules, Adafactor factoring and checkpoint tools apply
unchanged.

Needs T5X (see README: Install T5X). Used from gin:

  network.Transformer.config = @network.Ankh3Config()
"""

from typing import Optional

from flax import linen as nn
from flax import struct
import jax
import jax.numpy as jnp
from t5x.examples.t5 import layers
from t5x.examples.t5 import network as t5_network

Array = jax.Array


@struct.dataclass
class Ankh3Config(t5_network.T5Config):
  """T5Config plus the relative-position table's shape.

  Attributes:
    relative_attention_num_buckets: buckets of the relative-position table
      (Ankh3: 64; T5: 32).
    relative_attention_max_distance: distance beyond which all offsets share
      the last buckets (Ankh3 and T5: 128).
  """

  relative_attention_num_buckets: int = 64
  relative_attention_max_distance: int = 128
  remat_policy: str = "none"


# What a layer keeps from its forward pass for the backward pass
# (`Ankh3Config.remat_policy`; gin's REMAT_POLICY). "none": everything, as
# JAX's autodiff does; "full": only the layer's inputs, the rest recomputed;
# "dots": the results of matrix multiplications; "dots_no_batch": those
# without batch dimensions (the projections, not attention's score and value
# products). jax.checkpoint_policies names the last two.
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


def _remat(layer: type[nn.Module], config: Ankh3Config, static_argnums):
  """`layer`, or `nn.remat` of it under the config's policy.

  `nn.remat` keeps the module's name and so its parameter paths: a
  checkpoint trained under one policy restores under any other.
  """
  policy = config.remat_policy
  if policy not in REMAT_POLICIES:
    raise ValueError(
        f"remat_policy {policy!r} is not one of {', '.join(REMAT_POLICIES)}."
    )
  if policy == "none":
    return layer
  saveable = {
      "full": None,
      "dots": jax.checkpoint_policies.checkpoint_dots,
      "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
  }[policy]
  return nn.remat(layer, policy=saveable, static_argnums=static_argnums)


def _relative_position_biases(config: Ankh3Config) -> nn.Module:
  """One table per stack, shared by all its layers (`<stack>/relpos_bias`)."""
  return layers.RelativePositionBiases(
      num_buckets=config.relative_attention_num_buckets,
      max_distance=config.relative_attention_max_distance,
      num_heads=config.num_heads,
      dtype=config.dtype,
      # T5X's initialisation of the table.
      embedding_init=nn.initializers.variance_scaling(
          1.0, "fan_avg", "uniform"
      ),
      name="relpos_bias",
  )


def _dropout(config: Ankh3Config) -> nn.Module:
  # One mask per example, shared along the sequence, as in T5X.
  return nn.Dropout(rate=config.dropout_rate, broadcast_dims=(-2,))


class Encoder(nn.Module):
  """The encoder stack: embed, `num_encoder_layers` T5X layers, final norm."""

  config: Ankh3Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(
      self,
      encoder_input_tokens: Array,
      encoder_mask: Optional[Array] = None,
      deterministic: bool = False,
  ) -> Array:
    cfg = self.config
    if encoder_input_tokens.ndim != 2:
      raise ValueError(
          "encoder_input_tokens must be [batch, length], got shape "
          f"{encoder_input_tokens.shape}."
      )
    relative_embedding = _relative_position_biases(cfg)
    x = self.shared_embedding(encoder_input_tokens.astype("int32"))
    x = _dropout(cfg)(x, deterministic=deterministic).astype(cfg.dtype)
    # Static: `deterministic` (argument 3, `self` being 0).
    layer = _remat(t5_network.EncoderLayer, cfg, static_argnums=(3,))
    for i in range(cfg.num_encoder_layers):
      x = layer(
          config=cfg, relative_embedding=relative_embedding, name=f"layers_{i}"
      )(x, encoder_mask, deterministic)
    x = layers.LayerNorm(dtype=cfg.dtype, name="encoder_norm")(x)
    return nn.Dropout(rate=cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """The decoder stack, ending in the untied `logits_dense` layer."""

  config: Ankh3Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(
      self,
      encoded: Array,
      decoder_input_tokens: Array,
      decoder_positions: Optional[Array] = None,
      decoder_mask: Optional[Array] = None,
      encoder_decoder_mask: Optional[Array] = None,
      deterministic: bool = False,
      decode: bool = False,
      max_decode_length: Optional[int] = None,
  ) -> Array:
    del decoder_positions  # Positions enter through the relative biases.
    cfg = self.config
    if decoder_input_tokens.ndim != 2:
      raise ValueError(
          "decoder_input_tokens must be [batch, length], got shape "
          f"{decoder_input_tokens.shape}."
      )
    relative_embedding = _relative_position_biases(cfg)
    y = self.shared_embedding(decoder_input_tokens.astype("int32"))
    y = _dropout(cfg)(y, deterministic=deterministic).astype(cfg.dtype)
    # Decoding with a cache has no backward pass: no remat there. Static:
    # `deterministic`, `decode`, `max_decode_length` (arguments 5 to 7).
    layer = t5_network.DecoderLayer
    if not decode:
      layer = _remat(layer, cfg, static_argnums=(5, 6, 7))
    for i in range(cfg.num_decoder_layers):
      y = layer(
          config=cfg, relative_embedding=relative_embedding, name=f"layers_{i}"
      )(
          y,
          encoded,
          decoder_mask,
          encoder_decoder_mask,
          deterministic,
          decode,
          max_decode_length,
      )
    y = layers.LayerNorm(dtype=cfg.dtype, name="decoder_norm")(y)
    y = _dropout(cfg)(y, deterministic=deterministic)
    if cfg.logits_via_embedding:
      # Tied variant, kept for experiments; Ankh3 itself is untied.
      logits = self.shared_embedding.attend(y)
      return logits / jnp.sqrt(y.shape[-1])
    return layers.DenseGeneral(
        cfg.vocab_size,
        dtype=jnp.float32,  # Logits in float32, as T5X does.
        kernel_axes=("embed", "vocab"),
        name="logits_dense",
    )(y)


class Transformer(t5_network.Transformer):
  """T5X's `network.Transformer` with the Ankh3 stacks.

  `encode`, `decode` and `__call__` (masks, packing, decoding cache) are
  inherited from T5X; only the stacks differ.
  """

  config: Ankh3Config

  def setup(self):
    cfg = self.config
    self.shared_embedding = layers.Embed(
        num_embeddings=cfg.vocab_size,
        features=cfg.emb_dim,
        dtype=cfg.dtype,
        attend_dtype=jnp.float32,
        embedding_init=nn.initializers.normal(stddev=1.0),
        one_hot=True,
        name="token_embedder",
    )
    self.encoder = Encoder(config=cfg, shared_embedding=self.shared_embedding)
    self.decoder = Decoder(config=cfg, shared_embedding=self.shared_embedding)
