"""Tests of the tokenizer files written beside Hugging Face weights."""

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
