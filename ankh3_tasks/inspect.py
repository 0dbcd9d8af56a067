r"""Prints decoded examples of an Ankh3 task or mixture, sentinels visible.

  python -m ankh3_tasks.inspect ankh3_sample_multitask -n 5
  python -m ankh3_tasks.inspect ankh3_sample_denoise --split validation \
      --seed 3 --inputs_length 128

Each example shows its inputs and targets as text (`[NLU]`, `[S2S]` and
`<extra_id_N>` as written) and their lengths in ids, `</s>` included.
"""

import argparse
from collections.abc import Iterator, Sequence
import sys
from typing import Optional

import seqio

from ankh3_tasks import cli
from ankh3_tasks import mixtures  # pylint: disable=unused-import
from ankh3_tasks import preprocessors


def examples(
    name: str,
    *,
    num_examples: int = 5,
    split: str = "train",
    seed: int = 0,
    inputs_length: int = preprocessors.DEFAULT_SEQUENCE_LENGTH,
    targets_length: int = preprocessors.DEFAULT_SEQUENCE_LENGTH,
) -> Iterator[dict[str, object]]:
  """Yields decoded examples of a registered task or mixture.

  Args:
    name: a task or mixture name, e.g. `ankh3_sample_multitask`.
    num_examples: how many.
    split: the split to read.
    seed: seqio's seed; the same seed gives the same examples.
    inputs_length: sequence length of `inputs` (bounds the crop).
    targets_length: sequence length of `targets`.

  Yields:
    Dicts with `inputs` / `targets` (text up to `</s>`), their ids
    (`inputs_ids`, ...) and their tokens, `</s>` included (`inputs_tokens`).
  """
  provider = seqio.get_mixture_or_task(name)
  vocabulary = provider.output_features["inputs"].vocabulary
  dataset = provider.get_dataset(
      {"inputs": inputs_length, "targets": targets_length},
      split=split,
      shuffle=False,
      seed=seed,
  )
  for example in dataset.take(num_examples).as_numpy_iterator():
    decoded = {}
    for key in ("inputs", "targets"):
      ids = example[key].tolist()
      decoded[key] = vocabulary.decode(ids)
      decoded[f"{key}_ids"] = ids
      decoded[f"{key}_tokens"] = [vocabulary.tokens[i] for i in ids]
    yield decoded


def _wrap(tokens: Sequence[str], width: int, indent: str = "  ") -> str:
  """Joins tokens into lines of at most `width` characters, never inside
  a token."""
  lines, line = [], indent
  for token in tokens:
    if len(line) + len(token) > width and line.strip():
      lines.append(line)
      line = indent
    line += token
  lines.append(line)
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.inspect", description=__doc__.split("\n")[0]
  )
  parser.add_argument("task", help="task or mixture name")
  parser.add_argument("-n", "--num_examples", type=int, default=5)
  parser.add_argument("--split", default="train")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
      "--inputs_length", type=int, default=preprocessors.DEFAULT_SEQUENCE_LENGTH
  )
  parser.add_argument(
      "--targets_length",
      type=int,
      default=preprocessors.DEFAULT_SEQUENCE_LENGTH,
  )
  parser.add_argument("--ids", action="store_true", help="print ids too")
  parser.add_argument(
      "--width", type=int, default=100, help="wrap text at this column"
  )
  args = parser.parse_args(argv)
  if (
      args.task
      not in seqio.TaskRegistry.names() | seqio.MixtureRegistry.names()
  ):
    known = sorted(
        n
        for n in seqio.TaskRegistry.names() | seqio.MixtureRegistry.names()
        if n.startswith("ankh3_")
    )
    parser.error(f"unknown task {args.task!r}; Ankh3 tasks: {', '.join(known)}")
  for i, example in enumerate(
      examples(
          args.task,
          num_examples=args.num_examples,
          split=args.split,
          seed=args.seed,
          inputs_length=args.inputs_length,
          targets_length=args.targets_length,
      )
  ):
    print(f"--- example {i}")
    for key in ("inputs", "targets"):
      n = len(example[f"{key}_ids"])
      print(f"{key} ({n} ids):")
      print(_wrap(example[f"{key}_tokens"], args.width))
      if args.ids:
        print(_wrap([f"{i} " for i in example[f"{key}_ids"]], args.width))
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
