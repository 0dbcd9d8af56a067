"""Tests of the tokenizer files written beside Hugging Face weights."""

import hashlib
import json
import random

import pytest
import sentencepiece as spm

from ankh3_tasks import hf_tokenizer
from ankh3_tasks import vocabularies

transformers = pytest.importorskip(
    "transformers", reason="needs transformers (extra `hf`)"
)

VOCAB = vocabularies.Ankh3Vocabulary()


def _random_texts(n, seed=0):
  """Proteins as users type them: task tokens, sentinels, case, whitespace."""
  rng = random.Random(seed)
  residues = list(vocabularies.RESIDUES)
  alphabet = (
      residues * 4
      + [r.lower() for r in residues] * 2
      + [" ", "\t", "\n", "\r\n", "[NLU]", "[S2S]", "[NLG]"]
      + [vocabularies.sentinel_token(rng.randrange(225)) for _ in range(8)]
  )
  texts = []
  for _ in range(n):
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
    if rng.random() < 0.7:
      text = rng.choice(["[NLU]", "[S2S]"]) + text
    texts.append(text)
  return texts


@pytest.fixture(scope="module", name="hf_dir")
def _hf_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tokenizer")
  written = hf_tokenizer.save(VOCAB, str(directory))
  assert sorted(written) == sorted([
      "spiece.model",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
  ])
  return str(directory)


@pytest.mark.parametrize(
    "load",
    [
        lambda d: transformers.AutoTokenizer.from_pretrained(d),
        lambda d: transformers.PreTrainedTokenizerFast.from_pretrained(d),
    ],
    ids=["AutoTokenizer", "PreTrainedTokenizerFast"],
)
def test_hugging_face_gives_the_package_ids(hf_dir, load):
  tokenizer = load(hf_dir)
  texts = _random_texts(3000)
  got = tokenizer(texts).input_ids
  for text, ids in zip(texts, got):
    assert ids == VOCAB.encode(text) + [VOCAB.eos_id], repr(text)
  assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1
  assert tokenizer.decode(got[0], skip_special_tokens=False).endswith("</s>")
  padded = tokenizer(["MKT", "M"], padding=True).input_ids
  assert padded[1] == [24, 1, 0, 0]


def test_sentencepiece_gives_the_package_ids(hf_dir):
  processor = spm.SentencePieceProcessor(model_file=f"{hf_dir}/spiece.model")
  for text in _random_texts(3000, seed=1):
    if "<extra_id_" in text:  # Sentinels are T5's extra ids, not pieces.
      continue
    assert processor.encode(text) == VOCAB.encode(text), repr(text)


def test_files_read_back_to_the_same_table(hf_dir):
  for name in ("", "/spiece.model", "/tokenizer.json"):
    assert vocabularies.Ankh3Vocabulary(tokenizer=hf_dir + name) == VOCAB
  vocab, differences = vocabularies.Ankh3Vocabulary.from_sentencepiece(
      f"{hf_dir}/spiece.model"
  )
  assert vocab == VOCAB and differences == []


def test_a_table_from_a_released_style_model_travels_too(tmp_path):
  tokens = list(VOCAB.tokens)
  tokens[7], tokens[8] = tokens[8], tokens[7]
  tokens[6] = "\u2581"  # A piece outside the built-in set; O is gone.
  vocab = vocabularies.Ankh3Vocabulary(tokens)
  hf_tokenizer.save(vocab, str(tmp_path))
  assert vocabularies.Ankh3Vocabulary(tokenizer=str(tmp_path)) == vocab
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  # Without O, which this table lacks: SentencePiece reads a run of unknown
  # characters as one <unk> (the module docstring lists such differences).
  for text in _random_texts(500, seed=2):
    text = text.replace("O", "").replace("o", "")
    assert tokenizer(text).input_ids == vocab.encode(text) + [1], repr(text)


def test_spiece_model_needs_sentinels_at_the_top_ids(tmp_path):
  tokens = list(VOCAB.tokens)
  tokens[255], tokens[254] = tokens[254], tokens[255]
  vocab = vocabularies.Ankh3Vocabulary(tokens)
  with pytest.raises(ValueError, match="top ids"):
    hf_tokenizer.sentencepiece_model(vocab)
  written = hf_tokenizer.save(vocab, str(tmp_path))
  assert "spiece.model" not in written
  assert vocabularies.Ankh3Vocabulary(tokenizer=str(tmp_path)) == vocab


def _git_blob_sha1(data):
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_special_tokens_map_is_the_released_file(hf_dir):
  with open(f"{hf_dir}/special_tokens_map.json", "rb") as f:
    data = f.read()
  assert _git_blob_sha1(data).startswith(
      hf_tokenizer.RELEASED_SPECIAL_TOKENS_MAP_GIT_SHA1_PREFIX
  )
  listed = json.loads(data)
  assert listed["additional_special_tokens"][0] == "<extra_id_0>"
  assert "[NLU]" not in listed["additional_special_tokens"]


def test_tokenizer_config_lets_t5_tokenizer_read_the_sentinels(hf_dir):
  with open(f"{hf_dir}/tokenizer_config.json") as f:
    config = json.load(f)
  pieces = spm.SentencePieceProcessor(
      model_file=f"{hf_dir}/spiece.model"
  ).get_piece_size()
  # T5Tokenizer appends extra_ids sentinels after the pieces.
  assert pieces + config["extra_ids"] == len(VOCAB.tokens)
  assert config["model_input_names"] == ["input_ids", "attention_mask"]
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  assert sorted(tokenizer(["MKT", "[NLU]M"], padding=True)) == [
      "attention_mask",
      "input_ids",
  ]


def test_model_takes_the_batch_and_generates(hf_dir):
  torch = pytest.importorskip("torch", reason="needs torch (extra `hf`)")
  config = transformers.T5Config(
      vocab_size=256,
      d_model=16,
      d_kv=8,
      d_ff=32,
      num_layers=1,
      num_decoder_layers=1,
      num_heads=2,
      feed_forward_proj="gated-silu",
      decoder_start_token_id=0,
      pad_token_id=0,
      eos_token_id=1,
  )
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  batch = tokenizer(
      ["[NLU]MKTAYIAK", "[S2S]MK"], padding=True, return_tensors="pt"
  )
  with torch.no_grad():
    assert model(**batch, labels=batch["input_ids"]).loss.isfinite()
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
  for row in generated.tolist():
    text = tokenizer.decode(row, skip_special_tokens=False)
    assert VOCAB.encode(text) == row  # Every id decodes back.


def test_transformers_5_t5_tokenizer_and_its_workaround(hf_dir):
  """docs/huggingface.md: the one client that cannot give the package's ids."""
  if int(transformers.__version__.split(".")[0]) < 5:
    pytest.skip("transformers 4's T5Tokenizer has no ▁ pre-tokenizer")
  tokenizer = transformers.T5Tokenizer.from_pretrained(hf_dir)
  assert tokenizer("[NLU]MKT").input_ids == [3, VOCAB.unk_id, 24, 18, 14, 1]
  tokenizer.backend_tokenizer.pre_tokenizer = None  # The workaround.
  for text in _random_texts(1000, seed=3):
    assert tokenizer(text).input_ids == VOCAB.encode(text) + [1], repr(text)
    ids = VOCAB.encode(text)
    assert VOCAB.encode(tokenizer.decode(ids)) == ids


def test_a_table_without_a_spiece_model_names_no_extra_ids(tmp_path):
  tokens = list(VOCAB.tokens)
  tokens[255], tokens[254] = tokens[254], tokens[255]
  hf_tokenizer.save(vocabularies.Ankh3Vocabulary(tokens), str(tmp_path))
  with open(tmp_path / "tokenizer_config.json") as f:
    assert json.load(f)["extra_ids"] == 0


def _release_style(directory, vocab=VOCAB, extra_ids=225):
  """Tokenizer files as the release's recipe writes them.

  transformers 4.25.1's `T5Tokenizer(spiece.model, extra_ids=225)
  .save_pretrained`: the model, its special tokens (tests/client_matrix_test.py
  checks these bytes against 4.25.1 itself) and a config naming T5Tokenizer.
  """
  directory.mkdir(exist_ok=True)
  (directory / "spiece.model").write_bytes(
      hf_tokenizer.sentencepiece_model(vocab)
  )
  (directory / "special_tokens_map.json").write_bytes(
      hf_tokenizer.special_tokens_map_bytes(vocab)
  )
  config = {
      **hf_tokenizer.special_tokens_map(vocab),
      "extra_ids": extra_ids,
      "model_max_length": 1000000000000000019884624838656,
      "name_or_path": "ankh3",
      "sp_model_kwargs": {},
      "special_tokens_map_file": None,
      "tokenizer_class": "T5Tokenizer",
  }
  (directory / "tokenizer_config.json").write_text(json.dumps(config))
  return str(directory)


def test_diff_of_release_style_files_of_the_built_in_table(tmp_path, capsys):
  directory = _release_style(tmp_path / "release")
  assert hf_tokenizer.diff(directory) == ([], [])
  assert hf_tokenizer.main(["diff", directory]) == 0
  assert "Every id agrees with the built-in table" in capsys.readouterr().out


def test_diff_names_every_id_the_release_gives_otherwise(tmp_path, capsys):
  tokens = list(VOCAB.tokens)
  tokens[6], tokens[27] = tokens[27], tokens[6]  # O <-> X
  directory = _release_style(
      tmp_path / "release", vocabularies.Ankh3Vocabulary(tokens)
  )
  # What transformers 5 saves from it: tokenizer.json (with its ▁) and the
  # config's added_tokens_decoder.
  transformers.T5Tokenizer.from_pretrained(directory).save_pretrained(directory)
  id_lines, file_lines = hf_tokenizer.diff(directory)
  assert [line.split(":")[0] for line in id_lines] == ["id 6", "id 27"]
  assert id_lines[0].startswith(
      "id 6: built-in 'O'; spiece.model + extra_ids=225 'X'; tokenizer.json 'X'"
  )
  assert any("Metaspace" in line for line in file_lines)
  assert hf_tokenizer.main(["diff", directory]) == 1
  assert "2 ids differ from the built-in table" in capsys.readouterr().out


def test_diff_reports_what_extra_ids_0_does(tmp_path):
  id_lines, _ = hf_tokenizer.diff(
      _release_style(tmp_path / "release", extra_ids=0)
  )
  assert len(id_lines) == vocabularies.NUM_SENTINELS
  assert id_lines[-1] == (
      "id 255: built-in '<extra_id_0>'; spiece.model + extra_ids=0 none"
  )


def test_diff_reads_the_special_token_lists(tmp_path):
  directory = _release_style(tmp_path / "release")
  listed = hf_tokenizer.special_tokens_map(VOCAB)
  listed["additional_special_tokens"] = ["[NLU]", "[S2S]"] + listed[
      "additional_special_tokens"
  ][:200]
  listed["unk_token"] = "X"
  (tmp_path / "release" / "special_tokens_map.json").write_text(
      json.dumps(listed)
  )
  _, file_lines = hf_tokenizer.diff(directory)
  assert file_lines == [
      (
          "special_tokens_map.json: additional_special_tokens also lists [NLU],"
          " [S2S]"
      ),
      (
          "special_tokens_map.json: additional_special_tokens lacks 25 of the"
          " 225 sentinels, e.g. <extra_id_200>"
      ),
      "special_tokens_map.json: unk_token is 'X' there, '<unk>' here",
  ]
