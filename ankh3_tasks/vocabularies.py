"""The Ankh3 token table and its seqio Vocabulary.

Ankh3 reads proteins one residue per token. The table has 256 ids:

  id        token
  0         <pad>
  1         </s>
  2         <unk>
  3..27     A L G V S R E D T I P K F Q N Y M H W C X B O U Z
  28        [NLU]   (denoising task token)
  29        [S2S]   (sequence completion task token)
  30        [NLG]   (reserved, unused)
  31..255   <extra_id_224> .. <extra_id_0>   (<extra_id_i> = 255 - i)

The residue order follows the published Ankh / ProtT5 order (Ankh's released
ids include L=4, G=5, V=6, S=7, E=9, P=13, Q=16). The ids of the released Ankh3
tokenizer could not be read when this table was written, so the table is this
package's own; `Ankh3Vocabulary.from_sentencepiece` builds the vocabulary from a
released `spiece.model` instead and reports every id that differs.

Encoding rules, identical in Python (`encode`) and TensorFlow (`encode_tf`):
  * lowercase residues encode as their uppercase ids;
  * ASCII whitespace is ignored;
  * one terminal `*` (a stop codon marker) is dropped;
  * `[NLU]`, `[S2S]`, `[NLG]`, `<extra_id_N>`, `<pad>`, `</s>` and `<unk>`
    encode as single ids (matched case-insensitively);
  * every other character maps to `<unk>`: count `unk_id` in the output to find
    them (see `count_unknown`).
"""

from collections.abc import Iterable, Mapping, Sequence
import re
from typing import Optional, Union

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_text as tf_text

PAD = "<pad>"
EOS = "</s>"
UNK = "<unk>"
RESIDUES = "ALGVSREDTIPKFQNYMHWCXBOUZ"
NLU = "[NLU]"
S2S = "[S2S]"
NLG = "[NLG]"
TASK_TOKENS = (NLU, S2S, NLG)
NUM_SENTINELS = 225
VOCAB_SIZE = 256


def sentinel_token(i: int) -> str:
  """Returns the text of sentinel `i`, e.g. `<extra_id_0>`."""
  return f"<extra_id_{i}>"


def default_tokens() -> tuple[str, ...]:
  """Returns the built-in table: the token of every id, in id order."""
  tokens = [PAD, EOS, UNK, *RESIDUES, *TASK_TOKENS]
  tokens += [sentinel_token(i) for i in reversed(range(NUM_SENTINELS))]
  assert len(tokens) == VOCAB_SIZE, len(tokens)
  return tuple(tokens)


# Multi-character tokens, matched before residues are read character by
# character. RE2 (TensorFlow) and Python's `re` read this pattern identically.
_SPECIAL_PATTERN = r"(?i)\[(?:NLU|S2S|NLG)\]|<extra_id_[0-9]+>|<pad>|</s>|<unk>"
# re.ASCII: case folding of ASCII only, like RE2 and `tf.strings.upper`.
_SPECIAL_RE = re.compile(_SPECIAL_PATTERN, re.ASCII)
# Marks in the character table that are not ids.
_SKIP = -1  # whitespace
_STAR = -2  # `*`: dropped when last, `<unk>` elsewhere
_SPECIAL_MISS = -3  # a piece that is not a multi-character token
_WHITESPACE = " \t\n\r\f\v"


class Ankh3Vocabulary(seqio.Vocabulary):
  """Character-level protein vocabulary of Ankh3 (256 ids, 225 sentinels).

  See the module docstring for the table and the encoding rules. Example:

    >>> vocab = Ankh3Vocabulary()
    >>> vocab.encode("[NLU]mk t*")
    [28, 19, 14, 11]
    >>> vocab.decode([28, 19, 14, 11, 255, 1])
    '[NLU]MKT<extra_id_0>'

  Two instances are equal when their tables are equal, so vocabularies built
  separately (by gin for the model and by the task registry) compare equal.
  """

  def __init__(self, tokens: Optional[Sequence[str]] = None):
    """Builds the vocabulary.

    Args:
      tokens: the token of every id, in id order. Defaults to the built-in
        table (`default_tokens()`). Use `from_sentencepiece` to take the ids of
        a released tokenizer.

    Raises:
      ValueError: if the table is not a permutation of the built-in tokens.
    """
    tokens = default_tokens() if tokens is None else tuple(tokens)
    expected = set(default_tokens())
    if len(tokens) != VOCAB_SIZE or set(tokens) != expected:
      missing = sorted(expected - set(tokens))
      extra = sorted(set(tokens) - expected)
      raise ValueError(
          f"An Ankh3 table holds the {VOCAB_SIZE} built-in tokens once each; "
          f"got {len(tokens)} tokens, missing {missing[:5]}, "
          f"unexpected {extra[:5]}."
      )
    if tokens[0] != PAD:
      raise ValueError(f"seqio needs {PAD} at id 0, got {tokens[0]!r}.")
    self._tokens = tokens
    self._id_of = {t.upper(): i for i, t in enumerate(tokens)}
    self._sentinel_ids = tuple(
        self.token_id(sentinel_token(i)) for i in range(NUM_SENTINELS)
    )
    # One entry per ASCII code: the id of that character, or a mark.
    char_ids = np.full(128, self.token_id(UNK), dtype=np.int32)
    for residue in RESIDUES:
      char_ids[ord(residue)] = self.token_id(residue)
      char_ids[ord(residue.lower())] = self.token_id(residue)
    for c in _WHITESPACE:
      char_ids[ord(c)] = _SKIP
    char_ids[ord("*")] = _STAR
    self._char_ids = char_ids
    super().__init__(extra_ids=0)

  @classmethod
  def from_sentencepiece(
      cls, model_file: str
  ) -> tuple["Ankh3Vocabulary", list[str]]:
    """Builds the vocabulary from the ids of a SentencePiece model.

    Reads the `spiece.model` of a released Ankh checkpoint. Pieces are matched
    to tokens by their text (a leading `▁` is ignored); sentinels the model
    does not hold are placed the way Hugging Face's T5 tokenizer appends extra
    ids (`<extra_id_i>` = model size + 224 - i).

    Args:
      model_file: path of the SentencePiece model (any path `tf.io.gfile`
        reads).

    Returns:
      The vocabulary, and one line for every id that differs from the built-in
      table (empty when the model agrees with it).

    Raises:
      ValueError: if the model does not give every token exactly one id below
        256.
    """
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top

    with tf.io.gfile.GFile(model_file, "rb") as f:
      processor = spm.SentencePieceProcessor(model_proto=f.read())
    size = processor.get_piece_size()
    wanted = set(default_tokens())
    id_of = {}
    for i in range(size):
      piece = processor.id_to_piece(i)
      name = (
          piece[1:] if piece.startswith("\u2581") and len(piece) > 1 else piece
      )
      if name in wanted and name not in id_of:
        id_of[name] = i
    for i in range(NUM_SENTINELS):
      id_of.setdefault(sentinel_token(i), size + NUM_SENTINELS - 1 - i)
    missing = sorted(wanted - set(id_of))
    if missing:
      raise ValueError(f"{model_file}: no piece for tokens {missing}.")
    by_id = {}
    for token, i in id_of.items():
      if i >= VOCAB_SIZE:
        raise ValueError(
            f"{model_file}: token {token!r} has id {i}, outside the "
            f"{VOCAB_SIZE}-id table."
        )
      if i in by_id:
        raise ValueError(
            f"{model_file}: tokens {by_id[i]!r} and {token!r} share id {i}."
        )
      by_id[i] = token
    tokens = tuple(by_id[i] for i in range(VOCAB_SIZE))
    builtin = {t: i for i, t in enumerate(default_tokens())}
    differences = [
        f"{t}: built-in id {builtin[t]}, model id {id_of[t]}"
        for t in default_tokens()
        if id_of[t] != builtin[t]
    ]
    return cls(tokens), differences

  # ---------------------------------------------------------------- table

  @property
  def tokens(self) -> tuple[str, ...]:
    """The token of every id, in id order."""
    return self._tokens

  def token_id(self, token: str) -> int:
    """Returns the id of a token such as `A`, `[S2S]` or `<extra_id_3>`."""
    return self._id_of[token.upper()]

  def sentinel_id(self, i: int) -> int:
    """Returns the id of `<extra_id_i>`; 255 - i in the built-in table."""
    if not 0 <= i < NUM_SENTINELS:
      raise ValueError(f"Sentinel {i} outside 0..{NUM_SENTINELS - 1}.")
    return self._sentinel_ids[i]

  @property
  def sentinel_ids(self) -> tuple[int, ...]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order."""
    return self._sentinel_ids

  @property
  def num_sentinels(self) -> int:
    return NUM_SENTINELS

  @property
  def eos_id(self) -> int:
    return self.token_id(EOS)

  @property
  def unk_id(self) -> int:
    return self.token_id(UNK)

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

  def _chars_to_ids(self, text: str) -> list[int]:
    unk = self.unk_id
    return [int(self._char_ids[ord(c)]) if ord(c) < 128 else unk for c in text]

  def _encode(self, s: Union[str, bytes]) -> list[int]:
    if isinstance(s, bytes):
      s = s.decode("utf-8", errors="replace")
    ids = []
    start = 0
    for match in _SPECIAL_RE.finditer(s):
      ids += self._chars_to_ids(s[start : match.start()])
      token_id = self._id_of.get(match.group().upper())
      # A token matched by the pattern but absent from the table (such as
      # <extra_id_999>) is read as plain characters, like in `_encode_tf`.
      if token_id is None:
        ids += self._chars_to_ids(match.group())
      else:
        ids.append(token_id)
      start = match.end()
    ids += self._chars_to_ids(s[start:])
    ids = [i for i in ids if i != _SKIP]
    if ids and ids[-1] == _STAR:
      ids.pop()
    unk = self.unk_id
    return [unk if i == _STAR else i for i in ids]

  def _decode(self, ids: Iterable[int]) -> str:
    skip = (self.token_id(PAD), self.eos_id)
    ids = [int(i) for i in ids]
    if any(i < 0 for i in ids):
      raise ValueError(f"Negative id in {ids}.")
    return "".join(self._tokens[i] for i in ids if i not in skip)

  # ----------------------------------------------------------- tensorflow

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Encodes a scalar string tensor to a 1-D int32 tensor."""
    # Invalid UTF-8 becomes U+FFFD, as in Python's `decode(errors="replace")`.
    s = tf.strings.unicode_transcode(
        tf.convert_to_tensor(s, dtype=tf.string),
        "UTF-8",
        "UTF-8",
        errors="replace",
    )
    has_special = tf.strings.regex_full_match(s, r"(?s).*[\[<].*")
    ids = tf.cond(
        has_special,
        lambda: self._encode_pieces_tf(s),
        lambda: self._chars_to_ids_tf(
            tf.strings.unicode_decode(s, "UTF-8", errors="replace")
        ),
    )
    ids = tf.boolean_mask(ids, ids != _SKIP)
    drop_last = tf.logical_and(tf.size(ids) > 0, ids[-1:] == _STAR)
    ids = ids[: tf.size(ids) - tf.cast(tf.reduce_any(drop_last), tf.int32)]
    return tf.where(ids == _STAR, self.unk_id, ids)

  def _chars_to_ids_tf(self, codepoints: tf.Tensor) -> tf.Tensor:
    table = tf.constant(self._char_ids)
    ascii_ids = tf.gather(table, tf.minimum(codepoints, 127))
    return tf.where(codepoints < 128, ascii_ids, self.unk_id)

  def _encode_pieces_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Encodes a string that may hold multi-character tokens."""
    pieces = tf_text.regex_split(
        tf.reshape(s, [1]),
        _SPECIAL_PATTERN,
        keep_delim_regex_pattern=_SPECIAL_PATTERN,
    ).values
    # A comparison with every multi-character token, not a lookup table:
    # tables are stateful and would stop T5X from checkpointing the dataset.
    # A token matched by the pattern but absent from the table (such as
    # <extra_id_999>) matches no name and is read as plain characters, like
    # in `_encode`.
    names = [t for t in self._id_of if len(t) > 1]
    keys = tf.constant(names)
    values = tf.constant([self._id_of[t] for t in names], dtype=tf.int32)
    matches = tf.equal(tf.strings.upper(pieces)[:, None], keys[None, :])
    special = tf.where(
        tf.reduce_any(matches, axis=1),
        tf.gather(values, tf.argmax(tf.cast(matches, tf.int32), axis=1)),
        _SPECIAL_MISS,
    )
    chars = tf.strings.unicode_decode(pieces, "UTF-8", errors="replace")
    char_ids = self._chars_to_ids_tf(chars.flat_values)
    rows = chars.value_rowids()
    is_special = tf.gather(special != _SPECIAL_MISS, rows)
    first_in_row = tf.range(tf.size(rows, out_type=tf.int64)) == tf.gather(
        chars.row_starts(), rows
    )
    flat = tf.where(is_special, tf.gather(special, rows), char_ids)
    keep = tf.logical_or(tf.logical_not(is_special), first_in_row)
    return tf.boolean_mask(flat, keep)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    strings = list(self._tokens)
    strings[0] = strings[self.eos_id] = ""
    return tf.strings.reduce_join(tf.gather(tf.constant(strings), ids), axis=-1)

  # -------------------------------------------------------------- identity

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Ankh3Vocabulary) and self._tokens == other._tokens

  def __hash__(self) -> int:
    return hash(self._tokens)

  def __str__(self) -> str:
    kind = "built-in" if self._tokens == default_tokens() else "custom"
    return f"Ankh3Vocabulary({kind} table, {VOCAB_SIZE} ids)"

  __repr__ = __str__


def task_token_ids(vocabulary: Ankh3Vocabulary) -> Mapping[str, int]:
  """Returns the ids of the task tokens, keyed by token text."""
  return {t: vocabulary.token_id(t) for t in TASK_TOKENS}
