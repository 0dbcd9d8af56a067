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
  tokenizer_config.json   what `AutoTokenizer` and `T5Tokenizer` need to read
                          the whole table (`tokenizer_config`)
  special_tokens_map.json the bytes transformers 4.25.1 writes for the table,
                          the released file's for the built-in one

All of them encode as this package does: lowercase residues as uppercase,
ASCII whitespace ignored, `[NLU]` / `[S2S]` / sentinels as single ids, and
`</s>` appended (Hugging Face). They differ from `Ankh3Vocabulary.encode` only
where SentencePiece has rules of its own: a run of unknown characters is one
`<unk>`, a terminal `*` is `<unk>` (the package drops it), and special tokens
match in their own case only. Strip stop markers and upper-case task tokens
before tokenizing with them.

Clients, as tested by `tools/client_matrix.py` (docs/huggingface.md has the
matrix): `AutoTokenizer` and `PreTrainedTokenizerFast` of transformers 4.25.1
to 5.x, and transformers 4's `T5Tokenizer` (the official Ankh library's
loader), give the package's ids and decode them back. The one exception is
transformers 5's `T5Tokenizer`, which puts a `▁` before every word whatever
the files say: an extra `<unk>` after `[NLU]` and before each run of
residues; docs/huggingface.md gives the workaround.
"""

from collections.abc import Sequence
import functools
import json
import os
import sys
import tempfile
from typing import Any, Optional

from ankh3_tasks import vocabularies

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
# The git blob id of the released `special_tokens_map.json`
# (ElnaggarLab/ankh3-large and -xl have one file), as far as the public record
# gives it; `special_tokens_map_bytes` of the built-in table has it.
RELEASED_SPECIAL_TOKENS_MAP_GIT_SHA1_PREFIX = "d596919b"
# What a T5 model takes: no `token_type_ids`.
MODEL_INPUT_NAMES = ("input_ids", "attention_mask")
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
  special |= {
      vocabularies.sentinel_token(i) for i in range(vocabularies.NUM_SENTINELS)
  }
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


def special_tokens_map(vocab: vocabularies.Ankh3Vocabulary) -> dict[str, Any]:
  """The special tokens as T5's tokenizer lists them (`special_tokens_map`).

  `<pad>`, `</s>`, `<unk>`, and the sentinels as `additional_special_tokens`
  from `<extra_id_0>` up; `[NLU]` and `[S2S]` are not listed (the released
  file does not list them either).
  """
  del vocab  # Every Ankh3 table holds these tokens.
  return {
      "additional_special_tokens": [
          vocabularies.sentinel_token(i)
          for i in range(vocabularies.NUM_SENTINELS)
      ],
      "eos_token": vocabularies.EOS,
      "pad_token": vocabularies.PAD,
      "unk_token": vocabularies.UNK,
  }


def special_tokens_map_bytes(vocab: vocabularies.Ankh3Vocabulary) -> bytes:
  """`special_tokens_map.json` as transformers 4.25.1 writes it.

  The bytes of `T5Tokenizer(spiece.model, extra_ids=225).save_pretrained`
  (sorted keys, two-space indent, a final newline): for the built-in table,
  the released file (git blob `RELEASED_SPECIAL_TOKENS_MAP_GIT_SHA1_PREFIX`).
  """
  text = json.dumps(
      special_tokens_map(vocab), indent=2, sort_keys=True, ensure_ascii=False
  )
  return (text + "\n").encode("utf-8")


def tokenizer_config(vocab: vocabularies.Ankh3Vocabulary) -> dict[str, Any]:
  """The `tokenizer_config.json` every client reads the table from.

  * `tokenizer_class: PreTrainedTokenizerFast`: `AutoTokenizer` loads
    `tokenizer.json` as written, in transformers 4 and 5 (5's `T5Tokenizer`
    would put a `▁` before every word; see the module docstring).
  * `extra_ids: 225`: `T5Tokenizer` (transformers 4) appends the sentinels
    after the 31 pieces of `spiece.model`, `<extra_id_0>` at 255. With 0 it
    lost them (4.25.1) or decoded ids 6..30 as sentinels (4.57).
  * `model_input_names`: without it transformers 4's `AutoTokenizer` also
    returns `token_type_ids`, which `model(**batch)` and `generate` refuse.
  * `legacy: true`: the default of transformers 4's `T5Tokenizer`, stated
    so that 4.3x and later do not warn about it (both modes give the
    package's ids on these files).
  """
  has_spiece = _sentencepiece_layout(vocab)
  return {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "model_input_names": list(MODEL_INPUT_NAMES),
      "model_max_length": 1000000000,
      "padding_side": "right",
      "extra_ids": vocabularies.NUM_SENTINELS if has_spiece else 0,
      "legacy": True,
      **special_tokens_map(vocab),
  }


def _sentencepiece_layout(vocab: vocabularies.Ankh3Vocabulary) -> bool:
  try:
    _sentencepiece_size(vocab)
  except ValueError:
    return False
  return True


def save(vocab: vocabularies.Ankh3Vocabulary, directory: str) -> list[str]:
  """Writes the tokenizer files of `vocab` into `directory`.

  Returns:
    The names of the files written. `spiece.model` is left out, with no
    error, for a table whose sentinels are not at the top ids.
  """
  os.makedirs(directory, exist_ok=True)
  written = []
  if _sentencepiece_layout(vocab):
    with open(os.path.join(directory, vocabularies.SPIECE_FILE), "wb") as f:
      f.write(sentencepiece_model(vocab))
    written.append(vocabularies.SPIECE_FILE)
  tokenizer(vocab).save(
      os.path.join(directory, vocabularies.TOKENIZER_JSON_FILE)
  )
  written.append(vocabularies.TOKENIZER_JSON_FILE)
  with open(os.path.join(directory, TOKENIZER_CONFIG_FILE), "w") as f:
    json.dump(tokenizer_config(vocab), f, indent=2)
    f.write("\n")
  written.append(TOKENIZER_CONFIG_FILE)
  with open(os.path.join(directory, SPECIAL_TOKENS_FILE), "wb") as f:
    f.write(special_tokens_map_bytes(vocab))
  written.append(SPECIAL_TOKENS_FILE)
  return written


# ------------------------------------------------------- released files

# What transformers' T5Tokenizer appends when tokenizer_config.json names no
# `extra_ids`.
_T5_DEFAULT_EXTRA_IDS = 100


def _read_json(path: str) -> Optional[Any]:
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    data = f.read()
  try:
    return json.loads(data)
  except ValueError as e:
    raise ValueError(f"{path}: not JSON ({e}).") from e


def file_tables(directory: str) -> dict[str, dict[int, str]]:
  """The id -> token maps the tokenizer files of `directory` give.

  Read from the files as written, with no transformers class in between:
    `spiece.model + extra_ids=N`  the pieces, then the N sentinels
        transformers' `T5Tokenizer` appends (N from tokenizer_config.json,
        T5Tokenizer's default of 100 when it names none), as 4.x reads them;
    `tokenizer.json`  its vocabulary and added tokens;
    `tokenizer_config.json added_tokens_decoder`, `added_tokens.json`: the
        ids they name (what newer and older transformers save).

  Raises:
    FileNotFoundError: when `directory` holds none of these.
    ValueError: for a file that does not parse.
  """
  # pylint: disable-next=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2

  tables = {}
  config = _read_json(os.path.join(directory, TOKENIZER_CONFIG_FILE)) or {}
  spiece = os.path.join(directory, vocabularies.SPIECE_FILE)
  if os.path.exists(spiece):
    with open(spiece, "rb") as f:
      data = f.read()
    proto = sentencepiece_model_pb2.ModelProto()
    try:
      proto.ParseFromString(data)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{spiece}: not a SentencePiece model ({e}).") from e
    count = len(proto.pieces)
    if count + vocabularies.NUM_SENTINELS <= vocabularies.VOCAB_SIZE:
      # The package's reading of the pieces (a `▁A` piece is `A`).
      names = vocabularies.tokens_from_sentencepiece(data, spiece)[:count]
    else:
      names = [p.piece for p in proto.pieces]
    extra = config.get("extra_ids", _T5_DEFAULT_EXTRA_IDS)
    table = dict(enumerate(names))
    for i in range(extra):
      table[count + extra - 1 - i] = vocabularies.sentinel_token(i)
    default = "" if "extra_ids" in config else ", T5Tokenizer's default"
    tables[f"spiece.model + extra_ids={extra}{default}"] = table
  path = os.path.join(directory, vocabularies.TOKENIZER_JSON_FILE)
  spec = _read_json(path)
  if spec is not None:
    try:
      vocab = spec["model"]["vocab"]
    except (KeyError, TypeError) as e:
      raise ValueError(f"{path}: not a Hugging Face tokenizer ({e}).") from e
    if isinstance(vocab, dict):
      table = {i: piece for piece, i in vocab.items()}
    else:
      table = {i: entry[0] for i, entry in enumerate(vocab)}
    for added in spec.get("added_tokens") or []:
      table[added["id"]] = added["content"]
    tables["tokenizer.json"] = table
  decoder = config.get("added_tokens_decoder")
  if decoder:
    tables["tokenizer_config.json added_tokens_decoder"] = {
        int(i): entry["content"] for i, entry in decoder.items()
    }
  added = _read_json(os.path.join(directory, "added_tokens.json"))
  if added:
    tables["added_tokens.json"] = {i: t for t, i in added.items()}
  if not tables:
    raise FileNotFoundError(
        f"{directory}: no {vocabularies.SPIECE_FILE}, "
        f"{vocabularies.TOKENIZER_JSON_FILE} or {TOKENIZER_CONFIG_FILE} with "
        "added_tokens_decoder."
    )
  return tables


def diff(
    directory: str, vocab: Optional[vocabularies.Ankh3Vocabulary] = None
) -> tuple[list[str], list[str]]:
  """Compares a tokenizer directory (a release's files) with a table.

  Args:
    directory: holds any of `spiece.model`, `tokenizer.json`,
      `tokenizer_config.json`, `special_tokens_map.json`.
    vocab: the table to compare with; the built-in one by default.

  Returns:
    (id lines, file lines): one line for every id where a file gives another
    token than `vocab` (e.g. `id 6: built-in 'O'; tokenizer.json '▁'`), and
    one line for every way `special_tokens_map.json` / `tokenizer_config.json`
    differ from what `save` writes for `vocab`.
  """
  vocab = vocab or vocabularies.Ankh3Vocabulary()
  ours = dict(enumerate(vocab.tokens))
  builtin = vocab.tokens == vocabularies.default_tokens()
  label = "built-in" if builtin else "this table"
  tables = file_tables(directory)
  id_lines = []
  for i in sorted(set(ours).union(*tables.values())):
    theirs = [
        f"{name} {table[i]!r}" if i in table else f"{name} none"
        for name, table in tables.items()
        if table.get(i) != ours.get(i)
        and (i in table or not name.startswith(("tokenizer_config", "added")))
    ]
    if theirs:
      mine = repr(ours[i]) if i in ours else "none"
      id_lines.append(f"id {i}: {label} {mine}; " + "; ".join(theirs))
  return id_lines, _file_lines(directory, vocab)


def _file_lines(
    directory: str, vocab: vocabularies.Ankh3Vocabulary
) -> list[str]:
  """How the token lists and settings differ from what `save` writes."""
  lines = []
  spec = _read_json(os.path.join(directory, vocabularies.TOKENIZER_JSON_FILE))
  if spec is not None and "Metaspace" in json.dumps(spec.get("pre_tokenizer")):
    lines.append(
        f"{vocabularies.TOKENIZER_JSON_FILE}: a Metaspace pre-tokenizer puts "
        "a ▁ before each word, which a table without a ▁ piece reads as "
        "<unk> (AutoTokenizer gives an extra <unk>)"
    )
  path = os.path.join(directory, SPECIAL_TOKENS_FILE)
  if os.path.exists(path):
    with open(path, "rb") as f:
      data = f.read()
    if data != special_tokens_map_bytes(vocab):
      lines += _special_lines(
          SPECIAL_TOKENS_FILE, json.loads(data), special_tokens_map(vocab)
      )
      if not lines:
        lines.append(f"{SPECIAL_TOKENS_FILE}: same tokens, other bytes")
  config = _read_json(os.path.join(directory, TOKENIZER_CONFIG_FILE))
  if config is not None:
    lines += _special_lines(
        TOKENIZER_CONFIG_FILE,
        {k: v for k, v in config.items() if k in special_tokens_map(vocab)},
        special_tokens_map(vocab),
    )
    names = config.get("model_input_names")
    if names is not None and list(names) != list(MODEL_INPUT_NAMES):
      lines.append(
          f"{TOKENIZER_CONFIG_FILE}: model_input_names {names} (T5 takes "
          f"{list(MODEL_INPUT_NAMES)})"
      )
  return lines


def _special_lines(
    name: str, theirs: dict[str, Any], ours: dict[str, Any]
) -> list[str]:
  lines = []
  for key, value in ours.items():
    other = theirs.get(key)
    if key == "additional_special_tokens":
      other = [t["content"] if isinstance(t, dict) else t for t in other or []]
      extra = [t for t in other if t not in value]
      missing = [t for t in value if t not in other]
      if extra:
        lines.append(
            f"{name}: {key} also lists {', '.join(extra[:5])}"
            + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        )
      if missing and key in theirs:
        lines.append(
            f"{name}: {key} lacks {len(missing)} of the "
            f"{len(value)} sentinels, e.g. {missing[0]}"
        )
      if not extra and not missing and other != value:
        lines.append(f"{name}: {key} in another order")
      continue
    if isinstance(other, dict):
      other = other.get("content")
    if key in theirs and other != value:
      lines.append(f"{name}: {key} is {other!r} there, {value!r} here")
  return lines


def _parse(argv: Optional[Sequence[str]]):
  import argparse  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.hf_tokenizer",
      description="Compares tokenizer files (e.g. a release's) with a table.",
  )
  sub = parser.add_subparsers(dest="command", required=True)
  d = sub.add_parser(
      "diff",
      help="one line for every id where the files and the table differ",
  )
  d.add_argument("directory", help="holds spiece.model, tokenizer.json, ...")
  d.add_argument(
      "--tokenizer",
      help=(
          "compare with this table (a spiece.model, tokenizer.json or "
          "directory) instead of the built-in one"
      ),
  )
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`diff DIR`: prints the differing ids; status 1 when there are any."""
  args = _parse(argv)
  vocab = vocabularies.Ankh3Vocabulary(tokenizer=args.tokenizer)
  id_lines, file_lines = diff(args.directory, vocab)
  for line in id_lines + file_lines:
    print(line)
  read = ", ".join(file_tables(args.directory))
  if id_lines:
    print(f"{len(id_lines)} ids differ from {vocab.source} (read: {read})")
    return 1
  print(f"Every id agrees with {vocab.source} (read: {read})")
  return 0


if __name__ == "__main__":
  # pylint: disable-next=g-import-not-at-top
  from ankh3_tasks import cli

  sys.exit(cli.run(main))
