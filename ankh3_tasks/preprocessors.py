"""Preprocessors of the Ankh3 pretraining tasks.

A task runs these in order (see `ankh3_tasks.tasks`):

  tokenize_sequence          deterministic: text -> ids (`protein`)
  seqio.CacheDatasetPlaceholder()   (training tasks; not the held-out ones)
  crop_proteins              random in training, fixed in evaluation
  denoise | complete | denoise_or_complete
  seqio.preprocessors.append_eos

Every random step takes stateless seeds from `seqio.map_over_dataset`, so the
same `seed` given to `Task.get_dataset` gives the same examples, a new seed new
ones, and a cached task is re-masked on every pass.

The two objectives, on the protein `MKTAYIAK`:

  [NLU] denoising (here 2 of 8 residues masked, one sentinel per residue):
    inputs   [NLU] M K <extra_id_0> A Y <extra_id_1> A K </s>
    targets  <extra_id_0> T <extra_id_1> I </s>

  [S2S] sequence completion (split fraction 0.5):
    inputs   [S2S] M K T A </s>
    targets  Y I A K </s>
"""

from collections.abc import Mapping, Sequence
import functools
from typing import Optional, Union

import numpy as np
import seqio
import tensorflow as tf

from ankh3_tasks import vocabularies

# The paper's sequence length: task token + residues + </s> fit in 512 ids.
DEFAULT_SEQUENCE_LENGTH = 512
# Ids an example spends on other than residues: the task token and </s>.
NUM_NON_RESIDUE_IDS = 2
# The paper draws the masking probability of each example from these.
DEFAULT_NOISE_DENSITIES = (0.15, 0.20, 0.30)
# One sentinel per masked residue, as in Ankh.
DEFAULT_MEAN_NOISE_SPAN_LENGTH = 1.0
DEFAULT_SPLIT_FRACTION = 0.5
DEFAULT_DENOISE_PROBABILITY = 0.5
# Records tokenized together; the time per record hardly falls past 64.
TOKENIZE_BATCH_SIZE = 64

SplitFraction = Union[float, Sequence[float]]


def _vocabulary(
    output_features: Mapping[str, seqio.Feature],
) -> vocabularies.Ankh3Vocabulary:
  vocabulary = output_features["inputs"].vocabulary
  if not isinstance(vocabulary, vocabularies.Ankh3Vocabulary):
    raise ValueError(
        "Ankh3 preprocessors need an Ankh3Vocabulary on feature 'inputs', "
        f"got {vocabulary}."
    )
  return vocabulary


def residue_budget(
    sequence_length: Optional[Mapping[str, int]] = None,
    max_residues: Optional[int] = None,
) -> int:
  """Returns how many residues one example may hold.

  Args:
    sequence_length: seqio's feature lengths; `inputs` bounds the encoder
      input, which holds the task token, the residues and `</s>`.
    max_residues: an explicit bound; wins over `sequence_length`.

  Returns:
    `max_residues`, else `sequence_length["inputs"] - 2`, else 510.
  """
  if max_residues is not None:
    budget = max_residues
  elif sequence_length and sequence_length.get("inputs"):
    budget = sequence_length["inputs"] - NUM_NON_RESIDUE_IDS
  else:
    budget = DEFAULT_SEQUENCE_LENGTH - NUM_NON_RESIDUE_IDS
  if budget < 1:
    raise ValueError(f"An example must hold at least 1 residue, got {budget}.")
  return budget


# ------------------------------------------------------------ deterministic


def tokenize_sequence(
    dataset: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature],
    *,
    batch_size: int = TOKENIZE_BATCH_SIZE,
) -> tf.data.Dataset:
  """Encodes the `sequence` text of each record into ids under `protein`.

  `{"sequence": "mktayiak"}` -> `{"protein": [19, 14, 11, 3, 18, 12, 3, 14]}`.
  Other features are kept, and so is the order of the records.

  The records are encoded `batch_size` at a time and then taken apart again:
  the ids are those of one record at a time, for about a fifth of the time
  (docs/benchmarks.md).

  Args:
    dataset: records with a string feature `sequence`.
    output_features: the task's features; `inputs` holds the vocabulary.
    batch_size: records encoded together.

  Returns:
    The records with `sequence` replaced by int32 `protein`.
  """
  vocabulary = _vocabulary(output_features)

  def _tokenize(records):
    records = dict(records)
    records["protein"] = vocabulary.encode_tf(records.pop("sequence"))
    return records

  dataset = dataset.ragged_batch(batch_size)
  dataset = dataset.map(_tokenize, num_parallel_calls=tf.data.AUTOTUNE)
  # `unbatch` types variable-length features as ragged tensors of ragged
  # rank 0; an identity map gives them back their dense `TensorSpec`, which
  # `padded_batch` and seqio's cache job read.
  return dataset.unbatch().map(lambda record: record)


# ------------------------------------------------------------------- random


def crop_example(
    protein: tf.Tensor,
    seed: tf.Tensor,
    *,
    budget: int,
    random_window: tf.Tensor,
    eval_window: str = "start",
) -> tf.Tensor:
  """Crops one protein to at most `budget` residues.

  Args:
    protein: int32 [length] residue ids.
    seed: stateless seed, int32 [2].
    budget: the most residues to keep.
    random_window: bool scalar; a uniformly random window when true, else the
      fixed window named by `eval_window`.
    eval_window: `"start"` (the N-terminal residues) or `"center"`.

  Returns:
    int32 [min(length, budget)] residue ids.
  """
  length = tf.size(protein)
  slack = tf.maximum(length - budget, 0)
  random_start = tf.random.stateless_uniform(
      [], seed, minval=0, maxval=slack + 1, dtype=tf.int32
  )
  fixed_start = slack // 2 if eval_window == "center" else tf.constant(0)
  start = tf.where(random_window, random_start, fixed_start)
  return protein[start : start + budget]


def crop_proteins(
    dataset: tf.data.Dataset,
    sequence_length: Optional[Mapping[str, int]] = None,
    *,
    max_residues: Optional[int] = None,
    eval_window: str = "start",
) -> tf.data.Dataset:
  """Crops proteins longer than the residue budget.

  Records with `random_crop` true (the training split) get a uniformly random
  window; the others (validation) a fixed one, so evaluation is repeatable.
  With a 512-id input, `budget` is 510 residues: the task token and `</s>`
  take the other two.

  Args:
    dataset: records with int32 `protein` and bool `random_crop`.
    sequence_length: seqio's feature lengths (passed in by seqio).
    max_residues: an explicit residue budget; see `residue_budget`.
    eval_window: `"start"` or `"center"`, the window of evaluation crops.

  Returns:
    The records with `protein` cropped and `random_crop` removed.

  Raises:
    ValueError: for an unknown `eval_window`.
  """
  if eval_window not in ("start", "center"):
    raise ValueError(
        f"eval_window must be 'start' or 'center', got {eval_window!r}."
    )
  budget = residue_budget(sequence_length, max_residues)

  @seqio.map_over_dataset(num_seeds=1)
  def _crop(record, seed):
    record = dict(record)
    record["protein"] = crop_example(
        record["protein"],
        seed,
        budget=budget,
        random_window=record.pop("random_crop"),
        eval_window=eval_window,
    )
    return record

  return _crop(dataset)


def _num_noise_residues(length: tf.Tensor, density: tf.Tensor) -> tf.Tensor:
  """round(density * length), at least 1 and, from 2 residues, at most L-1."""
  n = tf.cast(tf.round(density * tf.cast(length, tf.float32)), tf.int32)
  return tf.clip_by_value(n, 1, tf.maximum(length - 1, 1))


def _num_noise_spans(
    num_noise: tf.Tensor, length: tf.Tensor, mean_noise_span_length: float
) -> tf.Tensor:
  spans = tf.cast(
      tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length),
      tf.int32,
  )
  # Noise spans alternate with non-noise spans of at least one residue.
  return tf.clip_by_value(spans, 1, tf.maximum(length - num_noise, 1))


def _noise_and_spans(
    max_residues: int, density: float, mean_noise_span_length: float
) -> tuple[np.ndarray, np.ndarray]:
  """Masked residues and spans of every protein length 1 .. `max_residues`.

  The numpy twin of `noise_span_mask`'s counts (`_num_noise_residues`, then
  one span per residue or `_num_noise_spans`): float32 products rounded half
  to even, as `tf.round` rounds, and the same clipping.

  Args:
    max_residues: the longest protein an example holds (after cropping).
    density: the masking probability.
    mean_noise_span_length: mean residues per masked span.

  Returns:
    Two int64 [max_residues] arrays: masked residues and masked spans, entry
    `i` for a protein of `i + 1` residues.
  """
  lengths = np.arange(1, max_residues + 1, dtype=np.int64)
  noise = np.round(np.float32(density) * lengths.astype(np.float32))
  noise = np.clip(noise.astype(np.int64), 1, np.maximum(lengths - 1, 1))
  if mean_noise_span_length == 1:
    return noise, noise
  spans = np.round(
      noise.astype(np.float32) / np.float32(mean_noise_span_length)
  )
  spans = np.clip(spans.astype(np.int64), 1, np.maximum(lengths - noise, 1))
  return noise, spans


def check_sentinel_budget(
    max_residues: int,
    noise_densities: Sequence[float],
    mean_noise_span_length: float,
    num_sentinels: int = vocabularies.NUM_SENTINELS,
) -> None:
  """Fails when some example could need more sentinels than exist.

  Args:
    max_residues: the longest protein an example holds (after cropping).
    noise_densities: the masking probabilities drawn from.
    mean_noise_span_length: mean residues per masked span.
    num_sentinels: sentinels in the vocabulary.

  Raises:
    ValueError: naming the density, length and span count that overflow, or a
      density outside (0, 1), or a mean span length below 1.
  """
  if not noise_densities:
    raise ValueError("noise_densities is empty.")
  if mean_noise_span_length < 1:
    raise ValueError(
        f"mean_noise_span_length must be >= 1, got {mean_noise_span_length}."
    )
  for density in noise_densities:
    if not 0 < density < 1:
      raise ValueError(f"A noise density must lie in (0, 1), got {density}.")
    _, spans = _noise_and_spans(max_residues, density, mean_noise_span_length)
    most = int(np.max(spans, initial=0))
    if most > num_sentinels:
      raise ValueError(
          f"Masking {density:.0%} of {max_residues} residues with mean span "
          f"length {mean_noise_span_length} needs up to {most} sentinels, "
          f"but the vocabulary has {num_sentinels}. Lower the sequence length "
          "or the density, or raise mean_noise_span_length."
      )


def check_settings(
    max_residues: int,
    *,
    denoise_probability: float = DEFAULT_DENOISE_PROBABILITY,
    noise_densities: Sequence[float] = DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    split_fraction: SplitFraction = DEFAULT_SPLIT_FRACTION,
    num_sentinels: int = vocabularies.NUM_SENTINELS,
) -> None:
  """Checks every setting of `denoise_or_complete` at once.

  Raises:
    ValueError: see `check_sentinel_budget`, and for a probability outside
      [0, 1] or a bad split fraction.
  """
  if not 0 <= denoise_probability <= 1:
    raise ValueError(
        f"denoise_probability must lie in [0, 1], got {denoise_probability}."
    )
  check_sentinel_budget(
      max_residues, noise_densities, mean_noise_span_length, num_sentinels
  )
  _check_split_fraction(split_fraction)


def max_denoise_targets(
    max_residues: int,
    noise_densities: Sequence[float] = DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
) -> int:
  """The longest denoising `targets`, with `</s>`, of up to `max_residues`.

  One sentinel per masked span, then the span's residues: at 510 residues and
  30% masking with spans of 1, 153 sentinels + 153 residues + `</s>` = 307.

  Args:
    max_residues: the longest protein an example holds (after cropping).
    noise_densities: the masking probabilities drawn from.
    mean_noise_span_length: mean residues per masked span.

  Returns:
    The maximum over every protein length up to `max_residues` and density.
  """
  longest = 0
  for density in noise_densities:
    noise, spans = _noise_and_spans(
        max_residues, density, mean_noise_span_length
    )
    longest = max(longest, int(np.max(noise + spans)))
  return longest + 1


def max_complete_targets(
    max_residues: int, split_fraction: SplitFraction = DEFAULT_SPLIT_FRACTION
) -> int:
  """The longest completion `targets`, with `</s>`, of up to `max_residues`.

  At 510 residues and fraction 0.5: 255 residues + `</s>` = 256.

  Args:
    max_residues: the longest protein an example holds (after cropping).
    split_fraction: a fraction or a (low, high) range; `low` decides.

  Returns:
    The maximum over every protein length up to `max_residues`.
  """
  low, _ = _check_split_fraction(split_fraction)
  lengths = np.arange(1, max_residues + 1, dtype=np.int64)
  prefix = np.floor(np.float64(low) * lengths.astype(np.float64))
  prefix = np.clip(
      prefix.astype(np.int64), np.minimum(1, lengths - 1), lengths - 1
  )
  return int(np.max(lengths - prefix)) + 1


def check_targets_length(
    sequence_length: Optional[Mapping[str, int]],
    needed: int,
    max_residues: int,
) -> None:
  """Fails when a run's `targets` length could truncate some target.

  Args:
    sequence_length: seqio's feature lengths; no check without `targets`.
    needed: the longest target the objective can produce, with `</s>`.
    max_residues: the residue budget it was computed for (for the message).

  Raises:
    ValueError: naming both lengths and the fix.
  """
  if not sequence_length or not sequence_length.get("targets"):
    return
  if sequence_length["targets"] < needed:
    raise ValueError(
        f"Targets length {sequence_length['targets']} would truncate "
        f"targets: examples of up to {max_residues} residues have targets of "
        f"up to {needed} ids (with </s>). Set TASK_FEATURE_LENGTHS['targets'] "
        f"to at least {needed}, or lower the inputs length."
    )


def _random_partition(
    total: tf.Tensor, parts: tf.Tensor, seed: tf.Tensor
) -> tf.Tensor:
  """Splits `total` into `parts` positive lengths at random cut points.

  With `parts == 1` the single part is `total`, even when it is 0.
  """
  # Choose parts - 1 distinct cuts among the positions 1 .. total - 1.
  scores = tf.random.stateless_uniform([tf.maximum(total - 1, 0)], seed)
  cuts = tf.sort(tf.argsort(scores)[: parts - 1] + 1)
  bounds = tf.concat([[0], cuts, [total]], axis=0)
  return bounds[1:] - bounds[:-1]


def noise_span_mask(
    length: tf.Tensor,
    seed: tf.Tensor,
    *,
    noise_density: tf.Tensor,
    mean_noise_span_length: float,
) -> tuple[tf.Tensor, tf.Tensor]:
  """Chooses which residues of a protein to mask, and where spans start.

  With `mean_noise_span_length == 1` exactly round(density * length) residues
  are chosen uniformly, and each is a span of its own (adjacent masked
  residues get separate sentinels). With a longer mean, noise and non-noise
  spans alternate as in T5's span corruption, the protein opening with
  non-noise.

  Args:
    length: number of residues (int32 scalar).
    seed: stateless seed, int32 [2].
    noise_density: the share of residues to mask (float scalar).
    mean_noise_span_length: mean residues per masked span (Python float).

  Returns:
    Two bool [length] tensors: masked residues, and first residues of spans.
  """
  num_noise = _num_noise_residues(length, noise_density)
  if mean_noise_span_length == 1:
    scores = tf.random.stateless_uniform([length], seed)
    chosen = tf.argsort(scores)[:num_noise]
    mask = tf.scatter_nd(
        chosen[:, None], tf.ones_like(chosen, dtype=tf.bool), [length]
    )
    return mask, mask
  noise_seed, plain_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2)
  )
  spans = _num_noise_spans(num_noise, length, mean_noise_span_length)
  noise_lengths = _random_partition(num_noise, spans, noise_seed)
  plain_lengths = _random_partition(length - num_noise, spans, plain_seed)
  lengths = tf.reshape(tf.stack([plain_lengths, noise_lengths], axis=1), [-1])
  is_noise = tf.tile([False, True], [spans])
  mask = tf.repeat(is_noise, lengths)
  starts = tf.logical_and(mask, tf.logical_not(tf.pad(mask[:-1], [[1, 0]])))
  return mask, starts


def denoise_example(
    protein: tf.Tensor,
    seed: tf.Tensor,
    *,
    vocabulary: vocabularies.Ankh3Vocabulary,
    noise_densities: Sequence[float] = DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
) -> tuple[tf.Tensor, tf.Tensor]:
  """Builds one [NLU] denoising example.

  `MKTAYIAK`, masking T and I:
    inputs   [NLU] M K <extra_id_0> A Y <extra_id_1> A K
    targets  <extra_id_0> T <extra_id_1> I

  Args:
    protein: int32 [length] residue ids, length >= 1.
    seed: stateless seed, int32 [2].
    vocabulary: the Ankh3 vocabulary (for the task token and sentinels).
    noise_densities: the masking probability is drawn uniformly from these.
    mean_noise_span_length: mean residues per sentinel.

  Returns:
    inputs and targets, int32, without `</s>`.
  """
  rate_seed, mask_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2)
  )
  densities = tf.constant(noise_densities, dtype=tf.float32)
  choice = tf.random.stateless_uniform(
      [], rate_seed, minval=0, maxval=len(noise_densities), dtype=tf.int32
  )
  mask, starts = noise_span_mask(
      tf.size(protein),
      mask_seed,
      noise_density=densities[choice],
      mean_noise_span_length=mean_noise_span_length,
  )
  span_index = tf.cumsum(tf.cast(starts, tf.int32)) - 1
  sentinels = tf.gather(
      tf.constant(vocabulary.sentinel_ids, dtype=tf.int32),
      tf.maximum(span_index, 0),
  )
  keep_in_inputs = tf.logical_or(tf.logical_not(mask), starts)
  inputs = tf.boolean_mask(tf.where(starts, sentinels, protein), keep_in_inputs)
  pairs = tf.reshape(tf.stack([sentinels, protein], axis=1), [-1])
  keep_in_targets = tf.reshape(tf.stack([starts, mask], axis=1), [-1])
  targets = tf.boolean_mask(pairs, keep_in_targets)
  task = tf.constant([vocabulary.token_id(vocabularies.NLU)], dtype=tf.int32)
  return tf.concat([task, inputs], axis=0), targets


def _check_split_fraction(split_fraction: SplitFraction) -> tuple[float, float]:
  if isinstance(split_fraction, (int, float)):
    low = high = float(split_fraction)
  else:
    if len(split_fraction) != 2:
      raise ValueError(
          "split_fraction is a fraction or a (low, high) range, got "
          f"{split_fraction!r}."
      )
    low, high = (float(x) for x in split_fraction)
  if not 0 < low <= high < 1:
    raise ValueError(
        f"split_fraction must satisfy 0 < low <= high < 1, got {low}, {high}."
    )
  return low, high


def prefix_length(length: int, fraction: float, keep_target: bool) -> int:
  """Residues of a protein the encoder gets in completion: the one rule.

  floor(fraction * length), at least 1; at most length - 1 with
  `keep_target` (pretraining: the decoder has a residue to predict; a
  1-residue protein then goes to the decoder whole), else at most length
  (inference: fraction 1.0 asks the model to extend the whole protein).
  `(8, 0.5, True)` -> 4; `(1, 0.5, True)` -> 0; `(3, 1.0, False)` -> 3.
  `prefix_length_tf` is its TensorFlow twin.
  """
  prefix = int(np.floor(np.float64(fraction) * np.float64(length)))
  if keep_target:
    return min(max(prefix, min(1, length - 1)), length - 1)
  return min(max(prefix, 1), length)


def prefix_length_tf(
    length: tf.Tensor, fraction: Union[float, tf.Tensor], keep_target: bool
) -> tf.Tensor:
  """`prefix_length` in TensorFlow: `length` an int32 scalar."""
  # float64, so that floor(0.53 * 100) is 53, not 52 (a Python float goes
  # to float64 directly, never through float32).
  if isinstance(fraction, tf.Tensor):
    fraction = tf.cast(fraction, tf.float64)
  else:
    fraction = tf.constant(fraction, tf.float64)
  prefix = tf.cast(tf.floor(fraction * tf.cast(length, tf.float64)), tf.int32)
  if keep_target:
    return tf.clip_by_value(prefix, tf.minimum(1, length - 1), length - 1)
  return tf.clip_by_value(prefix, 1, length)


def complete_example(
    protein: tf.Tensor,
    seed: tf.Tensor,
    *,
    vocabulary: vocabularies.Ankh3Vocabulary,
    split_fraction: SplitFraction = DEFAULT_SPLIT_FRACTION,
) -> tuple[tf.Tensor, tf.Tensor]:
  """Builds one [S2S] sequence completion example.

  The encoder gets the first floor(fraction * length) residues, kept within
  1 .. length - 1 so both halves hold a residue (a 1-residue protein goes
  wholly to the decoder). `MKTAYIAK` with fraction 0.5:
    inputs   [S2S] M K T A
    targets  Y I A K

  Args:
    protein: int32 [length] residue ids, length >= 1.
    seed: stateless seed, int32 [2] (used when the fraction is a range).
    vocabulary: the Ankh3 vocabulary (for the task token).
    split_fraction: a fraction, or a (low, high) range sampled uniformly.

  Returns:
    inputs and targets, int32, without `</s>`.
  """
  low, high = _check_split_fraction(split_fraction)
  if low == high:
    fraction = tf.constant(low, tf.float64)
  else:
    fraction = tf.random.stateless_uniform(
        [], seed, minval=low, maxval=high, dtype=tf.float64
    )
  prefix = prefix_length_tf(tf.size(protein), fraction, keep_target=True)
  task = tf.constant([vocabulary.token_id(vocabularies.S2S)], dtype=tf.int32)
  return tf.concat([task, protein[:prefix]], axis=0), protein[prefix:]


def _to_features(record, inputs, targets):
  del record  # Only the model features leave the task.
  return {"inputs": inputs, "targets": targets}


def denoise(
    dataset: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature],
    sequence_length: Optional[Mapping[str, int]] = None,
    *,
    noise_densities: Sequence[float] = DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    max_residues: Optional[int] = None,
) -> tf.data.Dataset:
  """[NLU] multi-rate denoising of every protein; see `denoise_example`.

  Args:
    dataset: records with int32 `protein` (cropped).
    output_features: the task's features; `inputs` holds the vocabulary.
    sequence_length: seqio's feature lengths (passed in by seqio).
    noise_densities: the masking probability is drawn uniformly from these.
    mean_noise_span_length: mean residues per sentinel.
    max_residues: the residue budget, for the sentinel check.

  Returns:
    Examples with `inputs` and `targets`.

  Raises:
    ValueError: if an example could need more sentinels than exist.
  """
  vocabulary = _vocabulary(output_features)
  budget = residue_budget(sequence_length, max_residues)
  check_sentinel_budget(
      budget, noise_densities, mean_noise_span_length, vocabulary.num_sentinels
  )
  check_targets_length(
      sequence_length,
      max_denoise_targets(budget, noise_densities, mean_noise_span_length),
      budget,
  )

  @seqio.map_over_dataset(num_seeds=1)
  def _denoise(record, seed):
    return _to_features(
        record,
        *denoise_example(
            record["protein"],
            seed,
            vocabulary=vocabulary,
            noise_densities=noise_densities,
            mean_noise_span_length=mean_noise_span_length,
        ),
    )

  return _denoise(dataset)


def complete(
    dataset: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature],
    sequence_length: Optional[Mapping[str, int]] = None,
    *,
    split_fraction: SplitFraction = DEFAULT_SPLIT_FRACTION,
    max_residues: Optional[int] = None,
) -> tf.data.Dataset:
  """[S2S] sequence completion of every protein; see `complete_example`.

  Args:
    dataset: records with int32 `protein` (cropped).
    output_features: the task's features; `inputs` holds the vocabulary.
    sequence_length: seqio's feature lengths (passed in by seqio).
    split_fraction: a fraction, or a (low, high) range sampled per example.
    max_residues: the residue budget, for the targets length check.

  Returns:
    Examples with `inputs` and `targets`.

  Raises:
    ValueError: for a bad split fraction, or a targets length that could
      truncate a target.
  """
  vocabulary = _vocabulary(output_features)
  _check_split_fraction(split_fraction)
  budget = residue_budget(sequence_length, max_residues)
  check_targets_length(
      sequence_length, max_complete_targets(budget, split_fraction), budget
  )

  @seqio.map_over_dataset(num_seeds=1)
  def _complete(record, seed):
    return _to_features(
        record,
        *complete_example(
            record["protein"],
            seed,
            vocabulary=vocabulary,
            split_fraction=split_fraction,
        ),
    )

  return _complete(dataset)


def denoise_or_complete(
    dataset: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature],
    sequence_length: Optional[Mapping[str, int]] = None,
    *,
    denoise_probability: float = DEFAULT_DENOISE_PROBABILITY,
    noise_densities: Sequence[float] = DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN_LENGTH,
    split_fraction: SplitFraction = DEFAULT_SPLIT_FRACTION,
    max_residues: Optional[int] = None,
) -> tf.data.Dataset:
  """Sends each example to denoising or to completion, drawn per example.

  The draw is made afresh for every example and seed, so one protein meets
  either task on different epochs, as in the paper.

  Args:
    dataset: records with int32 `protein` (cropped).
    output_features: the task's features; `inputs` holds the vocabulary.
    sequence_length: seqio's feature lengths (passed in by seqio).
    denoise_probability: chance of [NLU] denoising; [S2S] otherwise.
    noise_densities: see `denoise`.
    mean_noise_span_length: see `denoise`.
    split_fraction: see `complete`.
    max_residues: see `denoise`.

  Returns:
    Examples with `inputs` and `targets`.

  Raises:
    ValueError: for a probability outside [0, 1] or a bad task setting.
  """
  vocabulary = _vocabulary(output_features)
  budget = residue_budget(sequence_length, max_residues)
  check_settings(
      budget,
      denoise_probability=denoise_probability,
      noise_densities=noise_densities,
      mean_noise_span_length=mean_noise_span_length,
      split_fraction=split_fraction,
      num_sentinels=vocabulary.num_sentinels,
  )
  needed = 0
  if denoise_probability > 0:
    needed = max_denoise_targets(
        budget, noise_densities, mean_noise_span_length
    )
  if denoise_probability < 1:
    needed = max(needed, max_complete_targets(budget, split_fraction))
  check_targets_length(sequence_length, needed, budget)
  denoise_fn = functools.partial(
      denoise_example,
      vocabulary=vocabulary,
      noise_densities=noise_densities,
      mean_noise_span_length=mean_noise_span_length,
  )
  complete_fn = functools.partial(
      complete_example, vocabulary=vocabulary, split_fraction=split_fraction
  )

  @seqio.map_over_dataset(num_seeds=1)
  def _choose(record, seed):
    choice_seed, task_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2)
    )
    protein = record["protein"]
    inputs, targets = tf.cond(
        tf.random.stateless_uniform([], choice_seed) < denoise_probability,
        lambda: denoise_fn(protein, task_seed),
        lambda: complete_fn(protein, task_seed),
    )
    return _to_features(record, inputs, targets)

  return _choose(dataset)
