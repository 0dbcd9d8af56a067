r"""Measures packed 512-token rows per second through an Ankh3 task on one core.

  python benchmarks/pipeline_throughput.py                      # multitask
  python benchmarks/pipeline_throughput.py --task ankh3_sample_denoise \
      --cores 2 --seconds 30

The task's examples go through T5X's encoder-decoder feature converter
(seqio.EncDecFeatureConverter with packing), as in training; a row is one
packed example of `--inputs_length` encoder ids, read in batches as T5X
reads them. Only the process's first
`--cores` CPUs are used, and TensorFlow and tf.data get as many threads.
"""

import argparse
import os
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--task", default="ankh3_sample_multitask")
  parser.add_argument("--split", default="train")
  parser.add_argument("--cores", type=int, default=1)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=320)
  parser.add_argument("--seconds", type=float, default=20.0)
  parser.add_argument(
      "--batch_size", type=int, default=64, help="rows per batch, as T5X reads"
  )
  parser.add_argument("--warmup_batches", type=int, default=10)
  args = parser.parse_args()

  cpus = sorted(os.sched_getaffinity(0))[: args.cores]
  os.sched_setaffinity(0, cpus)
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top,unused-import
  from ankh3_tasks import mixtures

  tf.config.threading.set_inter_op_parallelism_threads(args.cores)
  tf.config.threading.set_intra_op_parallelism_threads(args.cores)
  lengths = {"inputs": args.inputs_length, "targets": args.targets_length}
  provider = seqio.get_mixture_or_task(args.task)
  ds = provider.get_dataset(
      lengths, split=args.split, shuffle=True, seed=0, num_epochs=None
  )
  ds = seqio.EncDecFeatureConverter(pack=True)(ds, lengths)
  options = tf.data.Options()
  options.threading.private_threadpool_size = args.cores
  ds = ds.batch(args.batch_size, drop_remainder=True)
  ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)

  it = ds.as_numpy_iterator()
  for _ in range(args.warmup_batches):
    next(it)
  rows = tokens = 0
  start = time.perf_counter()
  while time.perf_counter() - start < args.seconds:
    batch = next(it)
    rows += args.batch_size
    tokens += int((batch["encoder_input_tokens"] != 0).sum())
  elapsed = time.perf_counter() - start
  print(f"task               {args.task} ({args.split})")
  print(f"cores              {len(cpus)}")
  print(f"feature lengths    {lengths}")
  print(f"rows               {rows} in {elapsed:.1f} s")
  print(f"rows/s             {rows / elapsed:.0f}")
  print(f"rows/s/core        {rows / elapsed / len(cpus):.0f}")
  print(f"encoder fill       {tokens / rows / args.inputs_length:.1%}")


if __name__ == "__main__":
  main()
