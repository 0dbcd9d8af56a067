"""Reading proteins from FASTA, CSV/TSV/Parquet, plain text and TFRecord.

Every reader yields `(record_id, sequence)` for good records and reports each
bad one (empty sequence, invalid characters, a header without sequence) to a
`ReadStats`: the record is skipped, counted by reason, and logged with its id,
so nothing vanishes silently and one bad record never stops the pipeline.

A sequence is cleaned the way the vocabulary reads it: whitespace removed,
letters upper-cased, one terminal `*` dropped. The residues accepted are
`vocabularies.RESIDUES`; anything else (digits, gaps `-` `.`, `J`) rejects
the record.

The format of a file follows its name: `.fasta` `.fa` `.faa` `.fas`, `.csv`,
`.tsv`, `.parquet`, `.txt` (one protein per line), `.tfrecord` (or a name
holding `.tfrecord`), each optionally ending in `.gz` (Parquet and TFRecord
excepted: gzipped TFRecord files are read with `compression="GZIP"` by name).
"""

import collections
import csv
import functools
import gzip
import io
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Optional

from absl import logging
import gin
import numpy as np
import seqio
import tensorflow as tf

from ankh3_tasks import prepared
from ankh3_tasks import vocabularies

Record = tuple[str, str]

_VALID_RE = re.compile(f"[{vocabularies.RESIDUES}]+")
_INVALID_RE = re.compile(f"[^{vocabularies.RESIDUES}]")
_WHITESPACE_RE = re.compile(r"[ \t\n\r\f\v]+")

EMPTY = "empty sequence"
HEADER_WITHOUT_SEQUENCE = "header without sequence"
SEQUENCE_BEFORE_HEADER = "sequence before the first header"
INVALID_CHARACTERS = "invalid characters"

# Below this many bytes of input, a split is parsed at once into tensors,
# which makes the dataset checkpointable; larger inputs stream from Python.
IN_MEMORY_BYTES = 64 << 20
_MAX_LOGGED = 20


class ReadStats:
  """Counts records read, kept and skipped (by reason). Thread-safe.

  Attributes:
    name: what is being read, for the log.
    read: records seen, good or bad.
    kept: records yielded.
    skipped: a Counter of reasons.
    bytes_read: input bytes consumed so far (compressed, if gzipped), for
      progress reports.
  """

  def __init__(self, name: str = "proteins"):
    self.name = name
    self.read = 0
    self.kept = 0
    self.skipped = collections.Counter()
    self.bytes_read = 0
    self._lock = threading.Lock()

  def keep(self) -> None:
    with self._lock:
      self.read += 1
      self.kept += 1

  def skip(self, record_id: str, reason: str, detail: str = "") -> None:
    """Counts a bad record and logs it (the first few in full)."""
    with self._lock:
      self.read += 1
      self.skipped[reason] += 1
      total = sum(self.skipped.values())
    if total <= _MAX_LOGGED:
      logging.warning(
          "%s: skipped record %r: %s%s",
          self.name,
          record_id,
          reason,
          f" ({detail})" if detail else "",
      )
    elif total == _MAX_LOGGED + 1:
      logging.warning(
          "%s: more records skipped; counting them quietly.", self.name
      )

  def summary(self) -> str:
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
    return (
        f"{self.name}: read {self.read}, kept {self.kept}, skipped "
        f"{self.read - self.kept}"
        + (f" ({reasons})" if reasons else "")
    )

  def as_dict(self) -> dict[str, object]:
    return {"read": self.read, "kept": self.kept, "skipped": dict(self.skipped)}


def clean_sequence(raw: str) -> tuple[str, str, str]:
  """Normalizes a sequence and says whether it is acceptable.

  `"mkt ay*\\n"` -> `("MKTAY", "", "")`; `"MK-1"` -> `("MK-1", "invalid
  characters", "'-1'")`.

  Args:
    raw: the sequence text of one record.

  Returns:
    The cleaned sequence, the reason to skip it (empty when good) and a detail
    for the log.
  """
  # Upper-case ASCII only, as the vocabulary and the TFRecord path do
  # (str.upper would turn "ı" into "I").
  sequence = _WHITESPACE_RE.sub("", raw)
  if sequence.isascii():
    sequence = sequence.upper()
  if sequence.endswith("*"):
    sequence = sequence[:-1]
  if not sequence:
    return sequence, EMPTY, ""
  if _VALID_RE.fullmatch(sequence):
    return sequence, "", ""
  bad = sorted(set(_INVALID_RE.findall(sequence)))
  return sequence, INVALID_CHARACTERS, repr("".join(bad))


def _check(record_id: str, raw: str, stats: ReadStats) -> Optional[Record]:
  sequence, reason, detail = clean_sequence(raw)
  if reason:
    stats.skip(record_id, reason, detail)
    return None
  stats.keep()
  return record_id, sequence


class _GFileReader(io.RawIOBase):
  """Presents a `tf.io.gfile.GFile` (local or GCS) as a standard raw stream."""

  def __init__(self, path: str, stats: Optional[ReadStats] = None):
    super().__init__()
    self._file = tf.io.gfile.GFile(path, "rb")
    self._stats = stats

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    data = self._file.read(len(buffer))
    buffer[: len(data)] = data
    if self._stats is not None:
      self._stats.bytes_read += len(data)
    return len(data)

  def close(self) -> None:
    self._file.close()
    super().close()


def open_text(path: str, stats: Optional[ReadStats] = None) -> io.TextIOBase:
  """Opens a local or remote (`gs://`) file as text, gunzipping by content.

  Args:
    path: any path `tf.io.gfile` reads.
    stats: counts the bytes read, when given.

  Returns:
    A UTF-8 text stream (a byte-order mark dropped, bad bytes replaced).
  """
  stream = io.BufferedReader(_GFileReader(path, stats), buffer_size=1 << 20)
  if stream.peek(2)[:2] == b"\x1f\x8b":
    stream = gzip.GzipFile(fileobj=stream)
  # utf-8-sig drops a byte-order mark.
  return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace")


def read_fasta(path: str, stats: ReadStats) -> Iterator[Record]:
  """Yields the good records of a FASTA file (multi-line, maybe gzipped).

  The id is the first word of the header (`>UniRef50_Q6GZX4 n=1 ...` ->
  `UniRef50_Q6GZX4`). A record whose header is followed directly by the next
  header or the end of the file ("header without sequence"), one whose lines
  hold no residues ("empty sequence": blank lines, a lone `*`), and lines
  before the first header are skipped with their reason.

  Args:
    path: the file.
    stats: counts what is read.

  Yields:
    (id, cleaned sequence).

  Raises:
    OSError, EOFError: for a truncated or corrupt gzip stream, naming the file
      and the last record read.
  """
  header = None
  header_line = 0
  lines = []
  any_line = False  # Any line, blank or not, after the header.
  number = 0
  last_id = None

  def flush():
    if header is None:
      if lines:
        stats.skip(f"{os.path.basename(path)}:1", SEQUENCE_BEFORE_HEADER)
      return None
    record_id = (
        header.split(maxsplit=1)[0]
        if header.strip()
        else f"{os.path.basename(path)}:{header_line}"
    )
    if not any_line:
      stats.skip(record_id, HEADER_WITHOUT_SEQUENCE)
      return None
    return _check(record_id, "".join(lines), stats)

  try:
    with open_text(path, stats) as f:
      for number, line in enumerate(f, start=1):
        if line.startswith(">"):
          record = flush()
          if record:
            last_id = record[0]
            yield record
          header, header_line, lines = line[1:].strip(), number, []
          any_line = False
        else:
          any_line = True
          if line.strip():
            lines.append(line)
  except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise type(e)(
        f"{path}: unreadable after record {last_id!r} (line {number}): {e}"
    ) from e
  record = flush()
  if record:
    yield record


def _pick_column(
    names: Sequence[str],
    wanted: Optional[str],
    guesses: Sequence[str],
    path: str,
    what: str,
) -> Optional[str]:
  if wanted is not None:
    if wanted not in names:
      raise ValueError(
          f"{path}: no {what} column {wanted!r}; columns: {list(names)}."
      )
    return wanted
  for guess in guesses:
    if guess in names:
      return guess
  return None


# Column names of common UniRef50 exports.
_SEQUENCE_COLUMNS = ("sequence", "Sequence", "seq", "text")
_ID_COLUMNS = ("id", "Entry", "entry", "name", "accession")


def read_table(
    path: str,
    stats: ReadStats,
    *,
    sequence_column: Optional[str] = None,
    id_column: Optional[str] = None,
) -> Iterator[Record]:
  """Yields the good records of a CSV, TSV or Parquet file.

  Args:
    path: the file; `.tsv` is tab-separated, `.parquet` is Parquet.
    stats: counts what is read.
    sequence_column: column of the sequences; by default the first present of
      `sequence`, `Sequence`, `seq`, `text`.
    id_column: column of the ids; by default the first present of `id`,
      `Entry`, `entry`, `name`, `accession`, else `FILE:ROW`.

  Yields:
    (id, cleaned sequence).

  Raises:
    ValueError: when there is no sequence column, or for a corrupt Parquet
      file (naming the file, the last good record and the row).
    OSError, EOFError: for a truncated or corrupt file, named the same way.
  """
  name = os.path.basename(path)
  position = {"row": 0, "id": None}
  try:
    if strip_gz(path).endswith(".parquet"):
      yield from _read_parquet(
          path, stats, sequence_column, id_column, position
      )
      return
    delimiter = "\t" if strip_gz(path).endswith(".tsv") else ","
    # Titin has over 34,000 residues; lift csv's 131,072-character field cap.
    csv.field_size_limit(1 << 30)
    with open_text(path, stats) as f:
      reader = csv.DictReader(f, delimiter=delimiter)
      names = reader.fieldnames or []
      seq_col, id_col = _table_columns(names, sequence_column, id_column, path)
      for row, fields in enumerate(reader, start=2):
        position["row"] = row
        record_id = (fields.get(id_col) if id_col else None) or f"{name}:{row}"
        record = _check(record_id, fields.get(seq_col) or "", stats)
        if record:
          position["id"] = record[0]
          yield record
  except (OSError, EOFError, gzip.BadGzipFile, zlib.error, csv.Error) as e:
    raise type(e)(_unreadable(path, position, e)) from e
  except Exception as e:  # pyarrow's errors have no common base to name.
    if type(e).__module__.startswith("pyarrow"):
      raise ValueError(_unreadable(path, position, e)) from e
    raise


def _unreadable(path, position, error) -> str:
  return (
      f"{path}: unreadable after record {position['id']!r} (row "
      f"{position['row']}): {error}"
  )


def _read_parquet(path, stats, sequence_column, id_column, position):
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  name = os.path.basename(path)
  # pyarrow opens local paths and gs:// URIs itself.
  table = pq.ParquetFile(path)
  names = table.schema_arrow.names
  seq_col, id_col = _table_columns(names, sequence_column, id_column, path)
  columns = [c for c in (seq_col, id_col) if c]
  row = 0
  bytes_per_row = tf.io.gfile.stat(path).length / max(
      table.metadata.num_rows, 1
  )
  for batch in table.iter_batches(columns=columns):
    stats.bytes_read += int(batch.num_rows * bytes_per_row)
    data = batch.to_pydict()
    ids = data[id_col] if id_col else [None] * batch.num_rows
    for record_id, raw in zip(ids, data[seq_col]):
      row += 1
      position["row"] = row
      if record_id is None:
        record_id = f"{name}:{row}"
      if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
      if isinstance(record_id, bytes):
        record_id = record_id.decode("utf-8", errors="replace")
      record = _check(str(record_id), raw or "", stats)
      if record:
        position["id"] = record[0]
        yield record


def _table_columns(names, sequence_column, id_column, path):
  seq_col = _pick_column(
      names, sequence_column, _SEQUENCE_COLUMNS, path, "sequence"
  )
  if seq_col is None:
    raise ValueError(
        f"{path}: no sequence column among {list(names)}; name it with "
        "sequence_column."
    )
  return seq_col, _pick_column(names, id_column, _ID_COLUMNS, path, "id")


def read_lines(path: str, stats: ReadStats) -> Iterator[Record]:
  """Yields one protein per non-blank line; the id is `FILE:LINE`."""
  position = {"row": 0, "id": None}
  try:
    with open_text(path, stats) as f:
      for number, line in enumerate(f, start=1):
        position["row"] = number
        if line.strip():
          record = _check(f"{os.path.basename(path)}:{number}", line, stats)
          if record:
            position["id"] = record[0]
            yield record
  except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise type(e)(_unreadable(path, position, e)) from e


def strip_gz(path: str) -> str:
  """Returns `path` without a trailing `.gz`."""
  return path[:-3] if path.endswith(".gz") else path


def file_format(path: str) -> str:
  """Returns `fasta`, `table`, `text` or `tfrecord` for a file name."""
  name = os.path.basename(path).lower()
  if name.endswith(".parquet.gz"):
    raise ValueError(f"{path}: Parquet compresses itself; do not gzip it.")
  name = strip_gz(name)
  if ".tfrecord" in name:
    return "tfrecord"
  ext = os.path.splitext(name)[1]
  if ext in (".fasta", ".fa", ".faa", ".fas"):
    return "fasta"
  if ext in (".csv", ".tsv", ".parquet"):
    return "table"
  if ext == ".txt":
    return "text"
  raise ValueError(
      f"{path}: unknown protein file format; use .fasta, .csv, .tsv, "
      ".parquet, .txt or .tfrecord (optionally .gz)."
  )


def read_records(
    path: str, stats: ReadStats, **table_options
) -> Iterator[Record]:
  """Yields the good records of one FASTA, table or text file.

  Raises:
    FileNotFoundError: when there is no such file.
    ValueError: for a file of no known format, or a TFRecord file.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No such input: {path}")
  kind = file_format(path)
  if kind == "fasta":
    return read_fasta(path, stats)
  if kind == "table":
    return read_table(path, stats, **table_options)
  if kind == "text":
    return read_lines(path, stats)
  raise ValueError(f"{path}: TFRecord files are read by tfrecord_dataset.")


def residue_counts(paths: Sequence[str], **table_options) -> dict[str, int]:
  """Counts each residue letter over the good records of `paths`.

  `MKA` and `KK` -> `{"M": 1, "K": 3, "A": 1}` (letters that never occur are
  left out).
  """
  counts = collections.Counter()
  stats = ReadStats("residue counts")
  for path in paths:
    for _, sequence in read_records(path, stats, **table_options):
      counts.update(sequence)
  return dict(counts)


# ------------------------------------------------------------------ TFRecord


def _report_tf(stats: ReadStats, record_id, reason, invalid):
  invalid = invalid.numpy().decode("utf-8", "replace")
  stats.skip(
      record_id.numpy().decode("utf-8", "replace"),
      reason.numpy().decode(),
      repr("".join(sorted(set(invalid)))) if invalid else "",
  )
  return False


def _clean_sequence_tf(
    record_id: tf.Tensor, raw: tf.Tensor, stats: ReadStats
) -> tuple[tf.Tensor, tf.Tensor]:
  """Graph twin of `clean_sequence`: returns (sequence, keep)."""
  sequence = tf.strings.upper(
      tf.strings.regex_replace(raw, r"[ \t\n\r\f\v]+", "")
  )
  sequence = tf.strings.regex_replace(sequence, r"\*$", "")
  empty = tf.equal(tf.strings.length(sequence), 0)
  valid = tf.strings.regex_full_match(sequence, _VALID_RE.pattern)
  detail = tf.strings.regex_replace(sequence, f"[{vocabularies.RESIDUES}]", "")
  report = functools.partial(_report_tf, stats)

  def bad():
    reason = tf.where(empty, EMPTY, INVALID_CHARACTERS)
    return tf.py_function(report, [record_id, reason, detail], tf.bool)

  keep = tf.cond(valid, lambda: tf.constant(True), bad)
  return sequence, keep


# TFRecord shards read at once.
_CYCLE_LENGTH = 16


def tfrecord_dataset(
    paths: Sequence[str],
    stats: ReadStats,
    *,
    sequence_key: str = "sequence",
    id_key: str = "id",
    trusted: bool = False,
) -> tf.data.Dataset:
  """Reads `tf.train.Example` shards with a bytes `sequence` (and `id`).

  Up to `_CYCLE_LENGTH` shards are read at once, their records interleaved
  in a fixed order.

  Args:
    paths: the shards, in this order (gzipped if named `.gz`).
    stats: counts bad records (good ones are not counted, to stay in graph).
      Records that do not parse are dropped with tf.data's warning.
    sequence_key: feature of the sequence.
    id_key: feature of the record id (may be absent from the shards).
    trusted: the shards hold only clean records (`prepare` wrote them): skip
      the checks. The dataset is then pure graph, so T5X can checkpoint its
      position (checking reports bad records through Python, which cannot be
      saved).

  Returns:
    A dataset of {"id", "sequence"} string scalars.
  """
  spec = {
      sequence_key: tf.io.FixedLenFeature([], tf.string, default_value=""),
      id_key: tf.io.FixedLenFeature([], tf.string, default_value=""),
  }

  def parse(serialized):
    example = tf.io.parse_single_example(serialized, spec)
    return {"id": example[id_key], "sequence": example[sequence_key]}

  def clean(record):
    sequence, keep = _clean_sequence_tf(record["id"], record["sequence"], stats)
    return {"id": record["id"], "sequence": sequence, "keep": keep}

  compression = ["GZIP" if p.endswith(".gz") else "" for p in paths]
  ds = tf.data.Dataset.from_tensor_slices((list(paths), compression))
  ds = ds.interleave(
      lambda path, kind: tf.data.TFRecordDataset(path, compression_type=kind),
      cycle_length=max(1, min(_CYCLE_LENGTH, len(paths))),
      num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True,
  )
  if trusted:
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
  # A record that is not a tf.train.Example of strings is dropped with a
  # warning from tf.data (not counted in `stats`) instead of stopping.
  ds = ds.map(parse).ignore_errors(log_warning=True).map(clean)
  ds = ds.filter(lambda r: r["keep"])
  return ds.map(lambda r: {"id": r["id"], "sequence": r["sequence"]})


# ------------------------------------------------------------------- datasets


def protein_dataset(
    paths: Sequence[str],
    stats: Optional[ReadStats] = None,
    **table_options,
) -> tf.data.Dataset:
  """Reads protein files of any supported format into one dataset.

  Small inputs (under `IN_MEMORY_BYTES`) are parsed at once into tensors, so
  the dataset can be checkpointed; larger text inputs stream from a Python
  generator (prepare them as TFRecord shards for training at scale).

  Args:
    paths: the files, read in this order; all TFRecord, or none.
    stats: counts what is read; a fresh one when None.
    **table_options: `sequence_column` / `id_column` for tables.

  Returns:
    A dataset of {"id": string, "sequence": string} records.
  """
  if not paths:
    raise ValueError("No protein files given.")
  stats = stats or ReadStats()
  kinds = {file_format(p) for p in paths}
  if "tfrecord" in kinds:
    if kinds != {"tfrecord"}:
      raise ValueError(f"Do not mix TFRecord and text files: {list(paths)}.")
    return tfrecord_dataset(paths, stats, trusted=prepared.is_prepared(paths))

  def records():
    for path in paths:
      yield from read_records(path, stats, **table_options)
    logging.info("%s", stats.summary())

  size = sum(tf.io.gfile.stat(p).length for p in paths)
  if size <= IN_MEMORY_BYTES:
    ids, sequences = [], []
    for record_id, sequence in records():
      ids.append(record_id)
      sequences.append(sequence)
    return tf.data.Dataset.from_tensor_slices({
        "id": tf.constant(ids, dtype=tf.string),
        "sequence": tf.constant(sequences, dtype=tf.string),
    })
  spec = {
      "id": tf.TensorSpec([], tf.string),
      "sequence": tf.TensorSpec([], tf.string),
  }
  return tf.data.Dataset.from_generator(
      lambda: ({"id": i, "sequence": s} for i, s in records()),
      output_signature=spec,
  )


# ------------------------------------------------------------- data sources

SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "data")
SAMPLE_FILES = {
    "train": (os.path.join(SAMPLE_DIR, "sample_train.fasta.gz"),),
    "validation": (os.path.join(SAMPLE_DIR, "sample_validation.fasta.gz"),),
}
DATA_DIR_ENV = "ANKH3_DATA_DIR"
DATA_DIR_MACRO = "ANKH3_DATA_DIR"


def data_dir() -> str:
  """Returns where the UniRef50 files are.

  The gin macro `ANKH3_DATA_DIR` wins (`--gin.ANKH3_DATA_DIR="'gs://b/u50'"`),
  then the environment variable `ANKH3_DATA_DIR`.

  Raises:
    ValueError: when neither is set.
  """
  try:
    value = gin.query_parameter(f"%{DATA_DIR_MACRO}")
  except ValueError:
    value = None
  value = value or os.environ.get(DATA_DIR_ENV)
  if not value:
    raise ValueError(
        "Tell the uniref50 tasks where the data is: set the environment "
        f"variable {DATA_DIR_ENV}=DIR (every command), or with t5x.train, "
        "t5x.eval and t5x.infer the gin macro "
        f"--gin.{DATA_DIR_MACRO}=\"'DIR'\"."
    )
  return value


def split_files(directory: str, split: str) -> list[str]:
  """Lists the protein files of a split under `directory`, sorted.

  A split's files are those under `directory/SPLIT/`, or directly in
  `directory` with names starting with `SPLIT` (`train.fasta.gz`,
  `train-00000-of-00064.tfrecord`, ...).

  Raises:
    ValueError: when the split has no files, or `directory` holds an
      unfinished preparation.
  """
  prepared.check_finished(directory)
  candidates = tf.io.gfile.glob(os.path.join(directory, split, "*"))
  candidates += [
      path
      for path in tf.io.gfile.glob(os.path.join(directory, f"{split}*"))
      # `train.fasta`, `train-0001.tfrecord`, not `training_notes.txt`.
      if re.match(rf"{re.escape(split)}([._-]|$)", os.path.basename(path))
  ]
  files = []
  for path in sorted(set(candidates)):
    if tf.io.gfile.isdir(path) or ".partial" in os.path.basename(path):
      continue
    try:
      file_format(path)
    except ValueError:
      continue
    files.append(path)
  if not files:
    raise ValueError(
        f"No protein files for split {split!r} in {directory}: expected "
        f"{split}/* or {split}*.fasta[.gz] / .csv / .tsv / .parquet / .txt / "
        ".tfrecord."
    )
  prepared.check_split(directory, split)
  return files


class ProteinSource(seqio.DataSource):
  """A seqio source of {"id", "sequence", "random_crop"} records.

  Each file is a shard: on a multi-host job (and in seqio's cache job) every
  host reads its own files (`files[index::num_hosts]`) when a split has at
  least as many files as hosts; with fewer, seqio shards the records.
  """

  def __init__(
      self,
      files_fn: Callable[[str], Sequence[str]],
      splits: Iterable[str] = ("train", "validation"),
      random_crop_splits: Iterable[str] = ("train",),
      **table_options,
  ):
    """Initializes the source.

    Args:
      files_fn: maps a split name to its files, called when data is read.
      splits: split names.
      random_crop_splits: splits whose proteins get random crop windows
        (training); the others get a fixed window (evaluation).
      **table_options: see `read_table`.
    """
    super().__init__(splits=tuple(splits), caching_permitted=True)
    self._files_fn = files_fn
    self._random_crop_splits = frozenset(random_crop_splits)
    self._table_options = table_options

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return list(self._files_fn(split))

  def get_dataset(
      self,
      split: str = "train",
      shuffle: bool = True,
      seed: Optional[int] = None,
      shard_info: Optional[seqio.ShardInfo] = None,
      *,
      sequence_length: Optional[Mapping[str, int]] = None,  # Unused.
      use_cached: bool = False,  # Unused.
      num_epochs: Optional[int] = 1,  # Unused.
  ) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs
    paths = self.list_shards(split)
    if shard_info and shard_info.num_shards > 1:
      if len(paths) < shard_info.num_shards:
        raise ValueError(
            f"Split {split!r} has {len(paths)} files, fewer than the "
            f"{shard_info.num_shards} shards asked for."
        )
      paths = paths[shard_info.index :: shard_info.num_shards]
    if shuffle:
      order = np.random.default_rng(seed).permutation(len(paths))
      paths = [paths[i] for i in order]
    stats = ReadStats(f"{split} proteins")
    ds = protein_dataset(paths, stats, **self._table_options)
    random_crop = tf.constant(split in self._random_crop_splits)
    return ds.map(lambda r: {**r, "random_crop": random_crop})
