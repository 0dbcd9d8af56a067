r"""Converts Ankh3 checkpoints between T5X and Hugging Face `transformers`.

  python -m ankh3_tasks.convert t5x-to-hf \
    --checkpoint=MODEL_DIR/checkpoint_N \
    --gin_file=gin/models/ankh3_large.gin --output=HF_DIR [--encoder_only]
  python -m ankh3_tasks.convert hf-to-t5x --hf_dir=HF_DIR \
    --gin_file=gin/models/ankh3_large.gin --output=MODEL_DIR

The gin file gives the T5X model (`MODEL` macro, `network.Ankh3Config`). T5X
to HF writes `save_pretrained` safetensors of a `T5ForConditionalGeneration`
(or `T5EncoderModel`). HF to T5X writes `MODEL_DIR/checkpoint_0` with T5X's
own Orbax checkpoint manager: parameters from HF, a fresh Adafactor state
and step 0, so `t5x.train --gin.MODEL_DIR=MODEL_DIR` resumes from it.

Tokenizers travel with the weights. T5X to HF writes the gin vocabulary's
tokenizer files beside them (`hf_tokenizer.save`). HF to T5X reads the HF
directory's tokenizer, when it has one, and refuses one whose ids differ from
the gin vocabulary's, naming the first differing ids (`ANKH3_TOKENIZER=HF_DIR`
makes the gin vocabulary that tokenizer's; `--allow_vocabulary_mismatch`
converts anyway); it copies the tokenizer files to `MODEL_DIR/tokenizer/`.

The two networks compute the same function: T5X folds 1/sqrt(head_dim) into
the query initialiser, not the forward pass, and HF T5 does not scale scores
either. HF stores `nn.Linear` weights as [out, in] (T5X kernels transposed),
keeps the relative-position table [buckets, heads] in layer 0 of each stack
only, and must not scale the decoder output (untied output layer).
"""

import argparse
import os
import sys
from typing import Any, Optional

import jax
import numpy as np
import tensorflow as tf

from ankh3_tasks import checkpoints
from ankh3_tasks import cli
from ankh3_tasks import network
from ankh3_tasks import vocabularies


def _keep_triton_out() -> None:
  """Makes `import triton` fail in this process, unless it was imported.

  A CUDA build of PyTorch brings triton, and TensorFlow and triton in one
  process die together with signal 11 (`python -c "import tensorflow; import
  triton"`); torch and transformers import triton where it is installed. The
  converter needs neither triton nor torch.compile: called before it first
  imports torch or transformers, torch goes on without triton.
  """
  sys.modules.setdefault("triton", None)


Params = dict[str, Any]

# T5X layer name -> HF sub-layer index and module, per stack.
_ENCODER_SUBLAYERS = (
    ("attention", "pre_attention_layer_norm", "SelfAttention"),
    ("mlp", "pre_mlp_layer_norm", "DenseReluDense"),
)
_DECODER_SUBLAYERS = (
    ("self_attention", "pre_self_attention_layer_norm", "SelfAttention"),
    (
        "encoder_decoder_attention",
        "pre_cross_attention_layer_norm",
        "EncDecAttention",
    ),
    ("mlp", "pre_mlp_layer_norm", "DenseReluDense"),
)
_ATTENTION = (("query", "q"), ("key", "k"), ("value", "v"))


def hf_config(config: network.Ankh3Config, encoder_only: bool = False) -> Any:
  """The `transformers.T5Config` of an Ankh3 network (untied, gated SiLU).

  Args:
    config: the T5X network's config.
    encoder_only: for a `T5EncoderModel`.

  Returns:
    A `T5Config` with `tie_word_embeddings=False` and no decoder scaling.

  Raises:
    ValueError: for a tied config or an MLP that is not SwiGLU.
  """
  _keep_triton_out()
  import transformers  # pylint: disable=g-import-not-at-top

  if config.logits_via_embedding:
    raise ValueError("logits_via_embedding=True: Ankh3 is untied.")
  if tuple(config.mlp_activations) != ("silu", "linear"):
    raise ValueError(
        f"mlp_activations={config.mlp_activations}: expected "
        "('silu', 'linear') (gated-silu)."
    )
  hf = transformers.T5Config(
      vocab_size=config.vocab_size,
      d_model=config.emb_dim,
      d_kv=config.head_dim,
      d_ff=config.mlp_dim,
      num_layers=config.num_encoder_layers,
      num_decoder_layers=config.num_decoder_layers,
      num_heads=config.num_heads,
      relative_attention_num_buckets=config.relative_attention_num_buckets,
      relative_attention_max_distance=config.relative_attention_max_distance,
      feed_forward_proj="gated-silu",
      is_encoder_decoder=not encoder_only,
      dropout_rate=0.0,
      layer_norm_epsilon=1e-6,
      decoder_start_token_id=0,
      pad_token_id=0,
      eos_token_id=1,
      # Only turns off the d_model**-0.5 decoder scaling in transformers 5.x.
      tie_word_embeddings=False,
  )
  # transformers 5.x forces True in __post_init__; untie afterwards.
  hf.tie_word_embeddings = False
  hf.scale_decoder_outputs = False
  return hf


def _dense_to_hf(kernel: np.ndarray) -> np.ndarray:
  """A T5X kernel [in, out] as an HF Linear weight [out, in].

  T5X's `DenseGeneral` stores kernels as 2D [prod(in axes), prod(features)]:
  `query` is [d_model, heads * head_dim], `out` [heads * head_dim, d_model].
  """
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 2:
    raise ValueError(f"Expected a 2D T5X kernel, got shape {kernel.shape}.")
  return kernel.T


def _stack_to_hf(
    stack: Params, name: str, sublayers: tuple, num_layers: int
) -> dict[str, np.ndarray]:
  out = {}
  for i in range(num_layers):
    layer = stack[f"layers_{i}"]
    for j, (t5x_name, norm, hf_name) in enumerate(sublayers):
      prefix = f"{name}.block.{i}.layer.{j}"
      out[f"{prefix}.layer_norm.weight"] = np.asarray(layer[norm]["scale"])
      module = layer[t5x_name]
      if t5x_name == "mlp":
        for w in ("wi_0", "wi_1"):
          out[f"{prefix}.{hf_name}.{w}.weight"] = _dense_to_hf(
              module[w]["kernel"]
          )
        out[f"{prefix}.{hf_name}.wo.weight"] = _dense_to_hf(
            module["wo"]["kernel"]
        )
      else:
        for t5x_w, hf_w in _ATTENTION:
          out[f"{prefix}.{hf_name}.{hf_w}.weight"] = _dense_to_hf(
              module[t5x_w]["kernel"]
          )
        out[f"{prefix}.{hf_name}.o.weight"] = _dense_to_hf(
            module["out"]["kernel"]
        )
  out[
      f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
  ] = np.asarray(stack["relpos_bias"]["rel_embedding"]).T
  norm = "encoder_norm" if name == "encoder" else "decoder_norm"
  out[f"{name}.final_layer_norm.weight"] = np.asarray(stack[norm]["scale"])
  return out


def t5x_state_dict(
    params: Params, config: network.Ankh3Config, encoder_only: bool = False
) -> dict[str, np.ndarray]:
  """T5X parameters as an HF T5 state dict of float32 numpy arrays."""
  embedding = np.asarray(params["token_embedder"]["embedding"], np.float32)
  out = {"shared.weight": embedding, "encoder.embed_tokens.weight": embedding}
  out.update(
      _stack_to_hf(
          params["encoder"],
          "encoder",
          _ENCODER_SUBLAYERS,
          config.num_encoder_layers,
      )
  )
  if not encoder_only:
    out["decoder.embed_tokens.weight"] = embedding
    out.update(
        _stack_to_hf(
            params["decoder"],
            "decoder",
            _DECODER_SUBLAYERS,
            config.num_decoder_layers,
        )
    )
    out["lm_head.weight"] = _dense_to_hf(
        params["decoder"]["logits_dense"]["kernel"]
    )
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


def t5x_to_hf(
    params: Params, config: network.Ankh3Config, encoder_only: bool = False
) -> Any:
  """Builds the HF model holding T5X parameters.

  Args:
    params: the T5X parameter tree (`token_embedder`, `encoder`, `decoder`).
    config: the network's config (e.g. from `checkpoints.load_model`).
    encoder_only: return a `T5EncoderModel` (no decoder, no output layer).

  Returns:
    A float32 `T5ForConditionalGeneration` or `T5EncoderModel` in eval mode.
  """
  _keep_triton_out()
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  cls = (
      transformers.T5EncoderModel
      if encoder_only
      else transformers.T5ForConditionalGeneration
  )
  model = cls(hf_config(config, encoder_only))
  state = {
      # A copy: the restored arrays are read-only, which torch warns about.
      k: torch.from_numpy(np.array(v, order="C", copy=True))
      for k, v in t5x_state_dict(params, config, encoder_only).items()
  }
  own = model.state_dict()
  if set(own) != set(state):
    raise ValueError(
        f"HF parameter names differ: missing {sorted(set(own) - set(state))},"
        f" unexpected {sorted(set(state) - set(own))}."
    )
  model.load_state_dict(state, strict=True)
  if not encoder_only and (
      model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
  ):
    raise ValueError("lm_head is tied to the input embedding.")
  return model.eval()


def _dense_to_t5x(weight: Any, shape: tuple[int, ...]) -> np.ndarray:
  return np.asarray(weight.detach().cpu().float().numpy()).T.reshape(shape)


def _config_from_hf(hf: Any) -> network.Ankh3Config:
  """The Ankh3Config of an HF T5 config; fails on a non-Ankh3 layout."""
  if hf.feed_forward_proj != "gated-silu":
    raise ValueError(
        f"feed_forward_proj={hf.feed_forward_proj!r}: expected 'gated-silu'."
    )
  return network.Ankh3Config(
      vocab_size=hf.vocab_size,
      dtype="float32",
      emb_dim=hf.d_model,
      num_heads=hf.num_heads,
      num_encoder_layers=hf.num_layers,
      num_decoder_layers=hf.num_decoder_layers,
      head_dim=hf.d_kv,
      mlp_dim=hf.d_ff,
      mlp_activations=("silu", "linear"),
      dropout_rate=0.0,
      logits_via_embedding=False,
      relative_attention_num_buckets=hf.relative_attention_num_buckets,
      relative_attention_max_distance=hf.relative_attention_max_distance,
  )


def hf_to_t5x(model: Any) -> tuple[Params, network.Ankh3Config]:
  """T5X parameters and config of an HF `T5ForConditionalGeneration`.

  Args:
    model: an untied, gated-SiLU T5 (the released Ankh3 layout).

  Returns:
    (params, config): the T5X parameter tree as float32 numpy arrays, and the
    `Ankh3Config` (dtype float32, dropout 0) it fits.

  Raises:
    ValueError: if the model is not the Ankh3 layout (tied or scaled output,
      other MLP, encoder and decoder embeddings differing from `shared`).
  """
  cfg = _config_from_hf(model.config)
  if getattr(model.config, "scale_decoder_outputs", False):
    raise ValueError(
        "The HF model scales decoder outputs by d_model**-0.5 (tied T5); "
        "Ankh3 is untied."
    )
  sd = model.state_dict()
  emb = sd["shared.weight"]
  for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
    if k in sd and not bool((sd[k] == emb).all()):
      raise ValueError(f"{k} differs from shared.weight; T5X shares one.")
  d, h, hd, f = cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim

  def stack(name, sublayers, num_layers):
    out = {}
    for i in range(num_layers):
      layer = {}
      for j, (t5x_name, norm, hf_name) in enumerate(sublayers):
        prefix = f"{name}.block.{i}.layer.{j}"
        layer[norm] = {
            "scale": sd[f"{prefix}.layer_norm.weight"].float().numpy()
        }
        w = lambda n, p=prefix, m=hf_name: sd[f"{p}.{m}.{n}.weight"]
        if t5x_name == "mlp":
          layer[t5x_name] = {
              "wi_0": {"kernel": _dense_to_t5x(w("wi_0"), (d, f))},
              "wi_1": {"kernel": _dense_to_t5x(w("wi_1"), (d, f))},
              "wo": {"kernel": _dense_to_t5x(w("wo"), (f, d))},
          }
        else:
          layer[t5x_name] = {
              t5x_w: {"kernel": _dense_to_t5x(w(hf_w), (d, h * hd))}
              for t5x_w, hf_w in _ATTENTION
          }
          layer[t5x_name]["out"] = {
              "kernel": _dense_to_t5x(w("o"), (h * hd, d))
          }
      out[f"layers_{i}"] = layer
    bias = sd[
        f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    ]
    out["relpos_bias"] = {"rel_embedding": bias.float().numpy().T.copy()}
    norm = "encoder_norm" if name == "encoder" else "decoder_norm"
    out[norm] = {"scale": sd[f"{name}.final_layer_norm.weight"].float().numpy()}
    return out

  params = {
      "token_embedder": {"embedding": emb.float().numpy()},
      "encoder": stack("encoder", _ENCODER_SUBLAYERS, cfg.num_encoder_layers),
      "decoder": stack("decoder", _DECODER_SUBLAYERS, cfg.num_decoder_layers),
  }
  params["decoder"]["logits_dense"] = {
      "kernel": _dense_to_t5x(sd["lm_head.weight"], (d, cfg.vocab_size))
  }
  params = jax.tree_util.tree_map(
      lambda x: np.ascontiguousarray(x, np.float32), params
  )
  return params, cfg


def check_tokenizer(
    hf_dir: str, vocabulary: vocabularies.Ankh3Vocabulary
) -> Optional[vocabularies.Ankh3Vocabulary]:
  """Checks the tokenizer of a Hugging Face directory against `vocabulary`.

  Reads the tables of the files themselves (`spiece.model` with T5's extra
  ids, and `tokenizer.json`; each one present must agree), never through a
  transformers tokenizer class: transformers 5's `T5Tokenizer`, which puts a
  `▁` before every word (docs/huggingface.md), cannot change the verdict,
  nor can a `tokenizer.json` it re-saved with that pre-tokenizer.

  Args:
    hf_dir: a Hugging Face model directory.
    vocabulary: the gin model's vocabulary.

  Returns:
    The directory's vocabulary (its `spiece.model` or `tokenizer.json`), or
    None when it has no tokenizer files.

  Raises:
    ValueError: naming the file and the first ids where the tables differ.
  """
  files = [
      os.path.join(hf_dir, name)
      for name in (vocabularies.SPIECE_FILE, vocabularies.TOKENIZER_JSON_FILE)
      if os.path.exists(os.path.join(hf_dir, name))
  ]
  if not files:
    return None
  ours = vocabulary.tokens
  for path in files:
    theirs = vocabularies.Ankh3Vocabulary(tokenizer=path)
    differ = [i for i, t in enumerate(theirs.tokens) if t != ours[i]]
    if differ:
      shown = "; ".join(
          f"id {i} is {theirs.tokens[i]!r} there, {ours[i]!r} here"
          for i in differ[:3]
      )
      raise ValueError(
          f"The tokenizer of {hf_dir} ({theirs.source}) and the gin "
          f"vocabulary ({vocabulary.source}) differ in {len(differ)} ids: "
          f"{shown}. Take the directory's ids with ANKH3_TOKENIZER={hf_dir} "
          "(and --gin.ANKH3_TOKENIZER for T5X runs), or pass "
          "--allow_vocabulary_mismatch if the weights are meant for other ids."
      )
  return vocabularies.Ankh3Vocabulary(tokenizer=hf_dir)


def save_t5x(params: Params, model: Any, output_dir: str, step: int = 0) -> str:
  """Writes `output_dir/checkpoint_<step>` that `t5x.train` resumes from.

  Builds the T5X train state of `model` (its optimizer's fresh state), puts
  `params` in it and saves it with T5X's Orbax checkpoint manager, as
  `t5x.train` does.

  Args:
    params: the T5X parameter tree (numpy).
    model: the T5X model (e.g. from `checkpoints.load_model`).
    output_dir: the new model directory.
    step: the step to record.

  Returns:
    The checkpoint directory.
  """
  import flax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from t5x import checkpoints as t5x_checkpoints  # pylint: disable=g-import-not-at-top
  from t5x import partitioning  # pylint: disable=g-import-not-at-top
  from t5x import utils  # pylint: disable=g-import-not-at-top

  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  initializer = utils.TrainStateInitializer(
      optimizer_def=model.optimizer_def,
      init_fn=model.get_initial_variables,
      input_shapes={
          "encoder_input_tokens": (1, 8),
          "decoder_input_tokens": (1, 8),
      },
      input_types={
          "encoder_input_tokens": jnp.int32,
          "decoder_input_tokens": jnp.int32,
      },
      partitioner=partitioner,
  )
  state = initializer.from_scratch(jax.random.PRNGKey(0))
  old = flax.core.unfreeze(state.params)
  params = flax.core.unfreeze(params)
  if jax.tree_util.tree_map(np.shape, old) != jax.tree_util.tree_map(
      np.shape, params
  ):
    raise ValueError("Converted parameters do not fit the gin model's tree.")
  new = jax.tree_util.tree_map(
      lambda o, n: jnp.asarray(n, o.dtype), old, params
  )
  if isinstance(state.params, flax.core.FrozenDict):
    new = flax.core.freeze(new)
  state = state.replace_params(new)
  state = state.replace_step(jnp.asarray(step, jnp.int32))
  # T5X's manager falls back to the parent of a directory that is missing.
  tf.io.gfile.makedirs(output_dir)
  manager = t5x_checkpoints.OrbaxCheckpointManagerInterface(
      output_dir, state, partitioner
  )
  manager.save(state)
  manager.close()
  return os.path.join(output_dir, f"checkpoint_{step}")


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.convert", description=__doc__.split("\n")[0]
  )
  sub = parser.add_subparsers(dest="command", required=True)
  a = sub.add_parser("t5x-to-hf", help="T5X checkpoint -> HF directory")
  a.add_argument("--checkpoint", required=True, help="MODEL_DIR/checkpoint_N")
  a.add_argument("--gin_file", required=True)
  a.add_argument("--output", required=True, help="HF directory to write")
  a.add_argument("--encoder_only", action="store_true")
  b = sub.add_parser("hf-to-t5x", help="HF directory -> T5X model directory")
  b.add_argument("--hf_dir", required=True)
  b.add_argument("--gin_file", required=True)
  b.add_argument("--output", required=True, help="T5X MODEL_DIR to write")
  b.add_argument(
      "--allow_vocabulary_mismatch",
      action="store_true",
      help="convert even if HF_DIR's tokenizer differs from the gin vocabulary",
  )
  return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
  """Runs the CLI; returns the exit status."""
  args = _parse(argv)
  model = checkpoints.load_model(args.gin_file)
  config = model.module.config
  if args.command == "t5x-to-hf":
    params = checkpoints.load_params(args.checkpoint)
    found = checkpoints.params_config(
        params, config.relative_attention_max_distance
    )
    checkpoints.check_config(config, found)
    hf = t5x_to_hf(params, config, encoder_only=args.encoder_only)
    hf.save_pretrained(args.output)
    from ankh3_tasks import hf_tokenizer  # pylint: disable=g-import-not-at-top

    files = hf_tokenizer.save(model.input_vocabulary, args.output)
    # The network's own count: HF keeps copies of the one T5X embedding
    # (shared, encoder and decoder), which `num_parameters` counts thrice.
    kept = ("token_embedder", "encoder") if args.encoder_only else params
    count = sum(
        np.size(x) for k in kept for x in jax.tree_util.tree_leaves(params[k])
    )
    print(
        f"Wrote {type(hf).__name__} ({count:,} parameters) "
        f"to {args.output}, with the tokenizer of "
        f"{model.input_vocabulary.source} ({', '.join(files)})"
    )
  else:
    _keep_triton_out()
    import transformers  # pylint: disable=g-import-not-at-top

    try:
      tokenizer = check_tokenizer(args.hf_dir, model.input_vocabulary)
    except ValueError as e:
      if not args.allow_vocabulary_mismatch:
        print(f"error: {e}", file=sys.stderr)
        return 1
      print(f"warning: {e}", file=sys.stderr)
      tokenizer = None
    hf = transformers.T5ForConditionalGeneration.from_pretrained(args.hf_dir)
    params, found = hf_to_t5x(hf)
    checkpoints.check_config(config, found)
    path = save_t5x(params, model, args.output)
    print(f"Wrote T5X checkpoint {path} (step 0)")
    if tokenizer is not None:
      target = os.path.join(args.output, "tokenizer")
      tf.io.gfile.makedirs(target)
      for name in (vocabularies.SPIECE_FILE, vocabularies.TOKENIZER_JSON_FILE):
        if os.path.exists(os.path.join(args.hf_dir, name)):
          tf.io.gfile.copy(
              os.path.join(args.hf_dir, name),
              os.path.join(target, name),
              overwrite=True,
          )
      print(f"Copied its tokenizer ({tokenizer.source}) to {target}")
      if tokenizer.tokens != vocabularies.default_tokens():
        print(f"Train on it with --gin.ANKH3_TOKENIZER=\"'{target}'\"")
    else:
      print(f"{args.hf_dir} has no tokenizer files: ids not checked")
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
