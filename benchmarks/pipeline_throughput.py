r"""Measures packed rows per second through an Ankh3 task on one core.

  python benchmarks/pipeline_throughput.py                      # multitask
  python benchmarks/pipeline_throughput.py --task ankh3_sample_denoise \
      --cores 2 --seconds 30 --packing best_fit

The task's examples go through a T5X encoder-decoder feature converter with
packing, as in training: seqio's (`seqio.EncDecFeatureConverter`, greedy in
arrival order) and Ankh3's best fit over a window
(`ankh3_tasks.packing.BestFitEncDecFeatureConverter`), one after the other in
the same run (`--packing` picks one). A row is one packed example of
`--inputs_length` encoder ids and `--targets_length` decoder ids, read in
batches as T5X reads them. For each: rows/s per core, the share of encoder
and target ids filled, and useful (non-padding) encoder ids per second.

Then, on the lengths of the first `--reference_examples` examples of the same
stream, offline in numpy: best fit decreasing over windows of
`--reference_window`, and the lower bound on rows (the most of: all inputs
ids / inputs length, all targets ids / targets length, the examples over
half of the inputs length and those over half of the targets length, each
of which needs a row of its own), both as fills.

Only the process's first `--cores` CPUs are used, and TensorFlow and tf.data
get as many threads.
"""

import argparse
import os
import time


def _throughput(args, converter, lengths):
  """Rows/s, encoder and target fill of `converter` on the task."""
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  provider = seqio.get_mixture_or_task(args.task)
  ds = provider.get_dataset(
      lengths, split=args.split, shuffle=True, seed=0, num_epochs=None
  )
  ds = converter(ds, lengths)
  options = tf.data.Options()
  options.threading.private_threadpool_size = args.cores
  ds = ds.batch(args.batch_size, drop_remainder=True)
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)

  it = ds.as_numpy_iterator()
  for _ in range(args.warmup_batches):
    next(it)
  rows = inputs = targets = 0
  start = time.perf_counter()
  while time.perf_counter() - start < args.seconds:
    batch = next(it)
    rows += args.batch_size
    inputs += int((batch["encoder_input_tokens"] != 0).sum())
    targets += int((batch["decoder_target_tokens"] != 0).sum())
  elapsed = time.perf_counter() - start
  return {
      "rows": rows,
      "seconds": elapsed,
      "encoder_fill": inputs / rows / lengths["inputs"],
      "target_fill": targets / rows / lengths["targets"],
      "encoder_ids_per_s": inputs / elapsed,
  }


def _example_lengths(args, lengths):
  """[n, 2] trimmed ids of the stream's first examples."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  ds = seqio.get_mixture_or_task(args.task).get_dataset(
      lengths, split=args.split, shuffle=True, seed=0, num_epochs=None
  )
  ds = ds.map(lambda x: (tf.size(x["inputs"]), tf.size(x["targets"])))
  sizes = np.array(list(ds.take(args.reference_examples).as_numpy_iterator()))
  return np.minimum(sizes, [lengths["inputs"], lengths["targets"]])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--task", default="ankh3_sample_multitask")
  parser.add_argument("--split", default="train")
  parser.add_argument("--cores", type=int, default=1)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=320)
  parser.add_argument(
      "--seconds", type=float, default=20.0, help="per packing"
  )
  parser.add_argument(
      "--batch_size", type=int, default=64, help="rows per batch, as T5X reads"
  )
  parser.add_argument("--warmup_batches", type=int, default=10)
  parser.add_argument(
      "--packing", choices=("both", "seqio", "best_fit"), default="both"
  )
  parser.add_argument(
      "--window", type=int, default=1024, help="best-fit packing window"
  )
  parser.add_argument("--reference_examples", type=int, default=20480)
  parser.add_argument("--reference_window", type=int, default=1024)
  args = parser.parse_args()

  cpus = sorted(os.sched_getaffinity(0))[: args.cores]
  os.sched_setaffinity(0, cpus)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top,unused-import
  from ankh3_tasks import mixtures
  from ankh3_tasks import packing  # pylint: disable=g-import-not-at-top

  tf.config.threading.set_inter_op_parallelism_threads(args.cores)
  tf.config.threading.set_intra_op_parallelism_threads(args.cores)
  lengths = {"inputs": args.inputs_length, "targets": args.targets_length}
  converters = {
      "seqio": seqio.EncDecFeatureConverter(pack=True),
      "best_fit": packing.BestFitEncDecFeatureConverter(
          pack=True, window=args.window
      ),
  }
  if args.packing != "both":
    converters = {args.packing: converters[args.packing]}
  print(f"task               {args.task} ({args.split})")
  print(f"cores              {len(cpus)}")
  print(f"feature lengths    {lengths}")
  print(
      f"{'packing':<24} {'rows/s/core':>11} {'encoder fill':>12} "
      f"{'target fill':>11} {'encoder ids/s':>13}"
  )
  for name, converter in converters.items():
    r = _throughput(args, converter, lengths)
    label = name if name == "seqio" else f"best_fit (window {args.window})"
    print(
        f"{label:<24} {r['rows'] / r['seconds'] / len(cpus):>11,.0f} "
        f"{r['encoder_fill']:>12.3f} {r['target_fill']:>11.3f} "
        f"{r['encoder_ids_per_s']:>13,.0f}"
    )

  sizes = _example_lengths(args, lengths)
  limit = np.array([args.inputs_length, args.targets_length])
  totals = sizes.sum(axis=0)
  rows = 0
  for start in range(0, len(sizes), args.reference_window):
    window = sizes[start : start + args.reference_window]
    rows += int(packing.best_fit_rows_numpy(window, tuple(limit)).max()) + 1
  # No two examples over half of the same length share a row; one over
  # half the inputs and one over half the targets may.
  bound = max(*(-(-totals // limit)), *((sizes * 2) > limit).sum(axis=0))
  print(f"offline, lengths of the first {len(sizes):,} examples (numpy):")
  for label, n in (
      f"best fit decreasing, window {args.reference_window}",
      rows,
  ), ("lower bound on rows", bound):
    fill = totals / n / limit
    print(
        f"{label:<36} {n:>7,} rows  encoder fill {fill[0]:.3f}  "
        f"target fill {fill[1]:.3f}"
    )


if __name__ == "__main__":
  main()
