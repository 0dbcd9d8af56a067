"""Tests of best-fit packing (`ankh3_tasks.packing`).

Rows unpack to exactly the examples that went in, fit both lengths, carry
the features seqio's converter would give the same row, follow the numpy
reference rule, and are the same for the same input order; under T5X's
model a packed example scores as it does alone (marker `t5x`).
"""

import collections

import numpy as np
import pytest
import seqio
import tensorflow as tf

from ankh3_tasks import packing

LENGTHS = {"inputs": 48, "targets": 30}
SPEC = {
    "inputs": tf.TensorSpec([None], tf.int32),
    "targets": tf.TensorSpec([None], tf.int32),
}


def _examples(n, seed=0, longest=(48, 30), shortest=1):
  """Random examples of distinct content: ids 2-255, the number first."""
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(n):
    ex = {}
    for f, most in zip(("inputs", "targets"), longest):
      size = int(rng.integers(shortest, most + 1))
      ids = rng.integers(2, 256, size).astype(np.int32)
      ids[0] = 2 + i % 254  # Distinct within a window.
      ex[f] = ids
    examples.append(ex)
  return examples


def _dataset(examples):
  return tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature=SPEC
  )


def _pack(examples, lengths=None, window=64, **kwargs):
  converter = packing.BestFitEncDecFeatureConverter(
      pack=True, window=window, **kwargs
  )
  return list(
      converter(_dataset(examples), lengths or LENGTHS).as_numpy_iterator()
  )


def _unpack(rows):
  """(inputs, targets) tuples of each segment of each row, in row order."""
  out = []
  for row in rows:
    for s in range(1, int(row["encoder_segment_ids"].max()) + 1):
      out.append((
          tuple(row["encoder_input_tokens"][row["encoder_segment_ids"] == s]),
          tuple(row["decoder_target_tokens"][row["decoder_segment_ids"] == s]),
      ))
  return out


def _multiset(examples):
  return collections.Counter(
      (tuple(ex["inputs"]), tuple(ex["targets"])) for ex in examples
  )


def test_docstring_example():
  examples = [
      {"inputs": [7, 8, 1], "targets": [3, 1]},
      {"inputs": [4, 5, 6, 9, 8, 1], "targets": [4, 1]},
      {"inputs": [2, 1], "targets": [5, 6, 1]},
  ]
  rows = _pack(
      [{k: np.array(v, np.int32) for k, v in ex.items()} for ex in examples],
      {"inputs": 8, "targets": 5},
  )
  expected = [
      {
          "encoder_input_tokens": [7, 8, 1, 0, 0, 0, 0, 0],
          "encoder_segment_ids": [1, 1, 1, 0, 0, 0, 0, 0],
          "encoder_positions": [0, 1, 2, 0, 0, 0, 0, 0],
          "decoder_target_tokens": [3, 1, 0, 0, 0],
          "decoder_input_tokens": [0, 3, 0, 0, 0],
          "decoder_loss_weights": [1, 1, 0, 0, 0],
          "decoder_segment_ids": [1, 1, 0, 0, 0],
          "decoder_positions": [0, 1, 0, 0, 0],
      },
      {
          "encoder_input_tokens": [4, 5, 6, 9, 8, 1, 2, 1],
          "encoder_segment_ids": [1, 1, 1, 1, 1, 1, 2, 2],
          "encoder_positions": [0, 1, 2, 3, 4, 5, 0, 1],
          "decoder_target_tokens": [4, 1, 5, 6, 1],
          "decoder_input_tokens": [0, 4, 0, 5, 6],
          "decoder_loss_weights": [1, 1, 1, 1, 1],
          "decoder_segment_ids": [1, 1, 2, 2, 2],
          "decoder_positions": [0, 1, 0, 1, 2],
      },
  ]
  assert len(rows) == len(expected)
  for row, want in zip(rows, expected):
    assert sorted(row) == sorted(want)
    for k, v in want.items():
      assert row[k].dtype == np.int32, k
      np.testing.assert_array_equal(row[k], v, err_msg=k)


@pytest.mark.parametrize(
    "n, window", [(300, 64), (64, 64), (5, 64), (257, 1), (200, 1024)]
)
def test_rows_unpack_to_exactly_the_examples(n, window):
  # 300 / 64 and 257 / 1 end in a partial window; 5 and 200 are one.
  examples = _examples(n, seed=n)
  rows = _pack(examples, window=window)
  assert collections.Counter(_unpack(rows)) == _multiset(examples)
  for row in rows:
    assert row["encoder_input_tokens"].shape == (LENGTHS["inputs"],)
    assert row["decoder_target_tokens"].shape == (LENGTHS["targets"],)


def _expected_row(segments, lengths):
  """The features of one packed row, from its examples, by hand."""
  row = {}
  for f, prefix, length in (
      ("inputs", "encoder", lengths["inputs"]),
      ("targets", "decoder", lengths["targets"]),
  ):
    tokens, segment_ids, positions, shifted = [], [], [], []
    for s, ex in enumerate(segments, start=1):
      ids = list(ex[f])
      tokens += ids
      segment_ids += [s] * len(ids)
      positions += list(range(len(ids)))
      shifted += [0] + ids[:-1]  # bos_id 0 starts every segment.
    pad = [0] * (length - len(tokens))
    name = "encoder_input_tokens" if f == "inputs" else "decoder_target_tokens"
    row[name] = tokens + pad
    row[f"{prefix}_segment_ids"] = segment_ids + pad
    row[f"{prefix}_positions"] = positions + pad
    if f == "targets":
      row["decoder_input_tokens"] = shifted + pad
      row["decoder_loss_weights"] = [1] * len(tokens) + pad
  return row


def test_every_row_fits_and_has_the_features_of_its_examples():
  examples = _examples(400, seed=1)
  rows = _pack(examples)
  seqio_converter = seqio.EncDecFeatureConverter(pack=True)
  for i, row in enumerate(rows):
    segments = [
        {"inputs": np.array(a, np.int32), "targets": np.array(b, np.int32)}
        for a, b in _unpack([row])
    ]
    assert sum(len(s["inputs"]) for s in segments) <= LENGTHS["inputs"]
    assert sum(len(s["targets"]) for s in segments) <= LENGTHS["targets"]
    expected = _expected_row(segments, LENGTHS)
    if i < 3:
      # The row fits, so seqio's greedy packing puts the same examples, in
      # the same order, in one row: its features are the reference.
      (expected,) = list(
          seqio_converter(_dataset(segments), LENGTHS).as_numpy_iterator()
      )
    assert sorted(row) == sorted(expected)
    for k in expected:
      assert row[k].dtype == np.int32, k
      np.testing.assert_array_equal(row[k], expected[k], err_msg=k)


def test_rows_follow_the_numpy_rule_and_beat_greedy_packing():
  examples = _examples(512, seed=2)
  rows = _pack(examples, window=512)
  sizes = np.array([[len(ex["inputs"]), len(ex["targets"])] for ex in examples])
  reference = packing.best_fit_rows_numpy(
      sizes, (LENGTHS["inputs"], LENGTHS["targets"])
  )
  groups = collections.defaultdict(set)
  for i, r in enumerate(reference):
    groups[r].add((tuple(examples[i]["inputs"]), tuple(examples[i]["targets"])))
  got = {frozenset(_unpack([row])) for row in rows}
  assert got == {frozenset(g) for g in groups.values()}
  greedy = list(
      seqio.EncDecFeatureConverter(pack=True)(
          _dataset(examples), LENGTHS
      ).as_numpy_iterator()
  )
  assert len(rows) < 0.9 * len(greedy)


def test_numpy_rule_prefers_the_tightest_row():
  # Rows of 10 / 10: 6 opens row 0, 5 row 1; 4 fits both and fills row 0.
  rows = packing.best_fit_rows_numpy(
      np.array([[5, 1], [6, 1], [4, 1]]), (10, 10)
  )
  np.testing.assert_array_equal(rows, [1, 0, 0])


def test_same_order_gives_same_rows_and_another_order_others():
  examples = _examples(300, seed=3)
  first = _pack(examples)
  again = _pack(examples)
  assert len(first) == len(again)
  for a, b in zip(first, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  shuffled = [examples[i] for i in np.random.default_rng(0).permutation(300)]
  other = _pack(shuffled)
  assert [r["encoder_input_tokens"].tolist() for r in other] != [
      r["encoder_input_tokens"].tolist() for r in first
  ]


def test_long_examples_are_trimmed_as_seqio_trims():
  # seqio's checks refuse long examples first; without them, it trims.
  examples = _examples(40, seed=4, longest=(80, 50), shortest=40)
  rows = _pack(examples, apply_length_check=False)
  trimmed = [
      {"inputs": ex["inputs"][:48], "targets": ex["targets"][:30]}
      for ex in examples
  ]
  assert collections.Counter(_unpack(rows)) == _multiset(trimmed)


def test_without_packing_it_is_seqios_converter():
  examples = _examples(20, seed=5)
  ours = packing.BestFitEncDecFeatureConverter(pack=False)
  theirs = seqio.EncDecFeatureConverter(pack=False)
  got = list(ours(_dataset(examples), LENGTHS).as_numpy_iterator())
  want = list(theirs(_dataset(examples), LENGTHS).as_numpy_iterator())
  assert len(got) == len(want) == 20
  for a, b in zip(got, want):
    assert sorted(a) == sorted(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_bad_window_is_refused():
  with pytest.raises(ValueError, match="at least 1, got 0"):
    packing.BestFitEncDecFeatureConverter(window=0)


def test_iterator_checkpoint_resumes_at_the_same_row(tmp_path):
  # T5X's SAVE_DATASET saves the tf.data iterator: only graph ops save.
  examples = _examples(600, seed=6)
  rows = packing.BestFitEncDecFeatureConverter(window=128)(
      tf.data.Dataset.from_tensor_slices(
          tf.ragged.constant(
              [[list(ex["inputs"]), list(ex["targets"])] for ex in examples],
              dtype=tf.int32,
          )
      ).map(lambda x: {"inputs": x[0], "targets": x[1]}),
      LENGTHS,
  )
  it = iter(rows)
  for _ in range(150):  # Into the middle of a window.
    next(it)
  checkpoint = tf.train.Checkpoint(iterator=it)
  path = checkpoint.save(str(tmp_path / "ckpt"))
  expected = [next(it)["encoder_input_tokens"].numpy() for _ in range(100)]
  restored = iter(rows)
  tf.train.Checkpoint(iterator=restored).restore(path)
  got = [next(restored)["encoder_input_tokens"].numpy() for _ in range(100)]
  np.testing.assert_array_equal(got, expected)


def test_real_task_rows_unpack_to_its_examples():
  # pylint: disable-next=g-import-not-at-top,unused-import
  from ankh3_tasks import mixtures

  lengths = {"inputs": 512, "targets": 320}
  task = seqio.get_mixture_or_task("ankh3_sample_multitask")
  ds = task.get_dataset(lengths, split="train", shuffle=True, seed=0)
  ds = ds.take(700).map(lambda x: {k: x[k] for k in ("inputs", "targets")})
  examples = list(ds.as_numpy_iterator())
  rows = _pack(examples, lengths, window=256)
  assert collections.Counter(_unpack(rows)) == _multiset(examples)
  fill = sum(int((r["encoder_input_tokens"] != 0).sum()) for r in rows)
  assert fill / len(rows) / 512 > 0.8


@pytest.mark.t5x
def test_packed_example_scores_as_it_does_alone():
  import jax  # pylint: disable=g-import-not-at-top

  from conftest import init_params  # pylint: disable=g-import-not-at-top
  from conftest import small_ankh3_model  # pylint: disable=g-import-not-at-top

  model = small_ankh3_model()
  params = init_params(model)
  lengths = {"inputs": 24, "targets": 12}
  examples = _examples(3, seed=7, longest=(8, 4), shortest=3)
  (row,) = _pack(examples, lengths)
  assert row["encoder_segment_ids"].max() == 3
  alone = [
      next(
          seqio.EncDecFeatureConverter(pack=False)(
              _dataset([ex]), lengths
          ).as_numpy_iterator()
      )
      for ex in examples
  ]

  def logits(batch):
    batch = {k: v[np.newaxis] for k, v in batch.items()}
    return np.asarray(
        model.module.apply(
            {"params": params},
            batch["encoder_input_tokens"],
            batch["decoder_input_tokens"],
            batch["decoder_target_tokens"],
            encoder_segment_ids=batch.get("encoder_segment_ids"),
            decoder_segment_ids=batch.get("decoder_segment_ids"),
            encoder_positions=batch.get("encoder_positions"),
            decoder_positions=batch.get("decoder_positions"),
            enable_dropout=False,
        )
    )[0]

  def loss(batch):
    batch = {k: jax.numpy.asarray(v[np.newaxis]) for k, v in batch.items()}
    return float(model.loss_fn(params, batch, None)[0])

  packed = logits(row)
  for s, single in enumerate(alone, start=1):
    segment = row["decoder_segment_ids"] == s
    size = int(segment.sum())
    np.testing.assert_array_equal(
        row["decoder_target_tokens"][segment],
        single["decoder_target_tokens"][:size],
    )
    np.testing.assert_allclose(
        packed[segment], logits(single)[:size], atol=1e-5
    )
  # T5X sums the loss over target ids: the row's is the sum of its examples'.
  np.testing.assert_allclose(
      loss(row), sum(loss(single) for single in alone), rtol=1e-5
  )
