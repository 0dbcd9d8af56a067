"""`python -m ankh3_tasks.prepare --beam`: the same steps as a Beam pipeline.

The local engine (`prepare.py`) scans the inputs once and writes shards in
worker processes; here the reading of each input and the writing of each
shard are Beam transforms, so Dataflow spreads them over machines. Both run
the steps of `prepare_steps.py` and give the same bytes
(tests/prepare_test.py). `prepare.prepare` calls `run` when
Beam options are given.
"""

import argparse
import collections
import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from ankh3_tasks import prepare_steps
from ankh3_tasks import prepared
from ankh3_tasks import sources


def check_options(beam_options: Sequence[str], output_dir: str) -> None:
  """Fails on options Beam does not know, and on local output off-machine.

  Raises:
    ValueError: naming the unknown options, or the output directory.
  """
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

  # What Beam's PipelineOptions would otherwise drop with a warning.
  parser = argparse.ArgumentParser(add_help=False)
  seen, pending = set(), [pipeline_options.PipelineOptions]
  while pending:
    cls = pending.pop()
    for sub in cls.__subclasses__():
      if sub not in seen:
        seen.add(sub)
        pending.append(sub)
        try:
          sub._add_argparse_args(parser)  # pylint: disable=protected-access
        except argparse.ArgumentError:
          pass  # Registered by another class already.
  _, unknown = parser.parse_known_args(list(beam_options))
  if unknown:
    raise ValueError(
        f"Unknown options: {unknown} (neither prepare's nor Apache Beam's)."
    )
  runner = (
      pipeline_options.PipelineOptions(list(beam_options))
      .view_as(pipeline_options.StandardOptions)
      .runner
  )
  local_runners = (None, "DirectRunner", "direct", "PrismRunner", "prism")
  if runner not in local_runners and "://" not in output_dir:
    raise ValueError(
        f"--output_dir {output_dir} is local, but runner {runner} works on "
        "other machines: use a gs:// directory."
    )


def run(inputs, output_dir, settings, beam_options):
  """The same steps as an Apache Beam pipeline."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

  work = os.path.join(output_dir, prepared.WORK, "beam")
  tf.io.gfile.makedirs(work)
  counts_path = os.path.join(work, "scan.json")
  shards_path = os.path.join(work, "shards.json")

  def read_file(indexed_path):
    file_index, path = indexed_path
    stats = sources.ReadStats(f"prepare {path}")
    rejected = collections.Counter()
    for record in prepare_steps.read_inputs(
        [path], settings, stats, rejected, file_indices=[file_index]
    ):
      split, shard, _ = prepare_steps.assign(record[2], settings)
      yield (split, shard), record
    rejected.update(stats.skipped)
    yield beam.pvalue.TaggedOutput(
        "counts", {"read": stats.read, "rejected": dict(rejected)}
    )

  def write(keyed):
    (split, shard), records = keyed
    return prepare_steps.write_shard(
        records, settings, output_dir, split, shard
    )

  def add_counts(counts):
    total = {"read": 0, "rejected": collections.Counter()}
    for c in counts:
      total["read"] += c["read"]
      total["rejected"].update(c["rejected"])
    return {"read": total["read"], "rejected": dict(total["rejected"])}

  def save(value, path):
    prepare_steps.write_json(path, value)

  options = pipeline_options.PipelineOptions(list(beam_options))
  with beam.Pipeline(options=options) as pipeline:
    read = (
        pipeline
        | "Inputs" >> beam.Create(list(enumerate(inputs)))
        | "Read"
        >> beam.FlatMap(read_file)
        .with_output_types(Any)
        .with_outputs("counts", main="records")
    )
    # Every shard gets a file, empty or not.
    empty = pipeline | "AllShards" >> beam.Create(
        [(key, None) for key in prepare_steps.all_shards(settings)]
    ).with_output_types(Any)
    _ = (
        (read.records, empty)
        | "Merge" >> beam.Flatten()
        | "ByShard" >> beam.GroupByKey()
        | "DropMarkers"
        >> beam.Map(lambda kv: (kv[0], [r for r in kv[1] if r is not None]))
        | "Write" >> beam.Map(write)
        | "Shards" >> beam.combiners.ToList()
        | "SaveShards" >> beam.Map(save, shards_path)
    )
    _ = (
        read.counts
        | "Counts" >> beam.combiners.ToList()
        | "AddCounts" >> beam.Map(add_counts)
        | "SaveCounts" >> beam.Map(save, counts_path)
    )
  scan_counts = prepare_steps.read_json(counts_path)
  if scan_counts["read"] == 0:
    raise ValueError(f"No records in {', '.join(inputs)}.")
  return scan_counts, prepare_steps.read_json(shards_path)
