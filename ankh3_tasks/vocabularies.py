"""The Ankh3 token table and its seqio Vocabulary.

Ankh3 reads proteins one residue per token. The built-in table has 256 ids,
laid out as the released Ankh3 tokenizer (`ElnaggarLab/ankh3-large` and
`-xl`, one tokenizer for both) lays them out:

  id        token                                         evidence
  0         <pad>                                         verified
  1         </s>                                          verified
  2         <unk>                                         inferred
  3, 4, 5   [NLU] [S2S] [NLG]                             inferred
  6         O                                             inferred
  7..26     L A G S V E R T I D P K N F Q Y H M C W       verified
  27..30    X U Z B                                       inferred
  31..255   <extra_id_224> .. <extra_id_0>                inferred
            (<extra_id_i> = 255 - i)

Verified: read from encodings the released tokenizer produced (`<pad>` 0,
`</s>` 1 appended after the residues, and the 20 standard residues at 7..26:
`MCADPSKCIYMYV` -> 24 25 8 16 17 10 18 25 15 22 24 22 11 1). Inferred: chosen
to fit how that tokenizer was built, a SentencePiece character model with T5's
extra ids. Such a model puts its control and unknown pieces first (T5: pad 0,
eos 1, unk 2), its user-defined pieces (the task tokens) right after them, and
its ordinary pieces in order of frequency, which is why the standard residues
run from L (the most common in UniRef50) to W; the rarer letters X U Z B follow
in their UniRef50 order. T5's tokenizer then appends the 225 sentinels, the
top id being `<extra_id_0>`. Four ids lie between `<unk>` and L; three hold the
task tokens, and O, the rarest residue, takes the fourth, so that a wrong guess
there touches the fewest proteins. To use the exact ids of a released
tokenizer, point `ANKH3_TOKENIZER` at its `spiece.model`, `tokenizer.json` or
directory (see `configured_tokenizer`), or build the vocabulary with
`Ankh3Vocabulary.from_sentencepiece` / `Ankh3Vocabulary(tokenizer=PATH)`.

Encoding rules, identical in Python (`encode`) and TensorFlow (`encode_tf`) for
every byte string:
  * lowercase residues encode as their uppercase ids;
  * ASCII whitespace is ignored;
  * one terminal `*` (a stop codon marker) is dropped;
  * multi-character tokens (`[NLU]`, `[S2S]`, `<extra_id_N>`, `<pad>`, `</s>`,
    `<unk>`, ...) encode as single ids, matched case-insensitively;
  * invalid UTF-8 is read as U+FFFD, as `bytes.decode(errors="replace")` does;
  * every other character maps to `<unk>`: count `unk_id` in the output to find
    them (see `count_unknown`).
"""

from collections.abc import Iterable, Mapping, Sequence
import functools
import hashlib
import json
import os
import re
from typing import Optional, Union

import gin
import numpy as np
import seqio
import tensorflow as tf
import tensorflow_text as tf_text

PAD = "<pad>"
EOS = "</s>"
UNK = "<unk>"
# The 20 standard residues, in the released tokenizer's id order (7..26).
STANDARD_RESIDUES = "LAGSVERTIDPKNFQYHMCW"
# Every residue letter the vocabulary reads, in built-in id order.
RESIDUES = "O" + STANDARD_RESIDUES + "XUZB"
NLU = "[NLU]"
S2S = "[S2S]"
NLG = "[NLG]"
TASK_TOKENS = (NLU, S2S, NLG)
NUM_SENTINELS = 225
VOCAB_SIZE = 256
# Ids of the built-in table read off the released tokenizer's own output.
VERIFIED_IDS = {
    PAD: 0,
    EOS: 1,
    **{r: 7 + i for i, r in enumerate(STANDARD_RESIDUES)},
}

# Where a run names its tokenizer: a gin macro (`--gin.ANKH3_TOKENIZER=...`),
# else this environment variable; neither means the built-in table.
TOKENIZER_MACRO = "ANKH3_TOKENIZER"
TOKENIZER_ENV = "ANKH3_TOKENIZER"
# The released tokenizer of ElnaggarLab/ankh3-large at revision
# 2be091622e8a393f0ef21735070084123c874b6e (ankh3-xl has the same files):
# `spiece.model` by SHA-256, `tokenizer.json` by git blob SHA-1.
RELEASED_SPIECE_SHA256 = (
    "f2b5e1bbd110b71ca9b2878e1fcd3265610076ecc97bd696e8a745c9bacc54e0"
)
RELEASED_TOKENIZER_JSON_GIT_SHA1 = "90f0c94b43c81496b3ca81e3ec1c092ef2dd7fca"
RELEASED_NAME = "the released Ankh3 tokenizer (ElnaggarLab/ankh3-large, -xl)"

SPIECE_FILE = "spiece.model"
TOKENIZER_JSON_FILE = "tokenizer.json"
_SPACE_MARK = "\u2581"  # SentencePiece's word-start mark.


def sentinel_token(i: int) -> str:
  """Returns the text of sentinel `i`, e.g. `<extra_id_0>`."""
  return f"<extra_id_{i}>"


def unused_token(i: int) -> str:
  """Returns the placeholder of an id a tokenizer file leaves empty."""
  return f"<unused_{i}>"


def default_tokens() -> tuple[str, ...]:
  """Returns the built-in table: the token of every id, in id order."""
  tokens = [PAD, EOS, UNK, *TASK_TOKENS, *RESIDUES]
  tokens += [sentinel_token(i) for i in reversed(range(NUM_SENTINELS))]
  assert len(tokens) == VOCAB_SIZE, len(tokens)
  return tuple(tokens)


def configured_tokenizer() -> Optional[str]:
  """Returns the tokenizer a run names, or None for the built-in table.

  The gin macro `ANKH3_TOKENIZER` wins, then the environment variable
  `ANKH3_TOKENIZER`. The value is a `spiece.model`, a `tokenizer.json` or a
  directory holding one (a Hugging Face model directory), on any path
  `tf.io.gfile` reads.
  """
  try:
    value = gin.query_parameter(f"%{TOKENIZER_MACRO}")
  except ValueError:
    value = None
  return value or os.environ.get(TOKENIZER_ENV) or None


# ------------------------------------------------------- tokenizer files


def _strip_space_mark(pieces: Sequence[str]) -> list[str]:
  """Names pieces as tokens: `▁A` is `A` unless `A` is a piece of its own."""
  present = set(pieces)
  names = []
  for piece in pieces:
    bare = piece[1:]
    if piece.startswith(_SPACE_MARK) and bare and bare not in present:
      present.add(bare)
      piece = bare
    names.append(piece)
  return names


def _fill_table(by_id: dict[int, str], source: str) -> tuple[str, ...]:
  """Returns the 256-id table of `by_id`, empty ids as `<unused_i>`."""
  outside = sorted(i for i in by_id if not 0 <= i < VOCAB_SIZE)
  if outside:
    raise ValueError(
        f"{source}: token {by_id[outside[0]]!r} has id {outside[0]}, outside "
        f"the {VOCAB_SIZE}-id table of Ankh3."
    )
  return tuple(by_id.get(i, unused_token(i)) for i in range(VOCAB_SIZE))


def tokens_from_sentencepiece(data: bytes, source: str) -> tuple[str, ...]:
  """Returns the table of a SentencePiece model, as T5's tokenizer reads it.

  Piece `i` is id `i`; the sentinels the model does not hold are appended
  after its pieces as T5's tokenizer appends its extra ids
  (`<extra_id_i>` = number of pieces + 224 - i).

  Args:
    data: the bytes of a `spiece.model`.
    source: its name, for errors.

  Raises:
    ValueError: for bytes that are not a SentencePiece model, or a model
      whose pieces and sentinels do not fit 256 ids.
  """
  # pylint: disable-next=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2

  proto = sentencepiece_model_pb2.ModelProto()
  try:
    proto.ParseFromString(data)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{source}: not a SentencePiece model ({e}).") from e
  if not proto.pieces:
    raise ValueError(f"{source}: not a SentencePiece model (no pieces).")
  names = _strip_space_mark([p.piece for p in proto.pieces])
  by_id = dict(enumerate(names))
  size = len(names)
  for i in range(NUM_SENTINELS):
    if sentinel_token(i) not in names:
      by_id[size + NUM_SENTINELS - 1 - i] = sentinel_token(i)
  return _fill_table(by_id, source)


def tokens_from_tokenizer_json(data: bytes, source: str) -> tuple[str, ...]:
  """Returns the table of a Hugging Face `tokenizer.json`.

  Reads the model's vocabulary (a Unigram list, or a piece-to-id map) and the
  added tokens, which win where both name an id.

  Raises:
    ValueError: for a file that is not a tokenizer, or ids beyond 255.
  """
  try:
    spec = json.loads(data)
    vocab = spec["model"]["vocab"]
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{source}: not a Hugging Face tokenizer ({e}).") from e
  if isinstance(vocab, dict):
    pairs = sorted((i, piece) for piece, i in vocab.items())
  else:
    pairs = [(i, entry[0]) for i, entry in enumerate(vocab)]
  by_id = dict(pairs)
  for added in spec.get("added_tokens") or []:
    by_id[added["id"]] = added["content"]
  ids = sorted(by_id)
  names = _strip_space_mark([by_id[i] for i in ids])
  return _fill_table(dict(zip(ids, names)), source)


def _git_blob_sha1(data: bytes) -> str:
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@functools.lru_cache(maxsize=None)
def read_tokenizer(path: str) -> tuple[tuple[str, ...], str]:
  """Reads the table of a tokenizer file or directory (cached per path).

  Args:
    path: a `spiece.model`, a `tokenizer.json`, or a directory holding
      either (`spiece.model` is read when it has both).

  Returns:
    The table, and a description: the released Ankh3 tokenizer is named.

  Raises:
    FileNotFoundError: when there is no such file, or the directory holds
      neither file.
    ValueError: for a file that is neither format, or does not fit.
  """
  if tf.io.gfile.isdir(path):
    for name in (SPIECE_FILE, TOKENIZER_JSON_FILE):
      if tf.io.gfile.exists(os.path.join(path, name)):
        return read_tokenizer(os.path.join(path, name))
    raise FileNotFoundError(
        f"{path}: no {SPIECE_FILE} or {TOKENIZER_JSON_FILE} in this directory."
    )
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
        f"{path}: no such tokenizer file (expected a {SPIECE_FILE}, a "
        f"{TOKENIZER_JSON_FILE} or a directory holding one)."
    )
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  if path.endswith(".json"):
    tokens = tokens_from_tokenizer_json(data, path)
    released = _git_blob_sha1(data) == RELEASED_TOKENIZER_JSON_GIT_SHA1
  else:
    tokens = tokens_from_sentencepiece(data, path)
    released = hashlib.sha256(data).hexdigest() == RELEASED_SPIECE_SHA256
  return tokens, (f"{RELEASED_NAME}, {path}" if released else path)


# ----------------------------------------------------------------- table

# Marks in the character table that are not ids.
_SKIP = -1  # whitespace
_STAR = -2  # `*`: dropped when last, `<unk>` elsewhere
_SPECIAL_MISS = -3  # a piece that is not a multi-character token
_WHITESPACE = " \t\n\r\f\v"
# Sentinels by form, so that `<extra_id_999>` splits off (and reads as
# characters) in both encoders alike.
_SENTINEL_PATTERN = r"<extra_id_[0-9]+>"
_REPLACEMENT = 0xFFFD


class _Table:
  """A checked token table with everything its encoders need."""

  def __init__(self, tokens: tuple[str, ...]):
    _check_table(tokens)
    self.tokens = tokens
    self.id_of = {t.upper(): i for i, t in enumerate(tokens)}
    self.sentinel_ids = tuple(
        self.id_of[sentinel_token(i).upper()] for i in range(NUM_SENTINELS)
    )
    self.unk_id = self.id_of[UNK.upper()]
    self.eos_id = self.id_of[EOS.upper()]
    # Single characters: a dense table over code points, so that TensorFlow
    # needs no (stateful) lookup table.
    singles = {t: i for i, t in enumerate(tokens) if len(t) == 1}
    size = max([128, *(ord(t) + 1 for t in singles)])
    char_ids = np.full(size, self.unk_id, dtype=np.int32)
    for c in _WHITESPACE:
      char_ids[ord(c)] = _SKIP
    char_ids[ord("*")] = _STAR
    for token, i in singles.items():
      char_ids[ord(token)] = i
    for token, i in singles.items():
      if "A" <= token <= "Z" and token.lower() not in singles:
        char_ids[ord(token.lower())] = i
    self.char_ids = char_ids
    # Multi-character tokens matched in text: ASCII ones only, so that case
    # folding is the same in RE2 and Python (others decode, never encode).
    self.names = sorted(
        (t.upper() for t in tokens if len(t) > 1 and t.isascii()),
        key=lambda t: (-len(t), t),
    )
    literals = [re.escape(t) for t in self.names if not re.fullmatch(
        _SENTINEL_PATTERN, t.lower())]
    self.pattern = "(?i)" + "|".join([_SENTINEL_PATTERN, *literals])
    self.regex = re.compile(self.pattern, re.ASCII)
    self.openers = sorted({ord(t[0]) for t in self.names})


def _check_table(tokens: tuple[str, ...]) -> None:
  """Raises ValueError unless `tokens` is a usable 256-id Ankh3 table."""
  if len(tokens) != VOCAB_SIZE:
    raise ValueError(
        f"An Ankh3 table has {VOCAB_SIZE} ids; got {len(tokens)} tokens."
    )
  if tokens[0] != PAD:
    raise ValueError(f"seqio needs {PAD} at id 0, got {tokens[0]!r}.")
  upper = [t.upper() for t in tokens]
  repeated = sorted({t for t in tokens if upper.count(t.upper()) > 1})
  if repeated or any(not t for t in tokens):
    raise ValueError(
        f"Every token of an Ankh3 table has one id; repeated (ignoring case) "
        f"or empty: {repeated[:5]}."
    )
  needed = [EOS, UNK, NLU, S2S] + [
      sentinel_token(i) for i in range(NUM_SENTINELS)
  ]
  missing = [t for t in needed if t not in tokens]
  if missing:
    raise ValueError(
        f"An Ankh3 table needs {EOS}, {UNK}, {NLU}, {S2S} and "
        f"{NUM_SENTINELS} sentinels; missing {missing[:5]}"
        f"{' ...' if len(missing) > 5 else ''}."
    )


@functools.lru_cache(maxsize=None)
def _table(tokens: tuple[str, ...]) -> _Table:
  return _Table(tokens)


class Ankh3Vocabulary(seqio.Vocabulary):
  """Character-level protein vocabulary of Ankh3 (256 ids, 225 sentinels).

  See the module docstring for the table and the encoding rules. Example:

    >>> vocab = Ankh3Vocabulary()
    >>> vocab.encode("[NLU]mk t*")
    [3, 24, 18, 14]
    >>> vocab.decode([3, 24, 18, 14, 255, 1])
    '[NLU]MKT<extra_id_0>'

  Which table: `tokens` when given; else the tokenizer file `tokenizer`;
  else the one the run names (`configured_tokenizer()`: the gin macro or the
  environment variable `ANKH3_TOKENIZER`), looked up whenever the table is
  used, so tasks registered at import follow a gin line parsed later; else
  the built-in table. Two instances are equal when their tables are equal.
  """

  def __init__(
      self,
      tokens: Optional[Sequence[str]] = None,
      tokenizer: Optional[str] = None,
  ):
    """Builds the vocabulary.

    Args:
      tokens: the token of every id, in id order: 256 distinct tokens with
        `<pad>` at 0 and `</s>`, `<unk>`, `[NLU]`, `[S2S]` and the 225
        sentinels among them. Residues a table lacks encode as `<unk>`.
      tokenizer: a `spiece.model`, `tokenizer.json`, or a directory holding
        one, to take the table from (read when first used).

    Raises:
      ValueError: for an unusable table, or both arguments.
    """
    if tokens is not None and tokenizer is not None:
      raise ValueError("Give the table as `tokens` or `tokenizer`, not both.")
    self._tokens_given = None if tokens is None else tuple(tokens)
    self._tokenizer = tokenizer
    if self._tokens_given is not None:
      _table(self._tokens_given)  # Checks it now.
    super().__init__(extra_ids=0)

  @classmethod
  def from_sentencepiece(
      cls, model_file: str
  ) -> tuple["Ankh3Vocabulary", list[str]]:
    """Builds the vocabulary of a SentencePiece model, exactly.

    Reads a `spiece.model` (any path `tf.io.gfile` reads), such as the one of
    a released Ankh3 checkpoint: piece `i` is id `i`, sentinels are placed as
    T5's tokenizer appends its extra ids. Pieces outside the built-in set (a
    `▁` piece, a `[MASK]`) keep their ids; residues the model lacks encode
    as `<unk>`.

    Returns:
      The vocabulary, and one line for every id that differs from the built-in
      table (empty when the model agrees with it).

    Raises:
      ValueError: if the model does not fit an Ankh3 table.
    """
    tokens, _ = read_tokenizer(model_file)
    vocab = cls(tokens)
    vocab._tokenizer = model_file  # pylint: disable=protected-access
    return vocab, vocab.differences()

  # ---------------------------------------------------------------- table

  @property
  def _t(self) -> _Table:
    if self._tokens_given is not None:
      return _table(self._tokens_given)
    path = self._tokenizer or configured_tokenizer()
    return _table(read_tokenizer(path)[0] if path else default_tokens())

  @property
  def source(self) -> str:
    """Where the table comes from, in words."""
    if self._tokens_given is not None and self._tokenizer is None:
      builtin = self._tokens_given == default_tokens()
      return "the built-in table" if builtin else "a given table"
    path = self._tokenizer or configured_tokenizer()
    return read_tokenizer(path)[1] if path else "the built-in table"

  @property
  def tokens(self) -> tuple[str, ...]:
    """The token of every id, in id order."""
    return self._t.tokens

  def differences(self) -> list[str]:
    """One line for each token whose id differs from the built-in table."""
    builtin = {t: i for i, t in enumerate(default_tokens())}
    mine = {t: i for i, t in enumerate(self.tokens)}
    lines = []
    for token in dict.fromkeys([*default_tokens(), *self.tokens]):
      if builtin.get(token) != mine.get(token):
        lines.append(_difference(token, builtin.get(token), mine.get(token)))
    return lines

  def token_id(self, token: str) -> int:
    """Returns the id of a token such as `A`, `[S2S]` or `<extra_id_3>`.

    Raises:
      KeyError: for a token the table does not hold.
    """
    return self._t.id_of[token.upper()]

  def sentinel_id(self, i: int) -> int:
    """Returns the id of `<extra_id_i>`; 255 - i in the built-in table."""
    if not 0 <= i < NUM_SENTINELS:
      raise ValueError(f"Sentinel {i} outside 0..{NUM_SENTINELS - 1}.")
    return self._t.sentinel_ids[i]

  @property
  def sentinel_ids(self) -> tuple[int, ...]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order."""
    return self._t.sentinel_ids

  @property
  def num_sentinels(self) -> int:
    return NUM_SENTINELS

  @property
  def eos_id(self) -> int:
    return self._t.eos_id

  @property
  def unk_id(self) -> int:
    return self._t.unk_id

  @property
  def bos_id(self) -> Optional[int]:
    return None

  @property
  def _base_vocab_size(self) -> int:
    # Sentinels are ordinary entries of the table, not seqio `extra_ids`, so
    # that `decode` shows them instead of folding them into `<unk>`.
    return VOCAB_SIZE

  def count_unknown(self, ids: Union[Sequence[int], np.ndarray]) -> int:
    """Returns how many of `ids` are `<unk>`."""
    return int(np.sum(np.asarray(ids) == self.unk_id))

  # --------------------------------------------------------------- python

  def _encode(self, s: Union[str, bytes]) -> list[int]:
    table = self._t
    if isinstance(s, bytes):
      s = s.decode("utf-8", errors="replace")
    char_ids, size, unk = table.char_ids, len(table.char_ids), table.unk_id

    def chars(text):
      return [int(char_ids[ord(c)]) if ord(c) < size else unk for c in text]

    ids = []
    start = 0
    for match in table.regex.finditer(s):
      ids += chars(s[start : match.start()])
      token_id = table.id_of.get(match.group().upper())
      # A token matched by form but absent from the table (such as
      # <extra_id_999>) is read as plain characters, like in `_encode_tf`.
      ids += chars(match.group()) if token_id is None else [token_id]
      start = match.end()
    ids += chars(s[start:])
    ids = [i for i in ids if i != _SKIP]
    if ids and ids[-1] == _STAR:
      ids.pop()
    return [unk if i == _STAR else i for i in ids]

  def _decode(self, ids: Iterable[int]) -> str:
    table = self._t
    skip = (table.id_of[PAD.upper()], table.eos_id)
    ids = [int(i) for i in ids]
    if any(i < 0 for i in ids):
      raise ValueError(f"Negative id in {ids}.")
    return "".join(table.tokens[i] for i in ids if i not in skip)

  # ----------------------------------------------------------- tensorflow

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Encodes a string tensor: a scalar to 1-D int32, a vector to ragged.

    A vector of strings is encoded in one pass, the way `tokenize_sequence`
    reads a batch of records: the same ids as one string at a time, for a
    fraction of the ops per string.
    """
    s = tf.convert_to_tensor(s, dtype=tf.string)
    if s.shape.rank == 0:
      return self._encode_batch_tf(tf.reshape(s, [1])).values
    if s.shape.rank == 1:
      return self._encode_batch_tf(s)
    raise ValueError(f"encode_tf takes a scalar or a vector, got {s.shape}.")

  def _encode_batch_tf(self, strings: tf.Tensor) -> tf.RaggedTensor:
    """Encodes [n] strings to int32 [n, None] ids."""
    table = self._t
    # Invalid UTF-8 becomes U+FFFD, as in Python's `decode(errors="replace")`.
    codepoints = tf.strings.unicode_decode(
        strings, "UTF-8", errors="replace", replacement_char=_REPLACEMENT
    )
    flat = codepoints.flat_values
    has_special = tf.reduce_any(
        tf.equal(flat[:, None], tf.constant(table.openers, tf.int32))
    )
    ids, rows = tf.cond(
        has_special,
        lambda: self._encode_pieces_tf(table, codepoints),
        lambda: (
            self._chars_to_ids_tf(table, flat),
            codepoints.value_rowids(),
        ),
    )
    keep = ids != _SKIP
    ids = tf.boolean_mask(ids, keep)
    rows = tf.boolean_mask(rows, keep)
    # A `*` that ends a string is dropped; any other reads as <unk>.
    last = tf.not_equal(rows, tf.concat([rows[1:], [-1]], axis=0))
    keep = tf.logical_not(tf.logical_and(last, ids == _STAR))
    ids = tf.boolean_mask(ids, keep)
    rows = tf.boolean_mask(rows, keep)
    return tf.RaggedTensor.from_value_rowids(
        tf.where(ids == _STAR, table.unk_id, ids),
        rows,
        nrows=tf.size(strings, out_type=tf.int64),
    )

  @staticmethod
  def _chars_to_ids_tf(table: _Table, codepoints: tf.Tensor) -> tf.Tensor:
    size = len(table.char_ids)
    ids = tf.gather(tf.constant(table.char_ids), tf.minimum(codepoints, size - 1))
    return tf.where(codepoints < size, ids, table.unk_id)

  def _encode_pieces_tf(
      self, table: _Table, codepoints: tf.RaggedTensor
  ) -> tuple[tf.Tensor, tf.Tensor]:
    """Ids, and the string each comes from, of texts with longer tokens."""
    # The regex ops read C strings: a NUL would end the text there. It maps
    # to <unk> like U+FFFD does, so that stands in for it.
    codepoints = codepoints.with_flat_values(
        tf.where(codepoints.flat_values == 0, _REPLACEMENT,
                 codepoints.flat_values)
    )
    strings = tf.strings.unicode_encode(codepoints, "UTF-8")
    pieces = tf_text.regex_split(
        strings, table.pattern, keep_delim_regex_pattern=table.pattern
    )
    piece_rows = pieces.value_rowids()
    pieces = pieces.values
    # A comparison with every multi-character token, not a lookup table:
    # tables are stateful and would stop T5X from checkpointing the dataset.
    # A token matched by form but absent from the table (such as
    # <extra_id_999>) matches no name and is read as plain characters, like
    # in `_encode`.
    keys = tf.constant(table.names)
    values = tf.constant([table.id_of[t] for t in table.names], tf.int32)
    matches = tf.equal(tf.strings.upper(pieces)[:, None], keys[None, :])
    special = tf.where(
        tf.reduce_any(matches, axis=1),
        tf.gather(values, tf.argmax(tf.cast(matches, tf.int32), axis=1)),
        _SPECIAL_MISS,
    )
    chars = tf.strings.unicode_decode(pieces, "UTF-8")
    char_ids = self._chars_to_ids_tf(table, chars.flat_values)
    char_pieces = chars.value_rowids()
    is_special = tf.gather(special != _SPECIAL_MISS, char_pieces)
    first_in_piece = tf.range(
        tf.size(char_pieces, out_type=tf.int64)
    ) == tf.gather(chars.row_starts(), char_pieces)
    flat = tf.where(is_special, tf.gather(special, char_pieces), char_ids)
    keep = tf.logical_or(tf.logical_not(is_special), first_in_piece)
    return (
        tf.boolean_mask(flat, keep),
        tf.boolean_mask(tf.gather(piece_rows, char_pieces), keep),
    )

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    table = self._t
    strings = list(table.tokens)
    strings[table.id_of[PAD.upper()]] = strings[table.eos_id] = ""
    return tf.strings.reduce_join(tf.gather(tf.constant(strings), ids), axis=-1)

  # -------------------------------------------------------------- identity

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Ankh3Vocabulary) and self.tokens == other.tokens

  def __hash__(self) -> int:
    return hash(self.tokens)

  def __str__(self) -> str:
    return f"Ankh3Vocabulary({self.source}, {VOCAB_SIZE} ids)"

  __repr__ = __str__


def _difference(token: str, builtin: Optional[int], mine: Optional[int]) -> str:
  if builtin is None:
    return f"{token}: not in the built-in table, id {mine} here"
  if mine is None:
    return f"{token}: built-in id {builtin}, not in this table (reads as <unk>)"
  return f"{token}: built-in id {builtin}, id {mine} here"


def task_token_ids(vocabulary: Ankh3Vocabulary) -> Mapping[str, int]:
  """Returns the ids of the task tokens the table holds, keyed by text."""
  return {t: vocabulary.token_id(t) for t in TASK_TOKENS if t in vocabulary.tokens}
