"""The ConvBERT head of the Ankh / Ankh3 downstream benchmark, in Flax.

The papers judge a backbone by training a small ConvBERT head on its frozen
per-residue embeddings. The authors' reference code (github.com/agemagician/
Ankh, `src/ankh/models/`) builds that head from Hugging Face's ConvBERT:
`layers.ConvBERT` wraps `ConvBertModel(ConvBertConfig(hidden_size=D,
num_attention_heads=4, intermediate_size=D // 2, conv_kernel_size=7,
num_hidden_layers=1, hidden_dropout_prob=dropout)).encoder` (every other
setting at its `ConvBertConfig` default: head_ratio 2, one group, exact
GELU, layer-norm epsilon 1e-12, attention dropout 0.1), and each task puts a
linear decoder on top:

  per-residue classes  encoder -> Linear(D, classes)
                       (`convbert_multiclass_classification.py`)
  per-protein value    encoder -> global average (or max) pooling ->
                       Linear(D, 1) (`convbert_regression.py`; its default
                       and its fluorescence notebook pool by "max", the
                       Ankh3 paper by global average: our default)
  contacts             encoder -> [h_i * h_j, h_i - h_j] -> Linear(2D, 2),
                       logits symmetrised (`convbert_contact_prediction.py`)

`ConvBertLayer` here computes what Hugging Face's `ConvBertLayer` computes,
parameter for parameter (tests/downstream_convbert_test.py copies a torch
layer's weights and compares outputs). One deliberate difference, for
padded batches only: the two convolutions see zeros, not the padding rows,
beyond a protein's last residue. So a protein's rows are those of the protein
run alone (batch 1, no padding, as the reference trains and evaluates),
whatever it is batched and padded with; Hugging Face's batched layer lets
the padding rows' (bias) values into the last `kernel_size // 2` residues.

All heads take embeddings float [batch, length, D] and a mask [batch,
length] (true or 1 on residues, false or 0 on padding). Which head a task
gets is its kind's choice (`kinds.TaskKind.head`).
"""

import dataclasses
import functools
import math
from typing import Any, Callable

from flax import linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

AVG = "avg"
MAX = "max"


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """The ConvBERT head; defaults are the papers' (Ankh3 Table 4, Ankh).

  Attributes:
    num_layers: ConvBERT layers (paper: 1).
    num_heads: attention heads before `head_ratio` splits them (paper: 4).
    ffn_ratio: feed-forward width over the embedding width (paper: D / 2;
      the reference takes `int(D / 2)`).
    dropout: dropout after the attention and feed-forward projections
      (paper: 0.1; the reference's `hidden_dropout_prob`).
    attention_dropout: dropout on the attention probabilities (the
      reference leaves `attention_probs_dropout_prob` at its default, 0.1).
    kernel_size: span of the dynamic convolution (paper: 7); odd.
    head_ratio: `num_heads // head_ratio` heads are self-attention heads and
      as many are convolution heads (ConvBertConfig default: 2).
    num_groups: groups of the feed-forward projections (ConvBertConfig
      default: 1, a plain dense layer).
    layer_norm_eps: epsilon of the layer norms (ConvBertConfig: 1e-12).
    initializer_range: standard deviation of the normal initialisation of
      the ConvBERT kernels (ConvBertConfig: 0.02; biases start at zero).
    decoder_init_range: the decoder's kernel starts uniform in
      [-range, range], its bias at zero (reference `reset_parameters`: 0.1).
    pooling: per-protein pooling over the residues, `"avg"` (the paper:
      global average pooling) or `"max"` (the reference code's default and
      its notebooks' choice); padding is left out of both.
  """

  num_layers: int = 1
  num_heads: int = 4
  ffn_ratio: float = 0.5
  dropout: float = 0.1
  attention_dropout: float = 0.1
  kernel_size: int = 7
  head_ratio: int = 2
  num_groups: int = 1
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  decoder_init_range: float = 0.1
  pooling: str = AVG

  def __post_init__(self):
    if self.kernel_size < 1 or self.kernel_size % 2 == 0:
      raise ValueError(
          f"kernel_size must be odd and positive, got {self.kernel_size}."
      )
    if self.pooling not in (AVG, MAX):
      raise ValueError(
          f"pooling must be {AVG!r} or {MAX!r}, got {self.pooling!r}."
      )
    if self.num_layers < 1 or self.num_heads < 1 or self.head_ratio < 1:
      raise ValueError(
          "num_layers, num_heads and head_ratio must be positive; got "
          f"{self.num_layers}, {self.num_heads}, {self.head_ratio}."
      )

  def ffn_dim(self, emb_dim: int) -> int:
    """Feed-forward width for embeddings of width `emb_dim` (1536 -> 768)."""
    return int(emb_dim * self.ffn_ratio)

  def attention_heads(self) -> int:
    """Self-attention heads (as many convolution heads): 4 // 2 -> 2."""
    return max(self.num_heads // self.head_ratio, 1)


def _normal(stddev: float) -> Callable[..., Array]:
  return nn.initializers.normal(stddev=stddev)


def _symmetric_uniform(limit: float) -> Callable[..., Array]:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


def _windows(x: Array, kernel_size: int) -> Array:
  """[B, L, C] -> [B, L, K, C]: row l holds rows l - K//2 .. l + K//2.

  Rows outside [0, L) are zeros (the convolutions' zero padding).
  """
  half = kernel_size // 2
  length = x.shape[1]
  padded = jnp.pad(x, ((0, 0), (half, half), (0, 0)))
  return jnp.stack(
      [padded[:, k : k + length] for k in range(kernel_size)], axis=2
  )


class _SeparableConv1D(nn.Module):
  """Depthwise convolution over the length, then a pointwise projection."""

  features: int
  kernel_size: int
  stddev: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    depthwise = self.param(
        "depthwise", _normal(self.stddev), (self.kernel_size, x.shape[-1])
    )
    pointwise = self.param(
        "pointwise", _normal(self.stddev), (x.shape[-1], self.features)
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    y = jnp.einsum("blkc,kc->blc", _windows(x, self.kernel_size), depthwise)
    return y @ pointwise + bias


class _GroupedDense(nn.Module):
  """A dense layer acting on `groups` equal slices of the features apart."""

  features: int
  groups: int
  stddev: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    width = x.shape[-1]
    if width % self.groups or self.features % self.groups:
      raise ValueError(
          f"num_groups={self.groups} must divide both {width} and "
          f"{self.features}."
      )
    kernel = self.param(
        "kernel",
        _normal(self.stddev),
        (self.groups, width // self.groups, self.features // self.groups),
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    grouped = x.reshape(*x.shape[:-1], self.groups, width // self.groups)
    y = jnp.einsum("...gi,gio->...go", grouped, kernel)
    return y.reshape(*x.shape[:-1], self.features) + bias


class ConvBertLayer(nn.Module):
  """One ConvBERT layer: mixed attention, then a feed-forward block.

  With H = num_heads // head_ratio heads of width d = D / (2H) each, the
  mixed attention concatenates
    * H self-attention heads over the unmasked residues, and
    * H span-based dynamic convolution heads: a separable convolution of the
      input times the query gives, per residue and head, a softmax kernel
      over the `kernel_size` residues around it, which weighs a projection
      of those residues,
  into D features; a projection, dropout and a residual layer norm follow,
  then dense -> GELU -> dense, dropout and another residual layer norm.

  Parameters: `query`, `key`, `value`, `key_conv` (depthwise [K, D],
  pointwise [D, Hd], bias), `conv_kernel`, `conv_out`, `attention_output`,
  `attention_norm`, `intermediate`, `output`, `output_norm`; dense kernels
  are [in, out] (Hugging Face's weights transposed).

  Attributes:
    config: the head's settings.
  """

  config: HeadConfig

  @nn.compact
  def __call__(
      self, x: Array, mask: Array, *, deterministic: bool = True
  ) -> Array:
    """Returns the layer's output for `x` [B, L, D] and `mask` [B, L].

    Args:
      x: input rows, float [batch, length, D].
      mask: true (or 1) on residues, false (or 0) on padding.
      deterministic: no dropout when true; else it needs the `dropout` rng.

    Returns:
      Float [batch, length, D]. Padding rows hold values that mean nothing.

    Raises:
      ValueError: if D is not a multiple of twice the self-attention heads.
    """
    cfg = self.config
    batch, length, width = x.shape
    heads = cfg.attention_heads()
    if width % (2 * heads):
      raise ValueError(
          f"Embedding width {width} must be a multiple of 2 * "
          f"{heads} (num_heads // head_ratio) attention heads."
      )
    head_dim = width // heads // 2
    inner = heads * head_dim
    kernel_size = cfg.kernel_size
    dense = lambda n, name: nn.Dense(
        n, kernel_init=_normal(cfg.initializer_range), name=name
    )
    valid = mask.astype(bool)
    keep = valid[..., None].astype(x.dtype)

    query = dense(inner, "query")(x)
    key = dense(inner, "key")(x)
    value = dense(inner, "value")(x)

    # Dynamic convolution heads. Padding enters both convolutions as zeros.
    key_conv = _SeparableConv1D(
        inner, kernel_size, cfg.initializer_range, name="key_conv"
    )(x * keep)
    conv_kernel = dense(heads * kernel_size, "conv_kernel")(key_conv * query)
    conv_kernel = jax.nn.softmax(
        conv_kernel.reshape(batch, length, heads, kernel_size), axis=-1
    )
    conv_in = dense(inner, "conv_out")(x) * keep
    spans = _windows(conv_in, kernel_size).reshape(
        batch, length, kernel_size, heads, head_dim
    )
    conv_heads = jnp.einsum("blkhd,blhk->blhd", spans, conv_kernel)

    # Self-attention heads over the residues.
    split = lambda t: t.reshape(batch, length, heads, head_dim)
    scores = jnp.einsum("bqhd,bkhd->bhqk", split(query), split(key))
    scores = scores / math.sqrt(head_dim)
    scores = jnp.where(
        valid[:, None, None, :], scores, jnp.finfo(scores.dtype).min
    )
    probs = jax.nn.softmax(scores, axis=-1)
    probs = nn.Dropout(cfg.attention_dropout)(
        probs, deterministic=deterministic
    )
    attention_heads = jnp.einsum("bhqk,bkhd->bqhd", probs, split(value))

    mixed = jnp.concatenate([attention_heads, conv_heads], axis=2)
    mixed = mixed.reshape(batch, length, 2 * inner)
    y = dense(width, "attention_output")(mixed)
    y = nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
    attended = self._norm("attention_norm")(y + x)

    ffn = cfg.ffn_dim(width)
    if cfg.num_groups == 1:
      up = dense(ffn, "intermediate")
      down = dense(width, "output")
    else:
      up = _GroupedDense(
          ffn, cfg.num_groups, cfg.initializer_range, name="intermediate"
      )
      down = _GroupedDense(
          width, cfg.num_groups, cfg.initializer_range, name="output"
      )
    y = down(jax.nn.gelu(up(attended), approximate=False))
    y = nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
    return self._norm("output_norm")(y + attended)

  def _norm(self, name: str) -> nn.Module:
    return nn.LayerNorm(
        epsilon=self.config.layer_norm_eps,
        use_fast_variance=False,
        name=name,
    )


class _Encoder(nn.Module):
  """`num_layers` ConvBERT layers (`layer_0`, `layer_1`, ...)."""

  config: HeadConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
    for i in range(self.config.num_layers):
      x = ConvBertLayer(self.config, name=f"layer_{i}")(
          x, mask, deterministic=deterministic
      )
    return x


def _decoder(features: int, config: HeadConfig) -> nn.Dense:
  return nn.Dense(
      features,
      kernel_init=_symmetric_uniform(config.decoder_init_range),
      name="decoder",
  )


class ResidueClassifier(nn.Module):
  """Per-residue class logits: ConvBERT -> Linear(D, num_classes).

  The reference's `ConvBERTForMultiClassClassification` (secondary
  structure), trained with cross entropy over the labelled residues.

  Attributes:
    num_classes: classes per residue (3 for SS3, 8 for SS8).
    config: the head's settings.
  """

  num_classes: int
  config: HeadConfig = HeadConfig()

  @nn.compact
  def __call__(
      self, embeddings: Array, mask: Array, *, deterministic: bool = True
  ) -> Array:
    """Returns logits float [B, L, num_classes] for embeddings [B, L, D]."""
    x = _Encoder(self.config, name="encoder")(embeddings, mask, deterministic)
    return _decoder(self.num_classes, self.config)(x)


class ProteinRegressor(nn.Module):
  """One value per protein: ConvBERT -> global pooling -> Linear(D, 1).

  The reference's `ConvBERTForRegression` (fluorescence, stability, GB1),
  trained with mean squared error. Its pooling is global max (default, used
  in its notebooks) or average over the length; it runs one protein at a
  time, so here both pool over the residues only (`config.pooling`).

  Attributes:
    config: the head's settings.
  """

  config: HeadConfig = HeadConfig()

  @nn.compact
  def __call__(
      self, embeddings: Array, mask: Array, *, deterministic: bool = True
  ) -> Array:
    """Returns one float per protein, [B], for embeddings [B, L, D]."""
    x = _Encoder(self.config, name="encoder")(embeddings, mask, deterministic)
    valid = mask.astype(bool)[..., None]
    if self.config.pooling == MAX:
      pooled = jnp.max(jnp.where(valid, x, -jnp.inf), axis=1)
      # A row of padding only (a filler row of a batch) pools to zeros.
      pooled = jnp.where(jnp.any(valid, axis=1), pooled, 0.0)
    else:
      count = jnp.maximum(jnp.sum(valid, axis=1), 1)
      pooled = jnp.sum(jnp.where(valid, x, 0.0), axis=1) / count
    return _decoder(1, self.config)(pooled)[..., 0]


class _PairDecoder(nn.Module):
  """The reference's `Linear(2D, 2)` over [h_i * h_j, h_i - h_j], symmetrised.

  Averaged with its transpose, the difference half cancels, so the logits
  are computed from the product half alone, without the [L, L, 2D] pair
  features (a protein of 512 residues and D = 1536 would need 3 GiB). The
  kernel keeps the reference's [2D, 2] shape; its difference rows get zero
  gradient there as here.
  """

  limit: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    width = x.shape[-1]
    kernel = self.param(
        "kernel", _symmetric_uniform(self.limit), (2 * width, 2)
    )
    bias = self.param("bias", nn.initializers.zeros, (2,))
    logits = jnp.einsum("bid,bjd,dc->bijc", x, x, kernel[:width]) + bias
    return (logits + jnp.swapaxes(logits, 1, 2)) / 2


class ContactPredictor(nn.Module):
  """Contact logits per residue pair, as the reference's contact head.

  `ConvBERTForContactPrediction`: the ConvBERT outputs h of residues i and j
  make the pair feature [h_i * h_j, h_i - h_j] (2D wide); `Linear(2D, 2)`
  gives two class logits (no contact, contact), averaged with those of
  (j, i). The difference half is antisymmetric, so it cancels in that
  average: the logits depend on h_i * h_j and the bias only (computed so,
  see `_PairDecoder`). The two-class softmax equals a sigmoid of the logit
  difference, which is returned: the reference's cross entropy over the two
  classes is the binary cross entropy of this logit, and its contact
  probability is its sigmoid.

  Attributes:
    config: the head's settings.
  """

  config: HeadConfig = HeadConfig()

  @nn.compact
  def __call__(
      self, embeddings: Array, mask: Array, *, deterministic: bool = True
  ) -> Array:
    """Returns symmetric contact logits float [B, L, L]."""
    x = _Encoder(self.config, name="encoder")(embeddings, mask, deterministic)
    logits = _PairDecoder(self.config.decoder_init_range, name="decoder")(x)
    return logits[..., 1] - logits[..., 0]


def init_params(
    module: nn.Module, emb_dim: int, rng: Array, length: int = 8
) -> Any:
  """Returns fresh parameters of a head for embeddings `emb_dim` wide.

  Args:
    module: a head (or a `ConvBertLayer`).
    emb_dim: width D of the embeddings it will take.
    rng: the initialisation key.
    length: length of the dummy protein (the parameters do not depend on it).

  Returns:
    The `params` collection.
  """
  return _init(module, emb_dim, length, rng)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _init(module: nn.Module, emb_dim: int, length: int, rng: Array) -> Any:
  x = jnp.zeros((1, length, emb_dim), jnp.float32)
  return module.init(rng, x, jnp.ones((1, length), bool))["params"]
