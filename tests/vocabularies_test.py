"""Tests of the Ankh3 token table and vocabulary."""

import pickle

import gin
import hypothesis
from hypothesis import strategies as st
import pytest
import tensorflow as tf
from sentencepiece import sentencepiece_model_pb2

from ankh3_tasks import vocabularies

VOCAB = vocabularies.Ankh3Vocabulary()


def test_table_matches_published_and_documented_ids():
  # Ankh's published ids, and this package's task tokens and sentinels.
  expected = {
      "<pad>": 0,
      "</s>": 1,
      "<unk>": 2,
      "A": 3,
      "L": 4,
      "G": 5,
      "V": 6,
      "S": 7,
      "E": 9,
      "P": 13,
      "Q": 16,
      "Z": 27,
      "[NLU]": 28,
      "[S2S]": 29,
      "[NLG]": 30,
      "<extra_id_0>": 255,
      "<extra_id_224>": 31,
  }
  for token, token_id in expected.items():
    assert VOCAB.token_id(token) == token_id, token
  assert VOCAB.vocab_size == 256
  assert VOCAB.num_sentinels == 225
  assert VOCAB.eos_id == 1 and VOCAB.unk_id == 2 and VOCAB.pad_id == 0
  assert [VOCAB.sentinel_id(i) for i in range(225)] == list(range(255, 30, -1))
  assert len(set(VOCAB.tokens)) == 256


@pytest.mark.parametrize(
    "text, expected",
    [
        ("MKT", [19, 14, 11]),
        ("mkt", [19, 14, 11]),
        (" M K\tT\r\n", [19, 14, 11]),
        ("MKT*", [19, 14, 11]),
        ("MKT* \n", [19, 14, 11]),
        ("M*KT", [19, 2, 14, 11]),
        ("MKT**", [19, 14, 11, 2]),
        ("[NLU]MKT", [28, 19, 14, 11]),
        ("[s2s]mkt", [29, 19, 14, 11]),
        ("[NLG]", [30]),
        ("M<extra_id_0>T<extra_id_224>", [19, 255, 11, 31]),
        ("MJ1-K", [19, 2, 2, 2, 14]),
        ("Mé", [19, 2]),
        ("<extra_id_225>", VOCAB.encode("<") + VOCAB.encode("extra_id_225>")),
        ("", []),
    ],
)
def test_encode_rules_in_python_and_tf(text, expected):
  assert VOCAB.encode(text) == expected
  assert VOCAB.encode_tf(tf.constant(text)).numpy().tolist() == expected


def test_unknown_characters_are_countable():
  ids = VOCAB.encode("MKJ8T")
  assert VOCAB.count_unknown(ids) == 2


_PIECES = st.sampled_from(
    list("ALGVSREDTIPKFQNYMHWCXBOUZalgvxJ*-.0 \t\n\r<>[]é")
    + [
        "[NLU]",
        "[s2s]",
        "[NLG",
        "<extra_id_7>",
        "<extra_id_300>",
        "<pad>",
        "</s>",
        "<unk>",
        "<EXTRA_ID_3>",
        "\u00a0",
        "\U0001f600",
        # Letters whose Unicode case folding would make a token or residue.
        "\u017f",
        "\u0131",
        "\u0130",
        "\u212a",
        "</\u017f>",
        "[S2\u017f]",
    ]
)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    st.lists(
        st.sampled_from(
            [b"\xff", b"\xe2\x82", b"\xc3", b"<pad>", b"[NLU]", b"MK", b"*"]
        ),
        max_size=10,
    ).map(b"".join)
)
def test_python_and_tf_encode_agree_on_invalid_utf8(data):
  assert (
      VOCAB.encode(data) == VOCAB.encode_tf(tf.constant(data)).numpy().tolist()
  )


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.lists(_PIECES, max_size=30).map("".join))
def test_python_and_tf_encode_agree(text):
  assert (
      VOCAB.encode(text) == VOCAB.encode_tf(tf.constant(text)).numpy().tolist()
  )


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.lists(st.integers(0, 255), max_size=40))
def test_python_and_tf_decode_agree(ids):
  assert (
      VOCAB.decode(ids)
      == VOCAB.decode_tf(tf.constant(ids, tf.int32)).numpy().decode()
  )


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(st.lists(st.integers(2, 255), max_size=40))
def test_decode_then_encode_gives_back_ids(ids):
  # Every id except <pad> and </s> (dropped by decode) survives a round trip.
  assert VOCAB.encode(VOCAB.decode(ids)) == ids


def test_decode_stops_at_eos_and_shows_sentinels():
  assert VOCAB.decode([28, 19, 255, 11, 1, 19, 19]) == "[NLU]M<extra_id_0>T"
  batch = tf.constant([[28, 19, 1, 19], [255, 254, 0, 0]])
  assert VOCAB.decode_tf(batch).numpy().tolist() == [
      b"[NLU]M",
      b"<extra_id_0><extra_id_1>",
  ]


def test_equality_between_separately_built_instances():
  gin.clear_config()
  gin.parse_config(
      "from __gin__ import dynamic_registration\n"
      "from ankh3_tasks import vocabularies\n"
      "VOCAB = @vocabularies.Ankh3Vocabulary()\n"
      "vocabularies.task_token_ids.vocabulary = %VOCAB\n"
  )
  try:
    built = gin.get_configurable(vocabularies.task_token_ids)()
  finally:
    gin.clear_config()
  assert built == {"[NLU]": 28, "[S2S]": 29, "[NLG]": 30}
  assert vocabularies.Ankh3Vocabulary() == VOCAB
  assert hash(vocabularies.Ankh3Vocabulary()) == hash(VOCAB)
  other = list(VOCAB.tokens)
  other[3], other[4] = other[4], other[3]
  assert vocabularies.Ankh3Vocabulary(other) != VOCAB
  assert pickle.loads(pickle.dumps(VOCAB)) == VOCAB


def test_rejects_a_table_that_is_not_a_permutation():
  tokens = list(VOCAB.tokens)
  tokens[5] = "J"
  with pytest.raises(ValueError, match="missing"):
    vocabularies.Ankh3Vocabulary(tokens)


def _write_spiece(path, pieces):
  proto = sentencepiece_model_pb2.ModelProto()
  kinds = sentencepiece_model_pb2.ModelProto.SentencePiece
  for piece in pieces:
    entry = proto.pieces.add()
    entry.piece = piece
    entry.score = 0.0
    if piece in ("<pad>", "</s>"):
      entry.type = kinds.CONTROL
    elif piece == "<unk>":
      entry.type = kinds.UNKNOWN
    elif piece.startswith("["):
      entry.type = kinds.USER_DEFINED
    else:
      entry.type = kinds.NORMAL
  proto.trainer_spec.model_type = sentencepiece_model_pb2.TrainerSpec.CHAR
  proto.trainer_spec.pad_id = 0
  proto.trainer_spec.eos_id = 1
  proto.trainer_spec.unk_id = 2
  proto.trainer_spec.bos_id = -1
  with open(path, "wb") as f:
    f.write(proto.SerializeToString())
  return str(path)


def test_from_sentencepiece_matching_model_reports_nothing(tmp_path):
  # Like a released T5 tokenizer: 31 pieces, sentinels appended as extra ids.
  path = _write_spiece(tmp_path / "spiece.model", VOCAB.tokens[:31])
  vocab, differences = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert differences == []
  assert vocab == VOCAB


def test_from_sentencepiece_reports_every_differing_id(tmp_path):
  pieces = list(VOCAB.tokens[:31])
  pieces[3], pieces[4] = "\u2581L", "A"  # A and L swapped, one with a marker.
  path = _write_spiece(tmp_path / "spiece.model", pieces)
  vocab, differences = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert differences == [
      "A: built-in id 3, model id 4",
      "L: built-in id 4, model id 3",
  ]
  assert vocab.encode("AL") == [4, 3]
  assert (
      vocab.encode("AL") == vocab.encode_tf(tf.constant("AL")).numpy().tolist()
  )
  assert vocab != VOCAB


def test_from_sentencepiece_rejects_a_model_without_residues(tmp_path):
  pieces = [t for t in VOCAB.tokens[:31] if t != "W"]
  path = _write_spiece(tmp_path / "spiece.model", pieces)
  with pytest.raises(ValueError, match="no piece for tokens \\['W'\\]"):
    vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
