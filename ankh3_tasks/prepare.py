r"""Prepares protein files for training: sharded TFRecord files per split.

  python -m ankh3_tasks.prepare --input=uniref50.fasta.gz --output_dir=DIR

reads FASTA (plain or gzipped), CSV/TSV or Parquet, and writes

  DIR/train/train-00000-of-00064.tfrecord ...        tf.train.Example records
  DIR/validation/validation-00000-of-00016.tfrecord  with bytes features
  DIR/stats.json                                     `id` and `sequence`
  DIR/MANIFEST.json            written last: every file, records, SHA-256

which the `ankh3_uniref50_*` tasks read with `ANKH3_DATA_DIR=DIR`.

* The split of a protein is a function of its id alone (a keyed BLAKE2b
  hash), so it is the same on every run and machine, and so is its shard.
  Within a shard, records are ordered by that hash: the output does not
  depend on the input order or on the runner.
* Bad records are rejected, counted by reason in `stats.json` and logged with
  their id: read = written + rejected, always. A repeated id keeps its first
  occurrence.
* Two passes, in memory bounded by one shard: the scan parses the input once
  and spreads records over per-shard work files (`DIR/.work/`); the write
  pass deduplicates, orders and writes each shard. A run killed during the
  write pass keeps its finished shards when run again; one killed during the
  scan scans again. A truncated or corrupt input stops the run with an error
  naming the file and the last good record, and no manifest is written.
* `--beam` runs the same steps as an Apache Beam pipeline (DirectRunner by
  default; pass e.g. `--runner=DataflowRunner --project=P --region=R
  --temp_location=gs://B/tmp` for Dataflow); the output is byte-identical.
"""

import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging as std_logging
import multiprocessing
import os
import struct
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

from ankh3_tasks import cli
from ankh3_tasks import prepare_steps
from ankh3_tasks import prepared
from ankh3_tasks import progress as progress_lib
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

_WORK_HEADER = struct.Struct("<IIII")  # file index, record index, id, seq
# The scan keeps one work file per shard open; stay under the usual limit of
# 1,024 open files per process.
_MAX_OPEN_WORK_FILES = 1000


# ----------------------------------------------------------------- progress


class ProgressBar(tqdm.tqdm):
  """A tqdm bar on stderr for one pass: records, their rate, bytes and ETA.

  With `total_bytes` the bar advances by bytes read, which gives the share and
  the ETA; without it, by records. On a terminal the line is redrawn twice a
  second; in a log a line is written every 30 seconds.
  """

  def __init__(self, what: str, total_bytes: int = 0, enabled: bool = True):
    if total_bytes:
      layout = (
          "{desc}, {percentage:.0f}% of {total_fmt}B, ETA {remaining},"
          " {elapsed} elapsed"
      )
    else:
      layout = "{desc}, {elapsed} elapsed"
    super().__init__(
        desc=f"{what}: 0 records",
        total=total_bytes or None,
        unit="B",
        unit_scale=True,
        bar_format=layout,
        disable=not enabled,
        **progress_lib.bar_options(),
    )
    self.what = what

  def advance(self, records: int, done_bytes: Optional[int] = None) -> None:
    """Shows `records` so far, and `done_bytes` where the total is known."""
    if self.disable:
      return
    elapsed = max(self.format_dict["elapsed"], 1e-9)
    self.set_description_str(
        f"{self.what}: {records:,} records, {records / elapsed:,.0f}/s",
        refresh=False,
    )
    self.update((records if done_bytes is None else done_bytes) - self.n)


# --------------------------------------------------------------------- scan


def _pack(file_index, record_index, record_id, sequence) -> bytes:
  id_bytes = record_id.encode("utf-8", errors="surrogateescape")
  seq_bytes = sequence.encode("ascii")
  return (
      _WORK_HEADER.pack(file_index, record_index, len(id_bytes), len(seq_bytes))
      + id_bytes
      + seq_bytes
  )


def _unpack(data: bytes) -> Iterator[tuple[int, int, str, str]]:
  offset, size = 0, len(data)
  header = _WORK_HEADER.size
  while offset < size:
    file_index, record_index, id_len, seq_len = _WORK_HEADER.unpack_from(
        data, offset
    )
    offset += header
    record_id = data[offset : offset + id_len].decode(
        "utf-8", errors="surrogateescape"
    )
    offset += id_len
    sequence = data[offset : offset + seq_len].decode("ascii")
    offset += seq_len
    yield file_index, record_index, record_id, sequence


class _WorkFiles:
  """Buffered per-shard work files of the scan."""

  def __init__(self, directory: str, flush_bytes: int = 1 << 20):
    self.directory = directory
    self.flush_bytes = flush_bytes
    self._buffers = collections.defaultdict(list)
    self._sizes = collections.Counter()
    self._files = {}

  def path(self, split: str, shard: int) -> str:
    return os.path.join(self.directory, f"{split}-{shard:05d}.bin")

  def add(self, split: str, shard: int, packed: bytes) -> None:
    key = (split, shard)
    self._buffers[key].append(packed)
    self._sizes[key] += len(packed)
    if self._sizes[key] >= self.flush_bytes:
      self._flush(key)

  def _flush(self, key) -> None:
    if key not in self._files:
      self._files[key] = tf.io.gfile.GFile(self.path(*key), "wb")
    self._files[key].write(b"".join(self._buffers[key]))
    self._buffers[key] = []
    self._sizes[key] = 0

  def close(self) -> None:
    for key in list(self._buffers):
      if self._buffers[key]:
        self._flush(key)
    for f in self._files.values():
      f.close()


def _input_bytes(inputs: Sequence[str]) -> int:
  return sum(tf.io.gfile.stat(p).length for p in inputs)


def scan(
    inputs: Sequence[str],
    settings: prepare_steps.Settings,
    work_dir: str,
    *,
    progress: bool = True,
) -> dict[str, Any]:
  """Pass 1: parses the inputs and spreads the records over work files.

  Args:
    inputs: the input files.
    settings: the dataset settings.
    work_dir: directory of the per-shard work files.
    progress: show a progress line.

  Returns:
    Counts: `read`, `rejected` (by reason), `scanned` (records passed on).

  Raises:
    ValueError: for an input without records.
    OSError, EOFError: for a truncated or corrupt input (from the readers).
  """
  tf.io.gfile.makedirs(work_dir)
  stats = sources.ReadStats("prepare")
  rejected = collections.Counter()
  files = _WorkFiles(work_dir)
  bar = ProgressBar("scan", _input_bytes(inputs), enabled=progress)
  scanned = 0
  try:
    for record in prepare_steps.read_inputs(inputs, settings, stats, rejected):
      split, shard, _ = prepare_steps.assign(record[2], settings)
      files.add(split, shard, _pack(*record))
      scanned += 1
      if not scanned & 0x3FFF:
        bar.advance(stats.read, stats.bytes_read)
    bar.advance(stats.read, stats.bytes_read)
  finally:
    files.close()
    bar.close()
  if stats.read == 0:
    raise ValueError(f"No records in {', '.join(inputs)}.")
  rejected.update(stats.skipped)
  return {"read": stats.read, "rejected": dict(rejected), "scanned": scanned}


# -------------------------------------------------------------------- write


def _read_work_file(path: str) -> Iterator[tuple[int, int, str, str]]:
  if not tf.io.gfile.exists(path):
    return iter(())
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  return _unpack(data)


# ------------------------------------------------------------------ summary


def summarize(
    scan_counts: Mapping[str, Any],
    shards: Sequence[Mapping[str, Any]],
    settings: prepare_steps.Settings,
    inputs: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
  """Adds the shards' statistics up into stats.json's content.

  Raises:
    AssertionError: if read != written + rejected (a bug, never bad input).
  """
  written = {s: 0 for s in settings.splits}
  rejected = collections.Counter({r: 0 for r in prepare_steps.REJECT_REASONS})
  rejected.update(scan_counts["rejected"])
  length_counts = np.zeros(len(prepare_steps.LENGTH_BINS), dtype=np.int64)
  composition = collections.Counter({r: 0 for r in vocabularies.RESIDUES})
  residues, lengths = 0, []
  for shard in shards:
    s = shard["stats"]
    written[shard["split"]] += s["records"]
    rejected[prepare_steps.DUPLICATE_ID] += s["duplicates"]
    length_counts += np.array(s["length_counts"], dtype=np.int64)
    composition.update(s["composition"])
    residues += s["residues"]
    if s["records"]:
      lengths += [s["min_length"], s["max_length"]]
  total_written = sum(written.values())
  total_rejected = sum(rejected.values())
  if scan_counts["read"] != total_written + total_rejected:
    raise AssertionError(
        f"read {scan_counts['read']} != written {total_written} + rejected "
        f"{total_rejected}"
    )
  edges = [*prepare_steps.LENGTH_BINS, None]
  return {
      "format": prepared.FORMAT,
      "inputs": list(inputs),
      "settings": dataclasses.asdict(settings),
      "read": scan_counts["read"],
      "written": written,
      "written_total": total_written,
      "rejected": dict(rejected),
      "rejected_total": total_rejected,
      "length": {
          "min": min(lengths) if lengths else 0,
          "max": max(lengths) if lengths else 0,
          "mean": residues / total_written if total_written else 0.0,
      },
      "length_histogram": [
          {"from": lo, "below": hi, "count": int(c)}
          for lo, hi, c in zip(edges, edges[1:], length_counts)
      ],
      "residue_composition": {
          r: {"count": n, "fraction": n / residues if residues else 0.0}
          for r, n in composition.items()
      },
  }


# --------------------------------------------------------------- the driver


def _describe_inputs(inputs: Sequence[str]) -> list[dict[str, Any]]:
  described = []
  for path in inputs:
    stat = tf.io.gfile.stat(path)
    described.append({
        "path": path,
        "bytes": stat.length,
        "mtime_ns": int(stat.mtime_nsec),
    })
  return described


def _fingerprint(
    settings: prepare_steps.Settings, inputs: Sequence[Mapping[str, Any]]
):
  return {
      "format": prepared.FORMAT,
      "settings": dataclasses.asdict(settings),
      "inputs": list(inputs),
  }


def _claim_output_dir(
    output_dir: str, fingerprint: Mapping[str, Any], overwrite: bool
) -> str:
  """Decides what to do with the output directory.

  Returns:
    `done` (already prepared with these settings and inputs), or `go`.

  Raises:
    FileExistsError: when it holds a different dataset, or other files, and
      `overwrite` is False.
  """
  manifest = prepare_steps.read_json(
      os.path.join(output_dir, prepared.MANIFEST)
  )
  work = prepare_steps.read_json(
      os.path.join(output_dir, prepared.WORK, "settings.json")
  )
  # The manifest goes first: a kill while deleting must not leave one that
  # vouches for half-deleted shards.
  ours = [
      os.path.join(output_dir, n)
      for n in (
          prepared.MANIFEST,
          prepared.STATS,
          prepared.WORK,
          *prepared.SPLITS,
      )
  ]
  if overwrite:
    for path in ours:
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      elif tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
    manifest = work = None
  if manifest is not None:
    if manifest.get("fingerprint") == fingerprint:
      return "done"
    raise FileExistsError(
        f"{output_dir} holds a dataset prepared from other inputs or "
        f"settings (see its {prepared.MANIFEST}); choose another --output_dir "
        "or pass --overwrite."
    )
  if work is not None and work != fingerprint:
    raise FileExistsError(
        f"{output_dir} holds an unfinished preparation of other inputs or "
        "settings; pass --overwrite to start over."
    )
  if work is None and not overwrite and tf.io.gfile.isdir(output_dir):
    if tf.io.gfile.listdir(output_dir):
      raise FileExistsError(
          f"{output_dir} is not empty and holds no preparation of ours; "
          "choose an empty or new --output_dir, or pass --overwrite."
      )
  tf.io.gfile.makedirs(os.path.join(output_dir, prepared.WORK))
  if work is None:
    prepare_steps.write_json(
        os.path.join(output_dir, prepared.WORK, "settings.json"), fingerprint
    )
  return "go"


def prepare(
    inputs: Sequence[str],
    output_dir: str,
    settings: prepare_steps.Settings = prepare_steps.Settings(),
    *,
    overwrite: bool = False,
    progress: bool = True,
    beam_options: Optional[Sequence[str]] = None,
    workers: int = 1,
) -> dict[str, Any]:
  """Prepares `inputs` into `output_dir`; see the module docstring.

  Args:
    inputs: FASTA / CSV / TSV / Parquet / text files, read in this order.
    output_dir: the output directory (local or gs://).
    settings: shards, split fractions, maximum length, columns, salt.
    overwrite: replace a different dataset in `output_dir`.
    progress: show progress lines on stderr.
    beam_options: run as an Apache Beam pipeline with these pipeline options
      (e.g. `["--runner=DirectRunner"]`); None runs on this machine.
    workers: processes writing shards at once (the scan is one process).

  Returns:
    The content of stats.json.

  Raises:
    FileExistsError: see `_claim_output_dir`.
    ValueError: for an input without records, or nothing to write.
    OSError, EOFError: for a truncated or corrupt input.
  """
  if not inputs:
    raise ValueError("No --input given.")
  # One file, one name: `in.fasta`, `./in.fasta` and its absolute path.
  inputs = [p if "://" in p else os.path.abspath(p) for p in inputs]
  if beam_options is not None:
    from ankh3_tasks import prepare_beam  # pylint: disable=g-import-not-at-top

    prepare_beam.check_options(beam_options, output_dir)
  for path in inputs:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"No such input: {path}")
    sources.file_format(path)  # Fails early for an unknown format.
  described = _describe_inputs(inputs)
  fingerprint = _fingerprint(settings, described)
  if _claim_output_dir(output_dir, fingerprint, overwrite) == "done":
    logging.info("%s is already prepared from these inputs.", output_dir)
    return prepare_steps.read_json(os.path.join(output_dir, prepared.STATS))
  start = time.monotonic()
  if beam_options is None:
    scan_counts, shards = _run_here(
        inputs, output_dir, settings, progress, workers
    )
  else:
    scan_counts, shards = prepare_beam.run(
        inputs, output_dir, settings, beam_options
    )
  stats = summarize(scan_counts, shards, settings, described)
  stats["seconds"] = round(time.monotonic() - start, 3)
  for key in ("scan_seconds", "write_seconds"):
    if key in scan_counts:
      stats[key] = scan_counts[key]
  prepare_steps.write_json(os.path.join(output_dir, prepared.STATS), stats)
  if stats["written_total"] == 0:
    raise ValueError(
        f"No record of {', '.join(inputs)} was good enough to write; see "
        f"{os.path.join(output_dir, prepared.STATS)} for the reasons."
    )
  manifest = {
      "format": prepared.FORMAT,
      "fingerprint": fingerprint,
      "files": sorted(
          (
              {k: s[k] for k in ("path", "split", "bytes", "sha256")}
              | {"records": s["stats"]["records"]}
              for s in shards
          ),
          key=lambda s: s["path"],
      ),
      "written": stats["written"],
      "stats": prepared.STATS,
  }
  # Last: a manifest means every file it lists is complete.
  prepare_steps.write_json(
      os.path.join(output_dir, prepared.MANIFEST), manifest
  )
  tf.io.gfile.rmtree(os.path.join(output_dir, prepared.WORK))
  return stats


def _run_here(inputs, output_dir, settings, progress, workers):
  """Both passes on this machine; resumes finished passes and shards."""
  open_files = len(prepare_steps.all_shards(settings))
  if open_files > _MAX_OPEN_WORK_FILES:
    raise ValueError(
        f"{open_files} shards would keep {open_files} work files open; the "
        f"scan allows {_MAX_OPEN_WORK_FILES}. Use fewer shards, or --beam."
    )
  work = os.path.join(output_dir, prepared.WORK)
  scan_path = os.path.join(work, "scan.json")
  scan_counts = prepare_steps.read_json(scan_path)
  buckets = os.path.join(work, "buckets")
  if scan_counts is None:
    if tf.io.gfile.exists(buckets):
      tf.io.gfile.rmtree(buckets)  # An interrupted scan starts over.
    start = time.monotonic()
    scan_counts = scan(inputs, settings, buckets, progress=progress)
    scan_counts["scan_seconds"] = round(time.monotonic() - start, 3)
    prepare_steps.write_json(scan_path, scan_counts)
  else:
    logging.info("Scan already done; writing the remaining shards.")
  done_dir = os.path.join(work, "done")
  tf.io.gfile.makedirs(done_dir)
  entries = {}
  todo = []
  for split, shard in prepare_steps.all_shards(settings):
    entry = prepare_steps.read_json(
        os.path.join(done_dir, f"{split}-{shard:05d}.json")
    )
    if entry is None:
      todo.append((split, shard))
    else:
      entries[split, shard] = entry
  bar = ProgressBar("write", enabled=progress)
  start = time.monotonic()
  written = sum(e["stats"]["records"] for e in entries.values())
  bar.advance(written)
  jobs = [(output_dir, settings, split, shard) for split, shard in todo]
  with contextlib.ExitStack() as stack:
    stack.callback(bar.close)
    if workers > 1 and len(jobs) > 1:
      # Spawned, not forked: TensorFlow's threads do not survive a fork.
      pool = stack.enter_context(
          concurrent.futures.ProcessPoolExecutor(
              max_workers=workers,
              mp_context=multiprocessing.get_context("spawn"),
              initializer=_die_with_parent,
              initargs=(os.getpid(),),
          )
      )
      results = pool.map(_write_shard_job, jobs)
    else:
      results = map(_write_shard_job, jobs)
    for job, entry in zip(jobs, results):
      _mark_done(done_dir, job, entry)
      entries[job[2], job[3]] = entry
      written += entry["stats"]["records"]
      bar.advance(written)
  scan_counts["write_seconds"] = round(time.monotonic() - start, 3)
  return scan_counts, [
      entries[key] for key in prepare_steps.all_shards(settings)
  ]


def _write_shard_job(job) -> dict[str, Any]:
  """Writes one shard from its work file."""
  output_dir, settings, split, shard = job
  records = _read_work_file(
      _WorkFiles(os.path.join(output_dir, prepared.WORK, "buckets")).path(
          split, shard
      )
  )
  return prepare_steps.write_shard(records, settings, output_dir, split, shard)


def _mark_done(done_dir: str, job, entry: Mapping[str, Any]) -> None:
  # Only the parent marks shards done, after the worker has returned.
  _, _, split, shard = job
  prepare_steps.write_json(
      os.path.join(done_dir, f"{split}-{shard:05d}.json"), entry
  )


def _die_with_parent(parent: int) -> None:
  """Makes a write worker exit when the run that spawned it is killed."""
  if sys.platform.startswith("linux"):
    import ctypes  # pylint: disable=g-import-not-at-top
    import signal  # pylint: disable=g-import-not-at-top

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(
        pr_set_pdeathsig, signal.SIGKILL
    )
  # The parent may have died while this worker was starting.
  if os.getppid() != parent:
    os._exit(1)  # pylint: disable=protected-access


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.prepare",
      description=(
          "Prepares protein files (FASTA, CSV/TSV, Parquet) as sharded "
          "TFRecord files per split for the ankh3_uniref50 tasks. Options "
          "not listed here go to Apache Beam with --beam."
      ),
  )
  parser.add_argument(
      "--input",
      action="append",
      required=True,
      help="an input file (repeat for several); local or gs://",
  )
  parser.add_argument("--output_dir", required=True)
  parser.add_argument(
      "--num_shards",
      type=int,
      default=prepare_steps.DEFAULT_NUM_SHARDS,
      help="train shards (default: %(default)s, 4 per host of a 16-host slice)",
  )
  parser.add_argument(
      "--num_eval_shards",
      type=int,
      default=prepare_steps.DEFAULT_NUM_EVAL_SHARDS,
      help="shards per evaluation split",
  )
  parser.add_argument(
      "--validation_fraction",
      type=float,
      default=prepare_steps.DEFAULT_VALIDATION_FRACTION,
      help=(
          "share of ids held out for validation (default: "
          "%(default)s, ~5,900 of UniRef50)"
      ),
  )
  parser.add_argument(
      "--test_fraction",
      type=float,
      default=0.0,
      help="share of ids held out for a test split",
  )
  parser.add_argument(
      "--max_length",
      type=int,
      default=None,
      help="reject longer proteins (default: keep all)",
  )
  parser.add_argument(
      "--salt", default="", help="changes which ids are held out"
  )
  parser.add_argument("--sequence_column", default=None)
  parser.add_argument("--id_column", default=None)
  parser.add_argument(
      "--overwrite",
      action="store_true",
      help="replace a different dataset in --output_dir",
  )
  parser.add_argument(
      "--beam", action="store_true", help="run as an Apache Beam pipeline"
  )
  parser.add_argument(
      "--workers",
      type=int,
      default=min(len(os.sched_getaffinity(0)), 8),
      help=(
          "processes writing shards at once (default: %(default)s, the CPUs "
          "this process may use, at most 8; each takes about 1 GB); the scan "
          "reads the input in one process"
      ),
  )
  parser.add_argument("--no_progress", action="store_true")
  args, beam_args = parser.parse_known_args(argv)
  if beam_args and not args.beam:
    parser.error(f"unknown arguments (Beam options need --beam): {beam_args}")
  std_logging.basicConfig(level=std_logging.INFO)
  logging.set_verbosity(logging.INFO)
  settings = prepare_steps.Settings(
      num_shards=args.num_shards,
      num_eval_shards=args.num_eval_shards,
      validation_fraction=args.validation_fraction,
      test_fraction=args.test_fraction,
      max_length=args.max_length,
      salt=args.salt,
      sequence_column=args.sequence_column,
      id_column=args.id_column,
  )
  stats = prepare(
      args.input,
      args.output_dir,
      settings,
      overwrite=args.overwrite,
      progress=not args.no_progress,
      workers=args.workers,
      beam_options=(beam_args or ["--runner=DirectRunner"])
      if args.beam
      else None,
  )
  print(
      f"read {stats['read']:,}, written {stats['written_total']:,} "
      f"({', '.join(f'{s} {n:,}' for s, n in stats['written'].items())}), "
      f"rejected {stats['rejected_total']:,}"
      + "".join(
          f"; {reason} {n:,}" for reason, n in stats["rejected"].items() if n
      )
      + f"\n{os.path.join(args.output_dir, prepared.MANIFEST)}"
  )
  for split, count in stats["written"].items():
    if count:
      continue
    total = stats["written_total"]
    if split == "train":
      advice = (
          "every protein went to a held-out split; prepare again with a "
          "smaller --validation_fraction (or --test_fraction) --overwrite"
      )
    else:
      fraction = prepared.held_out_fraction(total)
      advice = (
          "t5x.train stops when it evaluates an empty split; prepare again "
          f"with --{split}_fraction={fraction} --overwrite (about "
          f"{round(float(fraction) * total):,} of the {total:,} proteins)"
      )
    print(
        f"warning: split {split!r} holds no proteins: {advice}",
        file=sys.stderr,
    )
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
