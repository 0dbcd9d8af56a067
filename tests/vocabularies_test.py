"""Tests of the Ankh3 token table and vocabulary."""

import hashlib
import json
import pickle

import gin
import hypothesis
from hypothesis import strategies as st
import pytest
import tensorflow as tf
from sentencepiece import sentencepiece_model_pb2

from ankh3_tasks import vocabularies

VOCAB = vocabularies.Ankh3Vocabulary()


# Encodings the released Ankh3 tokenizer (ElnaggarLab/ankh3-large, revision
# 2be091622e8a) produced, as published with the FastPLMs reference outputs:
# no task token, </s> appended.
RELEASED_GOLDENS = (
    ("MCADPSKCIYMYV", [24, 25, 8, 16, 17, 10, 18, 25, 15, 22, 24, 22, 11, 1]),
    (
        "MYPNQTSFAHGFWVHQIWLGFNGNVIFYM",
        [24, 22, 17, 19, 21, 14, 10, 20, 8, 23, 9, 20, 26, 11, 23, 21, 15, 26]
        + [7, 9, 20, 19, 9, 19, 11, 15, 20, 22, 24, 1],
    ),
)


@pytest.mark.parametrize("sequence, ids", RELEASED_GOLDENS)
def test_released_tokenizer_goldens(sequence, ids):
  assert VOCAB.encode(sequence) + [VOCAB.eos_id] == ids
  assert VOCAB.encode_tf(tf.constant(sequence)).numpy().tolist() == ids[:-1]


def test_table_holds_the_released_ids_and_the_documented_layout():
  released = {"<pad>": 0, "</s>": 1}
  released.update({r: 7 + i for i, r in enumerate("LAGSVERTIDPKNFQYHMCW")})
  assert vocabularies.VERIFIED_IDS == released
  for token, token_id in released.items():
    assert VOCAB.token_id(token) == token_id, token
  inferred = {
      "<unk>": 2,
      "[NLU]": 3,
      "[S2S]": 4,
      "[NLG]": 5,
      "O": 6,
      "X": 27,
      "U": 28,
      "Z": 29,
      "B": 30,
      "<extra_id_0>": 255,
      "<extra_id_224>": 31,
  }
  for token, token_id in inferred.items():
    assert VOCAB.token_id(token) == token_id, token
  assert VOCAB.vocab_size == 256
  assert VOCAB.num_sentinels == 225
  assert VOCAB.eos_id == 1 and VOCAB.unk_id == 2 and VOCAB.pad_id == 0
  assert [VOCAB.sentinel_id(i) for i in range(225)] == list(range(255, 30, -1))
  assert len(set(VOCAB.tokens)) == 256
  assert sorted(vocabularies.RESIDUES) == sorted("ALGVSREDTIPKFQNYMHWCXBOUZ")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("MKT", [24, 18, 14]),
        ("mkt", [24, 18, 14]),
        (" M K\tT\r\n", [24, 18, 14]),
        ("MKT*", [24, 18, 14]),
        ("MKT* \n", [24, 18, 14]),
        ("M*KT", [24, 2, 18, 14]),
        ("MKT**", [24, 18, 14, 2]),
        ("[NLU]MKT", [3, 24, 18, 14]),
        ("[s2s]mkt", [4, 24, 18, 14]),
        ("[NLG]", [5]),
        ("M<extra_id_0>T<extra_id_224>", [24, 255, 14, 31]),
        ("MJ1-K", [24, 2, 2, 2, 18]),
        ("Mé", [24, 2]),
        ("<extra_id_225>", VOCAB.encode("<") + VOCAB.encode("extra_id_225>")),
        # The TF regex ops read C strings; a NUL must not end the text.
        ("MKT\x00QQ", [24, 18, 14, 2, 21, 21]),
        ("[NLU]M\x00K", [3, 24, 2, 18]),
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


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    st.one_of(
        st.binary(max_size=40),
        st.lists(
            st.sampled_from(
                [b"\x00", b"[NLU]", b"<extra_id_3>", b"[", b"<", b"M", b"k"]
                + [bytes([i]) for i in range(0, 256, 7)]
            ),
            max_size=20,
        ).map(b"".join),
    )
)
def test_python_and_tf_encode_agree_on_every_byte_string(data):
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
@hypothesis.given(
    st.lists(
        st.one_of(
            st.lists(_PIECES, max_size=12).map("".join).map(str.encode),
            st.binary(max_size=12),
        ),
        max_size=6,
    )
)
def test_a_vector_encodes_as_its_strings_do_one_by_one(texts):
  # Empty strings, strings ending in `*` or whitespace, and texts with and
  # without longer tokens meet in one batch.
  ragged = VOCAB.encode_tf(tf.constant(texts, tf.string, shape=[len(texts)]))
  assert isinstance(ragged, tf.RaggedTensor)
  assert ragged.to_list() == [VOCAB.encode(t) for t in texts]


def test_encode_tf_refuses_a_matrix():
  with pytest.raises(ValueError, match="scalar or a vector"):
    VOCAB.encode_tf(tf.constant([["MK"]]))


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
  assert VOCAB.decode([3, 24, 255, 14, 1, 24, 24]) == "[NLU]M<extra_id_0>T"
  batch = tf.constant([[3, 24, 1, 24], [255, 254, 0, 0]])
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
  assert built == {"[NLU]": 3, "[S2S]": 4, "[NLG]": 5}
  assert vocabularies.Ankh3Vocabulary() == VOCAB
  assert hash(vocabularies.Ankh3Vocabulary()) == hash(VOCAB)
  other = list(VOCAB.tokens)
  other[3], other[4] = other[4], other[3]
  assert vocabularies.Ankh3Vocabulary(other) != VOCAB
  assert pickle.loads(pickle.dumps(VOCAB)) == VOCAB


def test_rejects_a_table_that_cannot_serve_ankh3():
  tokens = list(VOCAB.tokens)
  tokens[3] = "J"  # No [NLU].
  with pytest.raises(ValueError, match=r"missing \['\[NLU\]'\]"):
    vocabularies.Ankh3Vocabulary(tokens)
  tokens = list(VOCAB.tokens)
  tokens[7] = "a"  # A twice, ignoring case.
  with pytest.raises(ValueError, match="repeated"):
    vocabularies.Ankh3Vocabulary(tokens)
  with pytest.raises(ValueError, match="256 ids"):
    vocabularies.Ankh3Vocabulary(VOCAB.tokens[:-1])
  with pytest.raises(ValueError, match="at id 0"):
    vocabularies.Ankh3Vocabulary(VOCAB.tokens[1:2] + VOCAB.tokens[:1] + VOCAB.tokens[2:])


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
  assert vocab.source == path


def test_from_sentencepiece_reports_every_differing_id(tmp_path):
  pieces = list(VOCAB.tokens[:31])
  pieces[7], pieces[8] = "\u2581A", "L"  # L and A swapped, one with a marker.
  path = _write_spiece(tmp_path / "spiece.model", pieces)
  vocab, differences = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert differences == [
      "L: built-in id 7, id 8 here",
      "A: built-in id 8, id 7 here",
  ]
  assert vocab.encode("AL") == [7, 8]
  assert (
      vocab.encode("AL") == vocab.encode_tf(tf.constant("AL")).numpy().tolist()
  )
  assert vocab != VOCAB


def test_from_sentencepiece_keeps_pieces_outside_the_builtin_set(tmp_path):
  # A `▁` piece and a [MASK] piece, no O and no [NLG]: the exact table.
  pieces = [t for t in VOCAB.tokens[:31] if t not in ("O", "[NLG]")]
  pieces[3:3] = ["[MASK]"]
  pieces.insert(27, "\u2581")
  path = _write_spiece(tmp_path / "spiece.model", pieces)
  vocab, differences = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert list(vocab.tokens[:31]) == pieces
  assert vocab.sentinel_id(0) == 255 and vocab.sentinel_id(224) == 31
  assert "O: built-in id 6, not in this table (reads as <unk>)" in differences
  assert "[MASK]: not in the built-in table, id 3 here" in differences
  text = "[mask]MoX\u2581 [S2S]"
  want = [3, 23, 2, 26, 27, 5]
  assert vocab.encode(text) == want
  assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == want
  assert vocab.decode(want) == "[MASK]M<unk>X\u2581[S2S]"


def test_from_sentencepiece_fills_ids_a_smaller_model_leaves(tmp_path):
  # 29 pieces: sentinels at 29..253 (T5's extra ids), 254 and 255 unused.
  pieces = [t for t in VOCAB.tokens[:31] if t not in ("O", "[NLG]")]
  path = _write_spiece(tmp_path / "spiece.model", pieces)
  vocab, _ = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert vocab.sentinel_id(0) == 253 and vocab.sentinel_id(224) == 29
  assert vocab.tokens[254:] == ("<unused_254>", "<unused_255>")


def test_from_sentencepiece_rejects_what_does_not_fit(tmp_path):
  pieces = list(VOCAB.tokens[:31]) + ["J"]  # 32 + 225 sentinels > 256 ids.
  path = _write_spiece(tmp_path / "spiece.model", pieces)
  with pytest.raises(ValueError, match="outside the 256-id table"):
    vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  no_task = [t for t in VOCAB.tokens[:31] if t != "[S2S]"]
  path = _write_spiece(tmp_path / "no_task.model", no_task)
  with pytest.raises(ValueError, match=r"missing \['\[S2S\]'\]"):
    vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  garbage = tmp_path / "garbage.model"
  garbage.write_bytes(b"not a model")
  with pytest.raises(ValueError, match="not a SentencePiece model"):
    vocabularies.Ankh3Vocabulary.from_sentencepiece(str(garbage))
  with pytest.raises(FileNotFoundError, match="no such tokenizer file"):
    vocabularies.Ankh3Vocabulary.from_sentencepiece(str(tmp_path / "none"))


def test_released_tokenizer_is_named(tmp_path, monkeypatch):
  path = _write_spiece(tmp_path / "spiece.model", VOCAB.tokens[:31])
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  vocabularies.read_tokenizer.cache_clear()
  monkeypatch.setattr(vocabularies, "RELEASED_SPIECE_SHA256", digest)
  vocab, _ = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert "released Ankh3 tokenizer" in str(vocab)
  vocabularies.read_tokenizer.cache_clear()
  monkeypatch.setattr(vocabularies, "RELEASED_SPIECE_SHA256", "0" * 64)
  vocab, _ = vocabularies.Ankh3Vocabulary.from_sentencepiece(path)
  assert "released Ankh3" not in str(vocab)
  vocabularies.read_tokenizer.cache_clear()


def test_tokenizer_json_and_directories_give_the_same_table(tmp_path):
  pieces = list(VOCAB.tokens[:31])
  pieces[7], pieces[8] = pieces[8], pieces[7]
  spiece = _write_spiece(tmp_path / "spiece.model", pieces)
  expected = vocabularies.Ankh3Vocabulary.from_sentencepiece(spiece)[0]
  unigram = [[p, 0.0] for p in pieces] + [[t, 0.0] for t in expected.tokens[31:]]
  added = [{"id": 255, "content": "<extra_id_0>"}]
  spec = {"model": {"type": "Unigram", "vocab": unigram}, "added_tokens": added}
  (tmp_path / "json").mkdir()
  (tmp_path / "json" / "tokenizer.json").write_text(json.dumps(spec))
  for source in (spiece, str(tmp_path), str(tmp_path / "json")):
    assert vocabularies.Ankh3Vocabulary(tokenizer=source) == expected, source
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no spiece.model or tokenizer"):
    vocabularies.Ankh3Vocabulary(tokenizer=str(tmp_path / "empty")).tokens


def test_the_run_names_the_tokenizer_by_gin_or_environment(
    tmp_path, monkeypatch
):
  pieces = list(VOCAB.tokens[:31])
  pieces[7], pieces[8] = pieces[8], pieces[7]
  env = _write_spiece(tmp_path / "env.model", pieces)
  pieces[9], pieces[10] = pieces[10], pieces[9]
  macro = _write_spiece(tmp_path / "macro.model", pieces)
  lazy = vocabularies.Ankh3Vocabulary()  # Built before anything is named.
  assert lazy.encode("A") == [8]
  monkeypatch.setenv("ANKH3_TOKENIZER", env)
  assert lazy.encode("AG") == [7, 9]
  gin.clear_config()
  try:
    gin.parse_config(f"ANKH3_TOKENIZER = '{macro}'")
    assert lazy.encode("AG") == [7, 10]
    assert lazy == vocabularies.Ankh3Vocabulary(tokenizer=macro)
    assert vocabularies.configured_tokenizer() == macro
  finally:
    gin.clear_config()
  assert lazy.encode("AG") == [7, 9]
  monkeypatch.delenv("ANKH3_TOKENIZER")
  assert lazy == VOCAB and lazy.source == "the built-in table"


def test_tasks_follow_the_named_tokenizer(tmp_path, monkeypatch):
  seqio = pytest.importorskip("seqio")
  from ankh3_tasks import mixtures  # pylint: disable=g-import-not-at-top,unused-import

  pieces = list(VOCAB.tokens[:31])
  pieces[3], pieces[4] = pieces[4], pieces[3]  # [NLU] and [S2S] swapped.
  monkeypatch.setenv("ANKH3_TOKENIZER", _write_spiece(tmp_path / "s.model", pieces))
  task = seqio.get_mixture_or_task("ankh3_sample_denoise")
  example = next(
      task.get_dataset(
          {"inputs": 64, "targets": 64}, split="validation", shuffle=False
      ).as_numpy_iterator()
  )
  assert example["inputs"][0] == 4  # [NLU] at its id in that table.
  assert task.output_features["inputs"].vocabulary.token_id("[NLU]") == 4
