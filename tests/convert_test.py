"""Tests of T5X <-> Hugging Face conversion (marker `t5x`)."""

import subprocess
import sys

import numpy as np
import pytest

from ankh3_tasks import checkpoints
from conftest import REPO
from conftest import small_ankh3_config

pytestmark = pytest.mark.t5x

torch = pytest.importorskip("torch", reason="needs torch")
transformers = pytest.importorskip("transformers", reason="needs transformers")

_TOL = 1e-4


def _config(**overrides):
  return small_ankh3_config(**{
      "num_decoder_layers": 2,
      "relative_attention_num_buckets": 64,
      "relative_attention_max_distance": 128,
      **overrides,
  })


def _t5x_params(config, seed=0):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top

  module = network.Transformer(config)
  params = module.init(
      jax.random.PRNGKey(seed),
      jnp.ones((1, 8), jnp.int32),
      jnp.ones((1, 8), jnp.int32),
      jnp.ones((1, 8), jnp.int32),
      enable_dropout=False,
  )["params"]
  # Random (not initial) norms and tables, so every mapping matters.
  leaves, tree = jax.tree_util.tree_flatten(params)
  rng = np.random.default_rng(seed)
  leaves = [
      np.asarray(x, np.float32) + rng.normal(0, 0.1, x.shape).astype("f4")
      for x in leaves
  ]
  return jax.tree_util.tree_map(
      np.asarray, jax.tree_util.tree_unflatten(tree, leaves)
  )


def _tokens():
  """Two rows: one padded, one longer than max distance (far buckets)."""
  rng = np.random.default_rng(1)
  enc = rng.integers(3, 256, (2, 300)).astype(np.int32)
  enc[0, 40:] = 0
  dec_target = rng.integers(3, 256, (2, 160)).astype(np.int32)
  dec_target[0, 20:] = 0
  dec_input = np.zeros_like(dec_target)
  dec_input[:, 1:] = dec_target[:, :-1]
  dec_input[0, 20:] = 0
  return enc, dec_input, dec_target


def _t5x_outputs(params, config, enc, dec_input, dec_target):
  from ankh3_tasks import network  # pylint: disable=g-import-not-at-top

  module = network.Transformer(config)
  variables = {"params": params}
  encoded = module.apply(
      variables, enc, enable_dropout=False, method=module.encode
  )
  logits = module.apply(
      variables, enc, dec_input, dec_target, enable_dropout=False
  )
  return np.asarray(encoded), np.asarray(logits)


def _hf_outputs(model, enc, dec_input, dec_target):
  with torch.no_grad():
    enc_t = torch.from_numpy(enc).long()
    mask = enc_t > 0
    out = model(
        input_ids=enc_t,
        attention_mask=mask,
        decoder_input_ids=torch.from_numpy(dec_input).long(),
        decoder_attention_mask=torch.from_numpy(dec_target).long() > 0,
    )
    return out.encoder_last_hidden_state.numpy(), out.logits.numpy()


def _max_diff(a, b, tokens):
  keep = tokens > 0  # Padding positions are masked differently.
  return float(np.abs(a[keep] - b[keep]).max())


def test_t5x_to_hf_gives_same_logits_and_encodings():
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  config = _config()
  params = _t5x_params(config)
  enc, dec_input, dec_target = _tokens()
  t5x_enc, t5x_logits = _t5x_outputs(params, config, enc, dec_input, dec_target)
  hf = convert.t5x_to_hf(params, config)
  hf_enc, hf_logits = _hf_outputs(hf, enc, dec_input, dec_target)
  assert np.abs(t5x_logits).max() > 1.0  # Not trivially small.
  assert _max_diff(t5x_enc, hf_enc, enc) < _TOL
  assert _max_diff(t5x_logits, hf_logits, dec_target) < _TOL
  # A wrong bucket table (T5's 32) would not match.
  params["encoder"]["relpos_bias"]["rel_embedding"][:, 40:] += 1.0
  t5x_enc2, _ = _t5x_outputs(params, config, enc, dec_input, dec_target)
  assert _max_diff(t5x_enc2, hf_enc, enc) > 1e-2


def test_encoder_only_export_gives_same_encodings():
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  config = _config()
  params = _t5x_params(config, seed=2)
  enc, dec_input, dec_target = _tokens()
  t5x_enc, _ = _t5x_outputs(params, config, enc, dec_input, dec_target)
  hf = convert.t5x_to_hf(params, config, encoder_only=True)
  assert isinstance(hf, transformers.T5EncoderModel)
  with torch.no_grad():
    enc_t = torch.from_numpy(enc).long()
    out = hf(input_ids=enc_t, attention_mask=enc_t > 0).last_hidden_state
  assert _max_diff(t5x_enc, out.numpy(), enc) < _TOL


def _random_hf(seed=3):
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(convert.hf_config(_config()))
  with torch.no_grad():
    for p in model.parameters():  # Norm scales and tables random too.
      p.add_(torch.randn_like(p) * 0.1)
    # T5X has one embedding: the stacks' copies equal `shared`.
    model.encoder.embed_tokens.weight.copy_(model.shared.weight)
    model.decoder.embed_tokens.weight.copy_(model.shared.weight)
  return model.eval()


def test_lm_head_is_distinct_from_shared_embedding():
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  model = convert.t5x_to_hf(_t5x_params(_config()), _config())
  assert model.config.tie_word_embeddings is False
  assert model.config.scale_decoder_outputs is False
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
  assert not torch.equal(model.lm_head.weight, model.shared.weight)


def test_hf_to_t5x_gives_same_logits(tmp_path):
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  model = _random_hf()
  # Through save_pretrained / from_pretrained, as the CLI reads it.
  model.save_pretrained(tmp_path)
  model = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path)
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
  params, config = convert.hf_to_t5x(model.eval())
  assert config == _config()
  enc, dec_input, dec_target = _tokens()
  hf_enc, hf_logits = _hf_outputs(model, enc, dec_input, dec_target)
  t5x_enc, t5x_logits = _t5x_outputs(params, config, enc, dec_input, dec_target)
  assert _max_diff(t5x_enc, hf_enc, enc) < _TOL
  assert _max_diff(t5x_logits, hf_logits, dec_target) < _TOL


def test_round_trip_t5x_hf_t5x_gives_identical_params():
  import jax  # pylint: disable=g-import-not-at-top

  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  config = _config()
  params = _t5x_params(config, seed=4)
  back, back_config = convert.hf_to_t5x(convert.t5x_to_hf(params, config))
  assert back_config == config
  assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(
      params
  )
  for a, b in zip(
      jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back)
  ):
    np.testing.assert_array_equal(a, b)


def test_config_mismatch_names_the_field():
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError, match="mlp_dim.*64.*128"):
    checkpoints.check_config(_config(), _config(mlp_dim=128))
  _, found = convert.hf_to_t5x(_random_hf())
  model = checkpoints.load_model("gin/models/ankh3_tiny.gin", [REPO])
  with pytest.raises(ValueError, match="emb_dim"):
    checkpoints.check_config(model.module.config, found)


@pytest.mark.slow
def test_t5x_train_continues_from_converted_hf_model(tmp_path):
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import t5x_patches  # pylint: disable=g-import-not-at-top

  model = checkpoints.load_model("gin/models/ankh3_tiny.gin", [REPO])
  cfg = model.module.config
  torch.manual_seed(0)
  hf = transformers.T5ForConditionalGeneration(convert.hf_config(cfg)).eval()
  with torch.no_grad():  # T5X has one embedding.
    hf.encoder.embed_tokens.weight.copy_(hf.shared.weight)
    hf.decoder.embed_tokens.weight.copy_(hf.shared.weight)
  hf_dir = tmp_path / "hf"
  hf.save_pretrained(hf_dir)
  model_dir = tmp_path / "model"
  cli = [sys.executable, "-m", "ankh3_tasks.convert"]
  subprocess.run(
      cli
      + [
          "hf-to-t5x",
          f"--hf_dir={hf_dir}",
          "--gin_file=gin/models/ankh3_tiny.gin",
          f"--output={model_dir}",
      ],
      cwd=REPO,
      check=True,
  )
  assert (model_dir / "checkpoint_0").is_dir()
  assert not t5x_patches.has_input_position(str(model_dir / "checkpoint_0"))
  # Continue in the converted directory, saving the input pipeline's position
  # (the tiny experiment sets SAVE_DATASET), which checkpoint_0 has not.
  # (tests/t5x_patches_test.py starts a new MODEL_DIR from such a checkpoint.)
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "t5x.train",
          "--gin_search_paths=.",
          "--gin_file=gin/experiments/ankh3_tiny_sample.gin",
          f'--gin.MODEL_DIR="{model_dir}"',
          "--gin.TRAIN_STEPS=2",
          "--gin.EVAL_PERIOD=2",
          "--gin.CHECKPOINT_PERIOD=2",
          "--gin.STATS_PERIOD=2",
          "--gin.EVAL_STEPS=1",
          "--alsologtostderr",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  log = run.stdout + run.stderr
  assert run.returncode == 0, log[-3000:]
  assert "checkpoint_0" in log and "Restor" in log, log[-3000:]
  assert "holds no input-pipeline position" in log, log[-3000:]
  assert (model_dir / "checkpoint_2").is_dir(), log[-3000:]
  assert t5x_patches.has_input_position(str(model_dir / "checkpoint_2"))
  # The trained parameters started from the converted ones.
  start = checkpoints.load_params(str(model_dir / "checkpoint_0"))
  params, _ = convert.hf_to_t5x(hf)
  np.testing.assert_array_equal(
      start["decoder"]["logits_dense"]["kernel"],
      params["decoder"]["logits_dense"]["kernel"],
  )


def test_tokenizer_travels_both_ways(tiny_checkpoint, tmp_path, capsys,
                                     monkeypatch):
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import hf_tokenizer  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top

  monkeypatch.chdir(REPO)
  hf_dir = tmp_path / "hf"
  gin_file = "--gin_file=gin/models/ankh3_tiny.gin"
  assert convert.main([
      "t5x-to-hf", f"--checkpoint={tiny_checkpoint}", gin_file,
      f"--output={hf_dir}",
  ]) == 0
  assert "with the tokenizer of the built-in table" in capsys.readouterr().out
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
  vocab = vocabularies.Ankh3Vocabulary()
  for text in ("[NLU]MKTAYIAKQR", "[S2S]mkt ayi<extra_id_0>", "OUBZX"):
    assert tokenizer(text).input_ids == vocab.encode(text) + [1]

  # Back to T5X: the tokenizer agrees and is copied beside the checkpoint.
  model_dir = tmp_path / "model"
  back = ["hf-to-t5x", f"--hf_dir={hf_dir}", gin_file, f"--output={model_dir}"]
  assert convert.main(back) == 0
  assert "Copied its tokenizer" in capsys.readouterr().out
  assert vocabularies.Ankh3Vocabulary(
      tokenizer=str(model_dir / "tokenizer")
  ) == vocab

  # A tokenizer with other ids is refused, naming them.
  tokens = list(vocab.tokens)
  tokens[3], tokens[4] = tokens[4], tokens[3]
  hf_tokenizer.save(vocabularies.Ankh3Vocabulary(tokens), str(hf_dir))
  vocabularies.read_tokenizer.cache_clear()
  other = tmp_path / "other"
  back[-1] = f"--output={other}"
  assert convert.main(back) == 1
  err = capsys.readouterr().err
  assert "differ in 2 ids: id 3 is '[S2S]' there, '[NLU]' here" in err
  assert not other.exists()
  # ... unless the gin vocabulary is that tokenizer, or the user insists.
  monkeypatch.setenv("ANKH3_TOKENIZER", str(hf_dir))
  assert convert.main(back) == 0
  assert "--gin.ANKH3_TOKENIZER" in capsys.readouterr().out
  monkeypatch.delenv("ANKH3_TOKENIZER")
  back[-1] = f"--output={tmp_path / 'forced'}"
  assert convert.main(back + ["--allow_vocabulary_mismatch"]) == 0
  assert "warning: " in capsys.readouterr().err
  vocabularies.read_tokenizer.cache_clear()


def test_tokenizer_check_reads_files_not_transformers_5_t5_tokenizer(
    tmp_path,
):
  """A directory transformers 5's T5Tokenizer re-saved keeps its verdict."""
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import hf_tokenizer  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top

  if int(transformers.__version__.split(".")[0]) < 5:
    pytest.skip("needs transformers 5 (its T5Tokenizer adds the ▁)")
  vocab = vocabularies.Ankh3Vocabulary()
  hf_tokenizer.save(vocab, str(tmp_path / "export"))
  tokenizer = transformers.T5Tokenizer.from_pretrained(
      str(tmp_path / "export")
  )
  tokenizer.save_pretrained(str(tmp_path / "resaved"))
  # That tokenizer gives other ids (an extra <unk>)...
  resaved = transformers.AutoTokenizer.from_pretrained(
      str(tmp_path / "resaved")
  )
  assert resaved("[NLU]MKT").input_ids != vocab.encode("[NLU]MKT") + [1]
  # ... but holds the same table, which is what the weights depend on.
  found = convert.check_tokenizer(str(tmp_path / "resaved"), vocab)
  assert found.tokens == vocab.tokens
  vocabularies.read_tokenizer.cache_clear()


def test_tokenizer_check_reads_every_tokenizer_file(tmp_path):
  from ankh3_tasks import convert  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import hf_tokenizer  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import vocabularies  # pylint: disable=g-import-not-at-top

  vocab = vocabularies.Ankh3Vocabulary()
  hf_tokenizer.save(vocab, str(tmp_path))
  assert convert.check_tokenizer(str(tmp_path), vocab) == vocab
  # tokenizer.json from another table beside the right spiece.model.
  tokens = list(vocab.tokens)
  tokens[7], tokens[8] = tokens[8], tokens[7]
  hf_tokenizer.tokenizer(vocabularies.Ankh3Vocabulary(tokens)).save(
      str(tmp_path / "tokenizer.json")
  )
  vocabularies.read_tokenizer.cache_clear()
  with pytest.raises(ValueError, match=r"tokenizer\.json\) and the gin .* "
                     r"differ in 2 ids: id 7 is 'A' there, 'L' here"):
    convert.check_tokenizer(str(tmp_path), vocab)
  vocabularies.read_tokenizer.cache_clear()
