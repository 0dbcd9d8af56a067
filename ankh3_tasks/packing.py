"""Best-fit packing of encoder-decoder examples into T5X rows.

seqio's packing (`seqio.EncDecFeatureConverter(pack=True)`) places examples
greedily in arrival order, and a row closes when the next example does not
fit. Ankh3 examples have inputs up to 512 ids and targets up to 320, both
long, so those rows come out about two thirds full. Here the examples are
taken a window at a time, sorted by the larger of their two fill shares
(`inputs / 512`, `targets / 320`), largest first, and each goes into the row
where it leaves the least slack and that has room for both features (best fit
decreasing); a new row opens when none has room. On the bundled sample that
fills about 0.89 of the encoder ids instead of 0.67 (docs/benchmarks.md).

The features are seqio's, so T5X's model, masks and losses are unchanged. On
three examples, lengths `{"inputs": 8, "targets": 5}`, arriving as

  A  inputs [7, 8, 1]           targets [3, 1]
  B  inputs [4, 5, 6, 9, 8, 1]  targets [4, 1]
  C  inputs [2, 1]              targets [5, 6, 1]

B has the largest share (6/8), then C (3/5), then A (2/5). B opens a row; C
fits beside it (6 + 2 inputs, 2 + 3 targets) and fills it; A opens a second
row. Rows are emitted in the arrival order of their earliest example (A's row
first):

  encoder_input_tokens  [7, 8, 1, 0, 0, 0, 0, 0]  [4, 5, 6, 9, 8, 1, 2, 1]
  encoder_segment_ids   [1, 1, 1, 0, 0, 0, 0, 0]  [1, 1, 1, 1, 1, 1, 2, 2]
  decoder_target_tokens [3, 1, 0, 0, 0]           [4, 1, 5, 6, 1]
  decoder_input_tokens  [0, 3, 0, 0, 0]           [0, 4, 0, 5, 6]

Everything is TensorFlow graph ops inside `tf.data` (a batch; a map with a
`tf.while_loop` that places the examples, then seqio's own per-row
conversion under `tf.vectorized_map`; an unbatch), so T5X can checkpoint the
iterator
(`SAVE_DATASET = True`), and the rows depend only on the order the examples
arrive in: the same shuffle seed gives the same rows, a new seed new ones.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Optional

import numpy as np
import seqio
import tensorflow as tf

# Examples packed together. 1,024 fills 0.886 of the encoder ids on the
# bundled sample, 256 fills 0.879 and 4,096 0.889 (docs/benchmarks.md).
DEFAULT_WINDOW = 1024
_FEATURES = ("inputs", "targets")
# Examples placed per iteration of the packing loop (measured on one core:
# the loop takes about 10% less time than with 1).
_UNROLL = 4


def _sort_keys(lengths: np.ndarray, row_lengths: Sequence[int]) -> np.ndarray:
  """The larger fill share of each example, as an exact integer.

  `max(inputs / L_inputs, targets / L_targets)` times `L_inputs * L_targets`.

  Args:
    lengths: [n, 2] ids of inputs and targets.
    row_lengths: (L_inputs, L_targets).

  Returns:
    [n] int64 keys.
  """
  scale = np.array(row_lengths[::-1], np.int64)
  return (lengths.astype(np.int64) * scale).max(axis=1)


def best_fit_rows_numpy(
    lengths: np.ndarray, row_lengths: Sequence[int]
) -> np.ndarray:
  """Best fit decreasing of one window, in numpy: the reference rule.

  The rule `pack_window` applies in TensorFlow, written plainly (the tests
  check that the two agree). Examples are taken by decreasing larger fill
  share (stable: ties in arrival order); each goes into the row with room for
  both of its features where the larger remaining share after it is least
  (ties: the row opened first); a new row opens when none has room.

  Args:
    lengths: [n, 2] ids of inputs and targets of each example, each at most
      its row length.
    row_lengths: (L_inputs, L_targets).

  Returns:
    [n] int row of each example, rows numbered in the order they open.
  """
  lengths = np.asarray(lengths, np.int64).reshape(-1, 2)
  limit = np.array(row_lengths, np.int64)
  scale = limit[::-1]
  order = np.argsort(-_sort_keys(lengths, row_lengths), kind="stable")
  fills = np.zeros((0, 2), np.int64)
  rows = np.zeros(len(lengths), np.int64)
  for i in order:
    after = fills + lengths[i]
    fits = (after <= limit).all(axis=1)
    if fits.any():
      slack = np.where(fits, ((limit - after) * scale).max(axis=1), np.inf)
      row = int(np.argmin(slack))
      fills[row] = after[row]
    else:
      row = len(fills)
      fills = np.vstack([fills, lengths[i]])
    rows[i] = row
  return rows


def _assign_rows(
    lengths: tf.Tensor, row_lengths: Sequence[int]
) -> tuple[tf.Tensor, tf.Tensor]:
  """Best fit decreasing of one window in TensorFlow.

  Args:
    lengths: [n, 2] int32 ids of inputs and targets, each within its row.
    row_lengths: (L_inputs, L_targets).

  Returns:
    (`order`, `rows`): `order` [n] the examples by decreasing larger fill
    share (placement order), and `rows` [n] the row of each example in that
    order, numbered as the rows open.
  """
  n = tf.shape(lengths)[0]
  inputs_lengths, targets_lengths = tf.unstack(
      tf.cast(lengths, tf.int64), axis=1
  )
  # Shares of a row compared in integers: inputs * L_targets against
  # targets * L_inputs. The same weights rank the examples and the slack.
  inputs_scale, targets_scale = row_lengths[1], row_lengths[0]
  keys = tf.maximum(
      inputs_lengths * inputs_scale, targets_lengths * targets_scale
  )
  order = tf.argsort(keys, direction="DESCENDING", stable=True)
  # The loop places _UNROLL examples per iteration, to save loop overhead;
  # the window is padded with empty examples, which change no
  # row, and their rows are dropped.
  padded = -(-n // _UNROLL) * _UNROLL
  inputs_sizes, targets_sizes = (
      tf.pad(tf.gather(x, order), [[0, padded - n]])
      for x in (inputs_lengths, targets_lengths)
  )
  n64 = tf.cast(n, tf.int64)
  # Each row's room left in the inputs and in the targets, one vector each
  # (cheaper than [n, 2]). A row that has not opened is empty, so it fits
  # every example and leaves at least the slack of any open row that fits;
  # ranking by slack, then by row number, picks the first unopened row only
  # when no open row fits.
  index = tf.range(n64)
  never = tf.constant(np.iinfo(np.int64).max, tf.int64)

  def place(i, inputs_room, targets_room, rows):
    placed = []
    for j in range(_UNROLL):
      inputs_after = inputs_room - inputs_sizes[i + j]
      targets_after = targets_room - targets_sizes[i + j]
      fits = tf.logical_and(inputs_after >= 0, targets_after >= 0)
      slack = tf.maximum(
          inputs_after * inputs_scale, targets_after * targets_scale
      )
      row = tf.argmin(
          tf.where(fits, slack * n64 + index, never), output_type=tf.int32
      )
      inputs_room = tf.tensor_scatter_nd_sub(
          inputs_room, [[row]], inputs_sizes[i + j][tf.newaxis]
      )
      targets_room = tf.tensor_scatter_nd_sub(
          targets_room, [[row]], targets_sizes[i + j][tf.newaxis]
      )
      placed.append(row)
    rows = rows.write(i // _UNROLL, tf.stack(placed))
    return i + _UNROLL, inputs_room, targets_room, rows

  _, _, _, rows = tf.while_loop(
      lambda i, *_: i < n,
      place,
      (
          tf.constant(0),
          tf.fill([n], tf.constant(row_lengths[0], tf.int64)),
          tf.fill([n], tf.constant(row_lengths[1], tf.int64)),
          tf.TensorArray(tf.int32, size=padded // _UNROLL),
      ),
      parallel_iterations=1,
  )
  rows = tf.reshape(rows.stack(), [-1])[:n]
  return order, rows


def pack_window(
    window: Mapping[str, tf.Tensor], row_lengths: Sequence[int]
) -> dict[str, tf.Tensor]:
  """Packs one window of examples into rows by best fit decreasing.

  Args:
    window: "inputs" [n, *] and "targets" [n, *] int32, zero-padded, and
      "inputs_length", "targets_length" [n] (each at most its row length).
    row_lengths: (L_inputs, L_targets).

  Returns:
    Rows as `seqio.utils.trim_and_pack_dataset` gives them, batched: for
    `inputs` and `targets`, the tokens and `*_segment_ids` and
    `*_positions`, [rows, L] int32. Segments are numbered from 1 in the order
    they were placed; rows come in the arrival order of their first example.
  """
  lengths = tf.stack(
      [window["inputs_length"], window["targets_length"]], axis=1
  )
  order, placed_rows = _assign_rows(lengths, row_lengths)
  n = tf.shape(order)[0]
  # Row of each example in arrival order.
  rows = tf.scatter_nd(order[:, tf.newaxis], placed_rows, [n])
  num_rows = tf.reduce_max(placed_rows) + 1
  # Renumber rows by their earliest example, so that a batch mixes short and
  # long examples as they arrive.
  first = tf.math.unsorted_segment_min(tf.range(n), rows, num_rows)
  rows = tf.gather(tf.math.invert_permutation(tf.argsort(first)), rows)
  # Examples by row, and within a row in placement order; each row's ids
  # are then one contiguous run, cut into rows and padded.
  placed = tf.scatter_nd(order[:, tf.newaxis], tf.range(n), [n])
  by_row = tf.argsort(rows * n + placed)
  sorted_rows = tf.gather(rows, by_row)
  starts = tf.math.unsorted_segment_min(tf.range(n), sorted_rows, num_rows)
  segments = tf.range(n) - tf.gather(starts, sorted_rows) + 1
  packed = {}
  for f, length in zip(_FEATURES, row_lengths):
    sizes = tf.gather(window[f"{f}_length"], by_row)
    tokens = tf.gather(
        tf.RaggedTensor.from_tensor(window[f], lengths=window[f"{f}_length"]),
        by_row,
    ).flat_values
    ids = tf.stack(
        [
            tokens,
            tf.repeat(segments, sizes),
            tf.ragged.range(sizes).flat_values,
        ],
        axis=1,
    )
    fills = tf.math.unsorted_segment_sum(sizes, sorted_rows, num_rows)
    out = tf.RaggedTensor.from_row_lengths(ids, fills).to_tensor(
        shape=[None, length, 3]
    )
    packed[f] = out[:, :, 0]
    packed[f"{f}_segment_ids"] = out[:, :, 1]
    packed[f"{f}_positions"] = out[:, :, 2]
  return packed


def best_fit_pack_dataset(
    ds: tf.data.Dataset,
    feature_lengths: Mapping[str, int],
    window: int = DEFAULT_WINDOW,
    convert_row: Optional[
        Callable[[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]]
    ] = None,
) -> tf.data.Dataset:
  """Trims examples and packs them into rows by best fit over windows.

  The best-fit counterpart of `seqio.utils.trim_and_pack_dataset` for
  "inputs" and "targets": each feature is first cut to its length (seqio's
  trim), then each `window` examples (the last window may be shorter) are
  packed by `pack_window`. Other features are dropped.

  Args:
    ds: examples with 1-D int32 "inputs" and "targets".
    feature_lengths: {"inputs": L_inputs, "targets": L_targets}.
    window: examples packed together.
    convert_row: a function of one row, applied to every row of a window at
      once (`tf.vectorized_map`) before the rows are taken apart; the
      converter passes seqio's `_convert_example` here, which saves a
      `tf.data` map per row.

  Returns:
    Rows of "inputs", "targets" and their `*_segment_ids` and `*_positions`,
    each [L] int32; or what `convert_row` makes of them.

  Raises:
    ValueError: a missing feature, a length or window below 1.
  """
  if sorted(feature_lengths) != sorted(_FEATURES):
    raise ValueError(
        f"Best-fit packing packs {_FEATURES}, got {sorted(feature_lengths)}."
    )
  row_lengths = tuple(int(feature_lengths[f]) for f in _FEATURES)
  if min(row_lengths) < 1 or window < 1:
    raise ValueError(
        f"Row lengths {row_lengths} and window {window} must be positive."
    )

  def trim(ex):
    out = {}
    for f, length in zip(_FEATURES, row_lengths):
      out[f] = tf.cast(ex[f][:length], tf.int32)
      out[f"{f}_length"] = tf.size(out[f])
    return out

  ds = ds.map(trim, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.padded_batch(
      window,
      padded_shapes={
          "inputs": [None],
          "targets": [None],
          "inputs_length": [],
          "targets_length": [],
      },
  )

  def pack(w):
    rows = pack_window(w, row_lengths)
    if convert_row is not None:
      rows = tf.vectorized_map(convert_row, rows, fallback_to_while_loop=False)
    return rows

  ds = ds.map(pack, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.unbatch()


class BestFitEncDecFeatureConverter(seqio.EncDecFeatureConverter):
  """`seqio.EncDecFeatureConverter` that packs by best fit over a window.

  With `pack=True` the examples are packed by `best_fit_pack_dataset`
  instead of seqio's greedy packing; the features, their dtypes and meaning
  (segment ids, positions, decoder inputs shifted within each segment, loss
  weights) are seqio's. With `pack=False` it is seqio's converter. T5X builds
  it as `feature_converter_cls(pack=..., use_custom_packing_ops=...)`; in gin:

    models.EncoderDecoderModel.feature_converter_cls = \
        @packing.BestFitEncDecFeatureConverter
    packing.BestFitEncDecFeatureConverter.window = 1024
  """

  def __init__(
      self,
      pack: bool = True,
      use_custom_packing_ops: bool = False,
      apply_length_check: bool = True,
      bos_id: int = 0,
      passthrough_features: Optional[
          Mapping[str, seqio.FeatureConverter.FeatureSpec]
      ] = None,
      window: int = DEFAULT_WINDOW,
  ):
    """Initializes the converter.

    Args:
      pack: pack examples into rows (best fit); False pads each example.
      use_custom_packing_ops: seqio's flag; unused by best-fit packing.
      apply_length_check: as seqio's.
      bos_id: as seqio's: the first decoder input of each segment.
      passthrough_features: as seqio's (only without packing).
      window: examples packed together; more packs fuller rows, at more
        memory and latency per window.

    Raises:
      ValueError: `window` below 1.
    """
    if window < 1:
      raise ValueError(f"The packing window must be at least 1, got {window}.")
    self._window = window
    super().__init__(
        pack=pack,
        use_custom_packing_ops=use_custom_packing_ops,
        apply_length_check=apply_length_check,
        bos_id=bos_id,
        passthrough_features=passthrough_features,
    )

  @property
  def window(self) -> int:
    return self._window

  def _convert_features(
      self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    # seqio packs, then converts each row (`_convert_example`) in a map of
    # its own; here the rows of a window are converted together, before they
    # are taken apart.
    if not self.pack:
      return super()._convert_features(ds, task_feature_lengths)
    return best_fit_pack_dataset(
        ds, task_feature_lengths, self._window, self._convert_example
    )
