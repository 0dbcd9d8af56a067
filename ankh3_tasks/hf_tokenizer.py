"""Writes an Ankh3 vocabulary as tokenizer files Hugging Face and SentencePiece read.

  from ankh3_tasks import hf_tokenizer, vocabularies
  hf_tokenizer.save(vocabularies.Ankh3Vocabulary(), "HF_DIR")
  transformers.AutoTokenizer.from_pretrained("HF_DIR")("[NLU]MKT").input_ids
  # [3, 24, 18, 14, 1]: the package's ids, then </s>

Writes, beside the weights `convert t5x-to-hf` saves:
  spiece.model            a SentencePiece model of the table's first ids, the
                          sentinels left to T5's extra ids (as the released
                          Ankh3 tokenizer does); `Ankh3Vocabulary.from_
                          sentencepiece` reads it back to the same table
  tokenizer.json          the whole table for `tokenizers`
  tokenizer_config.json   `AutoTokenizer` settings, special_tokens_map.json

Both files encode as this package does: lowercase residues as uppercase,
ASCII whitespace ignored, `[NLU]` / `[S2S]` / sentinels as single ids, and
`</s>` appended (Hugging Face). They differ from `Ankh3Vocabulary.encode` only
where SentencePiece has rules of its own: a run of unknown characters is one
`<unk>`, a terminal `*` is `<unk>` (the package drops it), and special tokens
match in their own case only. Strip stop markers and upper-case task tokens
before tokenizing with them.

The config names `PreTrainedTokenizerFast`, which loads `tokenizer.json` as
written. transformers 5's `T5Tokenizer` class instead rebuilds a pre-tokenizer
that puts a `▁` before every word: with a character vocabulary that is an
extra `<unk>` before each run of residues, whichever Ankh tokenizer it reads.
"""

import functools
import json
import os
import tempfile

from ankh3_tasks import vocabularies

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
_WHITESPACE = " \t\n\r\f\v"


def _normalizer_rules(vocab: vocabularies.Ankh3Vocabulary) -> list[str]:
  """The table's character rules as SentencePiece rule lines (hex -> hex)."""
  tokens = set(vocab.tokens)
  rules = [f"{ord(c):X}\t" for c in _WHITESPACE]
  for token in sorted(tokens):
    if len(token) == 1 and "A" <= token <= "Z" and token.lower() not in tokens:
      rules.append(f"{ord(token.lower()):X}\t{ord(token):X}")
  return rules


def _normalizer_spec(vocab: vocabularies.Ankh3Vocabulary):
  """A SentencePiece normalizer that upper-cases residues, drops whitespace."""
  # pylint: disable-next=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2

  spec = sentencepiece_model_pb2.NormalizerSpec()
  spec.ParseFromString(_compile_rules(tuple(_normalizer_rules(vocab))))
  return spec


@functools.lru_cache(maxsize=8)
def _compile_rules(rules: tuple[str, ...]) -> bytes:
  """The serialized NormalizerSpec of SentencePiece rule lines (cached)."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2

  # The trainer is the only public way to compile rules into the character
  # map both SentencePiece and `tokenizers` read; its model is thrown away.
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "rules.tsv")
    with open(path, "w") as f:
      f.write("\n".join(rules) + "\n")
    model = tempfile.SpooledTemporaryFile()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([vocabularies.STANDARD_RESIDUES] * 4),
        model_writer=model,
        model_type="char",
        vocab_size=len(vocabularies.STANDARD_RESIDUES) + 3,
        hard_vocab_limit=False,
        normalization_rule_tsv=path,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    model.seek(0)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.read())
  spec = proto.normalizer_spec
  spec.name = "ankh3"
  spec.ClearField("normalization_rule_tsv")  # A path of this machine.
  return spec.SerializeToString()


def _sentencepiece_size(vocab: vocabularies.Ankh3Vocabulary) -> int:
  """Pieces before the sentinels, which must fill the top ids T5's way."""
  size = vocabularies.VOCAB_SIZE - vocabularies.NUM_SENTINELS
  expected = [
      vocabularies.VOCAB_SIZE - 1 - i for i in range(vocabularies.NUM_SENTINELS)
  ]
  if list(vocab.sentinel_ids) != expected:
    raise ValueError(
        "A spiece.model can hold this table only with the sentinels at the top "
        "ids (<extra_id_i> = 255 - i), as T5's tokenizer appends them."
    )
  return size


def sentencepiece_model(vocab: vocabularies.Ankh3Vocabulary) -> bytes:
  """Returns a `spiece.model` holding the table (sentinels as extra ids).

  Raises:
    ValueError: when the sentinels are not at the top ids.
  """
  # pylint: disable-next=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2

  kinds = sentencepiece_model_pb2.ModelProto.SentencePiece
  proto = sentencepiece_model_pb2.ModelProto()
  proto.normalizer_spec.CopyFrom(_normalizer_spec(vocab))
  spec = proto.trainer_spec
  spec.model_type = sentencepiece_model_pb2.TrainerSpec.UNIGRAM
  spec.vocab_size = _sentencepiece_size(vocab)
  spec.pad_id = vocab.token_id(vocabularies.PAD)
  spec.eos_id = vocab.eos_id
  spec.unk_id = vocab.unk_id
  spec.bos_id = -1
  for i, token in enumerate(vocab.tokens[: spec.vocab_size]):
    piece = proto.pieces.add()
    piece.piece = token
    if token in (vocabularies.PAD, vocabularies.EOS):
      piece.type = kinds.CONTROL
    elif token == vocabularies.UNK:
      piece.type = kinds.UNKNOWN
    elif len(token) > 1:
      piece.type = kinds.USER_DEFINED
    else:
      piece.type = kinds.NORMAL
      piece.score = -float(i)  # One way to cut a character: any order works.
  return proto.SerializeToString()


def tokenizer(vocab: vocabularies.Ankh3Vocabulary):
  """Returns a `tokenizers.Tokenizer` holding the whole table."""
  # pylint: disable=g-import-not-at-top
  from tokenizers import AddedToken
  from tokenizers import decoders
  from tokenizers import models
  from tokenizers import normalizers
  from tokenizers import processors
  from tokenizers import Tokenizer
  # pylint: enable=g-import-not-at-top

  table = vocab.tokens
  special = {vocabularies.PAD, vocabularies.EOS, vocabularies.UNK}
  special |= {vocabularies.sentinel_token(i) for i in range(vocabularies.NUM_SENTINELS)}
  tok = Tokenizer(
      models.Unigram(
          [(t, -float(i)) for i, t in enumerate(table)],
          unk_id=vocab.unk_id,
          byte_fallback=False,
      )
  )
  tok.normalizer = normalizers.Precompiled(
      _normalizer_spec(vocab).precompiled_charsmap
  )
  tok.decoder = decoders.Fuse()
  # Multi-character tokens are matched in the raw text, before the
  # normalizer, as whole tokens.
  tok.add_tokens([
      AddedToken(t, special=t in special, normalized=False)
      for t in table
      if len(t) > 1
  ])
  tok.post_processor = processors.TemplateProcessing(
      single=f"$A {vocabularies.EOS}",
      pair=f"$A {vocabularies.EOS} $B {vocabularies.EOS}",
      special_tokens=[(vocabularies.EOS, vocab.eos_id)],
  )
  return tok


def save(vocab: vocabularies.Ankh3Vocabulary, directory: str) -> list[str]:
  """Writes the tokenizer files of `vocab` into `directory`.

  Returns:
    The names of the files written. `spiece.model` is left out, with no
    error, for a table whose sentinels are not at the top ids.
  """
  os.makedirs(directory, exist_ok=True)
  written = []
  try:
    data = sentencepiece_model(vocab)
  except ValueError:
    data = None
  if data is not None:
    with open(os.path.join(directory, vocabularies.SPIECE_FILE), "wb") as f:
      f.write(data)
    written.append(vocabularies.SPIECE_FILE)
  tokenizer(vocab).save(
      os.path.join(directory, vocabularies.TOKENIZER_JSON_FILE)
  )
  written.append(vocabularies.TOKENIZER_JSON_FILE)
  sentinels = [
      vocabularies.sentinel_token(i) for i in range(vocabularies.NUM_SENTINELS)
  ]
  special_map = {
      "pad_token": vocabularies.PAD,
      "eos_token": vocabularies.EOS,
      "unk_token": vocabularies.UNK,
      "additional_special_tokens": sentinels,
  }
  config = {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "model_max_length": 1000000000,
      "padding_side": "right",
      "extra_ids": 0,
      **special_map,
  }
  for name, content in (
      (TOKENIZER_CONFIG_FILE, config),
      (SPECIAL_TOKENS_FILE, special_map),
  ):
    with open(os.path.join(directory, name), "w") as f:
      json.dump(content, f, indent=2)
      f.write("\n")
    written.append(name)
  return written
