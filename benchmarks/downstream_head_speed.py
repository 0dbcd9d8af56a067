r"""Times the downstream benchmark's ConvBERT head: training and prediction.

  python benchmarks/downstream_head_speed.py                  # D 1536 (Large)
  python benchmarks/downstream_head_speed.py --emb_dim 2560   # XL
  python benchmarks/downstream_head_speed.py --kinds residue --proteins 64

For each task kind, `ankh3_tasks.downstream.train.fit` runs one epoch, at the
paper's settings (batch 1, 16 gradient-accumulation steps, the head of
Table 4), on random embeddings of `--proteins` proteins with lengths drawn
uniformly from `--min_length` to `--max_length`, and then `predict` scores
them. Printed: seconds per protein for training (after a first, compiling
epoch, which is reported apart) and for prediction, and how many proteins
an hour that makes. The data are random: only the time means anything.
"""

import argparse
import time

import numpy as np

from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import kinds
from ankh3_tasks.downstream import train


def _num_outputs(kind):
  """The outputs of the first task of the kind (ssp3: 3 classes), else 1."""
  specs = [s for s in datasets.TASKS.values() if s.kind == kind]
  return specs[0].num_outputs if specs else 1


def _examples(kind, num_outputs, rng, n, dim, low, high):
  examples = []
  for _ in range(n):
    length = int(rng.integers(low, high + 1))
    x = rng.normal(size=(length, dim)).astype(np.float32)
    examples.append((x, kind.random_label(rng, length, num_outputs)))
  return examples


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--emb_dim", type=int, default=1536)
  parser.add_argument("--proteins", type=int, default=128)
  parser.add_argument("--min_length", type=int, default=100)
  parser.add_argument("--max_length", type=int, default=400)
  parser.add_argument("--kinds", default=",".join(kinds.KINDS))
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(
      f"D={args.emb_dim}, {args.proteins} proteins of "
      f"{args.min_length}-{args.max_length} residues, batch 1 x 16"
  )
  for kind in args.kinds.split(","):
    num_outputs = _num_outputs(kind)
    data = _examples(
        kinds.get(kind),
        num_outputs,
        rng,
        args.proteins,
        args.emb_dim,
        args.min_length,
        args.max_length,
    )
    metric = lambda p, y: 0.0
    config = train.TrainConfig(epochs=1, warmup_steps=1)
    # The first fit compiles; the second runs on the compiled steps.
    timings = []
    for _ in range(2):
      begin = time.perf_counter()
      result = train.fit(
          kind,
          num_outputs,
          data,
          data[:2],
          metric_fn=metric,
          train_config=config,
          progress=False,
      )
      timings.append(time.perf_counter() - begin)
    first, seconds = timings
    begin = time.perf_counter()
    train.predict(kind, result.params, data, convbert.HeadConfig())
    predict_seconds = time.perf_counter() - begin
    per_protein = seconds / args.proteins
    print(
        f"{kind:8s} train {per_protein * 1e3:7.1f} ms/protein "
        f"({3600 / per_protein:8.0f} proteins/h; first epoch with "
        f"compilation {first:.1f} s), predict "
        f"{predict_seconds / args.proteins * 1e3:6.1f} ms/protein"
    )


if __name__ == "__main__":
  main()
