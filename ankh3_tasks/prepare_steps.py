"""The steps `ankh3_tasks.prepare` runs, whichever engine runs them.

What decides the output (`Settings`), where a protein goes (`assign`), the
reading of the inputs (`read_inputs`) and the writing of one shard
(`write_shard`): the local engine (`prepare.py`) and the Beam pipeline
(`prepare_beam.py`) both call these, so both give the same bytes.
"""

import collections
from collections.abc import Iterable, Iterator, Sequence
import dataclasses
import hashlib
import json
import os
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from ankh3_tasks import prepared
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

# 4 shards for each of the 16 hosts of a v4-128 slice; any multiple of the
# host count lets every host read whole files.
DEFAULT_NUM_SHARDS = 64
DEFAULT_NUM_EVAL_SHARDS = 16
# ~5,900 of UniRef50's 59.1M sequences (the public export holds out ~6k).
DEFAULT_VALIDATION_FRACTION = 1e-4
TOO_LONG = "too long"
DUPLICATE_ID = "duplicate id"
# Every reason a record can be rejected for, as stats.json lists them.
REJECT_REASONS = (
    sources.EMPTY,
    sources.HEADER_WITHOUT_SEQUENCE,
    sources.SEQUENCE_BEFORE_HEADER,
    sources.INVALID_CHARACTERS,
    TOO_LONG,
    DUPLICATE_ID,
)
# Length histogram bin edges, in residues; the last bin is open.
LENGTH_BINS = (
    1,
    50,
    100,
    150,
    200,
    250,
    300,
    400,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    10000,
)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What decides the output; a different value is a different dataset.

  Attributes:
    num_shards: train shards.
    num_eval_shards: shards of each evaluation split.
    validation_fraction: share of ids that go to `validation`.
    test_fraction: share of ids that go to `test` (0: no test split).
    max_length: reject longer proteins (None: keep all).
    salt: changes the hash, and so which proteins are held out.
    sequence_column: column of the sequences in CSV/TSV/Parquet input.
    id_column: column of the ids in CSV/TSV/Parquet input.
  """

  num_shards: int = DEFAULT_NUM_SHARDS
  num_eval_shards: int = DEFAULT_NUM_EVAL_SHARDS
  validation_fraction: float = DEFAULT_VALIDATION_FRACTION
  test_fraction: float = 0.0
  max_length: Optional[int] = None
  salt: str = ""
  sequence_column: Optional[str] = None
  id_column: Optional[str] = None

  def __post_init__(self):
    if self.num_shards < 1 or self.num_eval_shards < 1:
      raise ValueError(
          f"Shard counts must be >= 1, got {self.num_shards} and "
          f"{self.num_eval_shards}."
      )
    if not (
        0 <= self.validation_fraction
        and 0 <= self.test_fraction
        and self.validation_fraction + self.test_fraction < 1
    ):
      raise ValueError(
          "validation_fraction and test_fraction must be >= 0 and sum to "
          f"less than 1, got {self.validation_fraction} and "
          f"{self.test_fraction}."
      )
    if self.max_length is not None and self.max_length < 1:
      raise ValueError(f"max_length must be >= 1, got {self.max_length}.")

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(
        s
        for s in prepared.SPLITS
        if s == "train"
        or (s == "validation" and self.validation_fraction > 0)
        or (s == "test" and self.test_fraction > 0)
    )

  def shards(self, split: str) -> int:
    return self.num_shards if split == "train" else self.num_eval_shards

  @property
  def table_options(self) -> dict[str, str]:
    options = {}
    if self.sequence_column:
      options["sequence_column"] = self.sequence_column
    if self.id_column:
      options["id_column"] = self.id_column
    return options


def assign(record_id: str, settings: Settings) -> tuple[str, int, bytes]:
  """Returns the split, shard and order key of a protein, from its id alone.

  Args:
    record_id: the protein's id.
    settings: fractions, shard counts and salt.

  Returns:
    (split, shard index, 16-byte key that orders records within a shard).
  """
  key = hashlib.blake2b(
      record_id.encode("utf-8", errors="surrogateescape"),
      digest_size=16,
      key=settings.salt.encode("utf-8"),
  ).digest()
  u = int.from_bytes(key[:8], "big") / 2.0**64
  if u < settings.validation_fraction:
    split = "validation"
  elif u < settings.validation_fraction + settings.test_fraction:
    split = "test"
  else:
    split = "train"
  shard = int.from_bytes(key[8:], "big") % settings.shards(split)
  return split, shard, key


def read_inputs(
    inputs: Sequence[str],
    settings: Settings,
    stats: sources.ReadStats,
    rejected: collections.Counter,
    file_indices: Optional[Sequence[int]] = None,
) -> Iterator[tuple[int, int, str, str]]:
  """Yields (file index, record index, id, sequence) of the good records.

  Records longer than `settings.max_length` are counted in `rejected`;
  other bad records in `stats` (which logs them with their id).

  Args:
    inputs: the input files.
    settings: for `max_length` and the table columns.
    stats: counts records read and rejected while parsing.
    rejected: counts records rejected here (too long).
    file_indices: the index of each input among all inputs (default: its
      position in `inputs`).

  Raises:
    ValueError: for an input file without records.
  """
  indices = file_indices if file_indices is not None else range(len(inputs))
  for file_index, path in zip(indices, inputs):
    before = stats.read
    records = sources.read_records(path, stats, **settings.table_options)
    for record_index, (record_id, sequence) in enumerate(records):
      if settings.max_length and len(sequence) > settings.max_length:
        rejected[TOO_LONG] += 1
        if rejected[TOO_LONG] <= 20:
          logging.warning(
              "%s: rejected %r: %s (%d > %d residues)",
              path,
              record_id,
              TOO_LONG,
              len(sequence),
              settings.max_length,
          )
        continue
      yield file_index, record_index, record_id, sequence
    if stats.read == before:
      raise ValueError(f"No records in {path}.")


def _empty_shard_stats() -> dict[str, Any]:
  return {
      "records": 0,
      "duplicates": 0,
      "residues": 0,
      "length_counts": [0] * len(LENGTH_BINS),
      "min_length": 0,
      "max_length": 0,
      "composition": {r: 0 for r in vocabularies.RESIDUES},
  }


def write_shard(
    records: Iterable[tuple[int, int, str, str]],
    settings: Settings,
    output_dir: str,
    split: str,
    shard: int,
) -> dict[str, Any]:
  """Writes one shard: first occurrence of each id, ordered by `assign` key.

  Args:
    records: (file index, record index, id, sequence) of this shard, in any
      order.
    settings: the dataset settings.
    output_dir: the output directory.
    split: the split.
    shard: the shard index.

  Returns:
    The shard's entry of the manifest, with its statistics.
  """
  first = {}
  duplicates = 0
  for file_index, record_index, record_id, sequence in records:
    position = (file_index, record_index)
    kept = first.get(record_id)
    if kept is not None:
      duplicates += 1
      if duplicates <= 5:
        logging.warning(
            "%s shard %d: rejected %r: %s (input %d, records %d and %d)",
            split,
            shard,
            record_id,
            DUPLICATE_ID,
            file_index,
            min(kept[0][1], record_index),
            max(kept[0][1], record_index),
        )
      if kept[0] < position:
        continue
    first[record_id] = (position, sequence)
  if duplicates > 5:
    logging.warning(
        "%s shard %d: %d records rejected in all (%s).",
        split,
        shard,
        duplicates,
        DUPLICATE_ID,
    )
  ordered = sorted(first.items(), key=lambda item: assign(item[0], settings)[2])
  name = prepared.shard_name(split, shard, settings.shards(split))
  path = os.path.join(output_dir, name)
  tf.io.gfile.makedirs(os.path.dirname(path))
  # Named by process, so that two writers of one shard never share a file.
  partial = f"{path}.partial.{os.getpid()}"
  with tf.io.TFRecordWriter(partial) as writer:
    for record_id, (_, sequence) in ordered:
      writer.write(prepared.example_bytes(record_id, sequence))
  tf.io.gfile.rename(partial, path, overwrite=True)

  stats = _empty_shard_stats()
  lengths = np.array([len(s) for _, (_, s) in ordered], dtype=np.int64)
  if len(lengths):
    counts = np.bincount(
        np.frombuffer(
            "".join(s for _, (_, s) in ordered).encode("ascii"), np.uint8
        ),
        minlength=128,
    )
    stats.update(
        records=len(ordered),
        residues=int(lengths.sum()),
        length_counts=np.bincount(
            np.searchsorted(LENGTH_BINS, lengths, side="right") - 1,
            minlength=len(LENGTH_BINS),
        ).tolist(),
        min_length=int(lengths.min()),
        max_length=int(lengths.max()),
        composition={r: int(counts[ord(r)]) for r in vocabularies.RESIDUES},
    )
  stats["duplicates"] = duplicates
  return {
      "path": name,
      "split": split,
      "shard": shard,
      "bytes": tf.io.gfile.stat(path).length,
      "sha256": _sha256(path),
      "stats": stats,
  }


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while chunk := f.read(1 << 22):
      digest.update(chunk)
  return digest.hexdigest()


def read_json(path: str) -> Optional[dict[str, Any]]:
  """The JSON at `path`, or None when there is no such file."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_json(path: str, value: Any) -> None:
  """Writes JSON to `path` whole or not at all (a rename at the end)."""
  partial = path + ".partial"
  with tf.io.gfile.GFile(partial, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
    f.write("\n")
  tf.io.gfile.rename(partial, path, overwrite=True)


def all_shards(settings: Settings) -> list[tuple[str, int]]:
  """Every (split, shard) a run writes, empty ones included."""
  return [
      (split, shard)
      for split in settings.splits
      for shard in range(settings.shards(split))
  ]
