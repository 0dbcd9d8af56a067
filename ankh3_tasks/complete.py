"""Sequence completion with `t5x.infer`: FASTA in, FASTA out.

`register_completion_task` registers a seqio task over one protein file whose
examples give the encoder `[S2S]` and the start of each protein (by default
the first half), as in pretraining. `gin/runs/ankh3_infer.gin` calls it from
gin, so `t5x.infer` decodes a continuation of every protein and writes
T5X's JSONL; `python -m ankh3_tasks.complete to_fasta` turns that JSONL into
FASTA. On `MKTAYIAK` with prefix fraction 0.5:

  inputs   [S2S] M K T A </s>
  targets  Y I A K </s>          (the true rest, for scoring; unused by predict)
  output   >id prefix_len=4 generated_len=N
           MKTA + the N residues the model generated
"""

import argparse
import collections
from collections.abc import Iterator, Mapping, Sequence
import dataclasses
import functools
import json
import os
import sys
from typing import Optional

import seqio
import tensorflow as tf

from ankh3_tasks import cli
from ankh3_tasks import preprocessors
from ankh3_tasks import sources
from ankh3_tasks import tasks
from ankh3_tasks import vocabularies

SPLIT = "infer"
DEFAULT_NAME = "ankh3_complete"
DEFAULT_PREFIX_FRACTION = 0.5
# The features `write_inferences_to_file` copies from each example into the
# JSONL (`gin/runs/ankh3_infer.gin` sets them).
RECORD_FIELDS = ("id", "prefix", "continuation")
_FASTA_WIDTH = 60


def _check_fraction(prefix_fraction: float) -> None:
  if not 0.0 < prefix_fraction <= 1.0:
    raise ValueError(
        f"prefix_fraction must be in (0, 1], got {prefix_fraction}."
    )


def prefix_length(length: int, prefix_fraction: float) -> int:
  """floor(fraction * length), kept within 1 .. length: `(8, 0.5)` -> 4."""
  _check_fraction(prefix_fraction)
  return preprocessors.prefix_length(length, prefix_fraction, keep_target=False)


def completion_examples(
    dataset: tf.data.Dataset,
    output_features: Mapping[str, seqio.Feature],
    sequence_length: Optional[Mapping[str, int]] = None,
    *,
    prefix_fraction: float = DEFAULT_PREFIX_FRACTION,
) -> tf.data.Dataset:
  """Splits each protein into the prefix the model sees and the rest.

  `{"id": "p1", "sequence": "MKTAYIAK"}` with fraction 0.5 ->
  `{"id": "p1", "prefix": "MKTA", "continuation": "YIAK",
  "inputs": [S2S] M K T A, "targets": Y I A K}` (ids, without `</s>`).

  The prefix is the first floor(fraction * length) residues, at least 1 and
  at most all of them (fraction 1.0 asks the model to extend the protein).
  A prefix longer than the `inputs` budget (length - 2: 510 for 512) is
  cut at its start, so that the encoder sees the residues next to the
  continuation; `prefix` keeps it whole.

  Args:
    dataset: records with string `id` and `sequence` (cleaned residues).
    output_features: the task's features; `inputs` holds the vocabulary.
    sequence_length: seqio's feature lengths (passed in by seqio).
    prefix_fraction: share of each protein given as the prefix, in (0, 1].

  Returns:
    Examples with `id`, `prefix`, `continuation`, `inputs` and `targets`.
  """
  _check_fraction(prefix_fraction)
  vocabulary = output_features["inputs"].vocabulary
  budget = preprocessors.residue_budget(sequence_length)
  task = tf.constant([vocabulary.token_id(vocabularies.S2S)], tf.int32)

  @seqio.map_over_dataset
  def _split(record):
    sequence = record["sequence"]
    length = tf.strings.length(sequence)
    prefix = preprocessors.prefix_length_tf(
        length, prefix_fraction, keep_target=False
    )
    head = tf.strings.substr(sequence, 0, prefix)
    tail = tf.strings.substr(sequence, prefix, length - prefix)
    seen = tf.strings.substr(
        head, tf.maximum(prefix - budget, 0), tf.minimum(prefix, budget)
    )
    return {
        "id": record["id"],
        "prefix": head,
        "continuation": tail,
        "inputs": tf.concat([task, vocabulary.encode_tf(seen)], axis=0),
        "targets": vocabulary.encode_tf(tail),
    }

  return _split(dataset)


def register_completion_task(
    fasta_path: str,
    *,
    prefix_fraction: float = DEFAULT_PREFIX_FRACTION,
    name: Optional[str] = None,
) -> str:
  """Registers a completion task over one protein file; returns its name.

  Its one split, `infer`, reads the file in order (no shuffling, no random
  step), so `t5x.infer` writes the proteins in file order. Used from gin as
  `MIXTURE_OR_TASK_NAME = @complete.register_completion_task()`.

  Args:
    fasta_path: FASTA (or any format `sources.read_records` reads).
    prefix_fraction: share of each protein given as the prefix, in (0, 1].
    name: task name; `ankh3_complete` by default (registered anew each time).

  Returns:
    The task name.

  Raises:
    FileNotFoundError: when there is no such file.
    ValueError: for a fraction outside (0, 1].
  """
  _check_fraction(prefix_fraction)
  if not tf.io.gfile.exists(fasta_path):
    raise FileNotFoundError(f"No such input: {fasta_path} (INPUT_FASTA).")
  name = name or DEFAULT_NAME
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
      name,
      source=sources.ProteinSource(
          lambda split: [fasta_path], splits=(SPLIT,), random_crop_splits=()
      ),
      output_features=tasks.output_features(),
      preprocessors=[
          functools.partial(
              completion_examples, prefix_fraction=prefix_fraction
          ),
          seqio.preprocessors.append_eos,
      ],
      metric_fns=[],
  )
  return name


# ----------------------------------------------------------- JSONL -> FASTA


@dataclasses.dataclass
class Completion:
  """One protein's completion, read back from T5X's JSONL."""

  id: str
  prefix: str
  generated: str
  # Non-residue tokens the model emitted before `</s>` (dropped from
  # `generated`), e.g. `<extra_id_0>` or `[S2S]`.
  other_tokens: list[str]


def _decode(
    ids: Sequence[int], vocabulary: vocabularies.Ankh3Vocabulary
) -> tuple[str, list[str]]:
  residues, other = [], []
  pad = vocabulary.token_id(vocabularies.PAD)
  for i in ids:
    if i == vocabulary.eos_id:
      break
    if i == pad:
      continue
    token = vocabulary.tokens[i]
    (residues if token in vocabularies.RESIDUES else other).append(token)
  return "".join(residues), other


def prediction_files(predictions: str) -> list[str]:
  """The `*-predict.jsonl-*` files in a directory, or the file itself."""
  if not tf.io.gfile.isdir(predictions):
    return [predictions]
  files = sorted(
      p
      for p in tf.io.gfile.glob(os.path.join(predictions, "*-predict.jsonl-*"))
      if not p.endswith(".COMPLETED")
  )
  if not files:
    raise ValueError(f"No *-predict.jsonl-* files in {predictions}.")
  return files


def read_completions(predictions: str) -> Iterator[Completion]:
  """Reads T5X's JSONL (a file or an INFER_OUTPUT_DIR) as completions.

  Needs the lines `gin/runs/ankh3_infer.gin` has T5X write: the example's
  `id` and `prefix`, and `prediction_tokens`.
  """
  vocabulary = vocabularies.Ankh3Vocabulary()
  for path in prediction_files(predictions):
    with tf.io.gfile.GFile(path) as f:
      for line in f:
        row = json.loads(line)
        inputs = row["inputs"]
        if "prediction_tokens" not in row or "id" not in inputs:
          raise ValueError(
              f"{path}: a line without `prediction_tokens` or `id`; run "
              "t5x.infer with gin/runs/ankh3_infer.gin."
          )
        generated, other = _decode(row["prediction_tokens"], vocabulary)
        yield Completion(inputs["id"], inputs["prefix"], generated, other)


def write_fasta(completions: Sequence[Completion], path: str) -> None:
  """Writes `>id prefix_len=N generated_len=M` and prefix + generated.

  A prediction that held non-residue tokens gets ` dropped_tokens=K` too.
  """
  with tf.io.gfile.GFile(path, "w") as f:
    for c in completions:
      dropped = f" dropped_tokens={len(c.other_tokens)}" * bool(c.other_tokens)
      f.write(
          f">{c.id} prefix_len={len(c.prefix)} "
          f"generated_len={len(c.generated)}{dropped}\n"
      )
      sequence = c.prefix + c.generated
      for start in range(0, len(sequence), _FASTA_WIDTH):
        f.write(sequence[start : start + _FASTA_WIDTH] + "\n")


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.complete",
      description="Tools for sequence completion with t5x.infer.",
  )
  commands = parser.add_subparsers(dest="command", required=True)
  to_fasta = commands.add_parser(
      "to_fasta", help="T5X's predictions (JSONL) -> FASTA"
  )
  to_fasta.add_argument(
      "--predictions", required=True, help="INFER_OUTPUT_DIR or a JSONL file"
  )
  to_fasta.add_argument("--output", required=True, help="FASTA to write")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command line; returns the exit status."""
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  completions = list(read_completions(args.predictions))
  repeated = [
      i for i, n in collections.Counter(c.id for c in completions).items()
      if n > 1
  ]
  if repeated:
    # As `embed` does: one id must name one protein in what is written.
    raise ValueError(
        f"{args.predictions}: {len(repeated)} ids name several completions "
        f"(duplicate ids in the input FASTA): {repeated[:10]}. Make the ids "
        "unique and run t5x.infer again."
    )
  write_fasta(completions, args.output)
  odd = collections.Counter(t for c in completions for t in c.other_tokens)
  with_odd = sum(1 for c in completions if c.other_tokens)
  print(f"wrote {len(completions)} completions to {args.output}")
  if odd:
    listed = ", ".join(f"{t} x{n}" for t, n in odd.most_common(10))
    print(
        f"{with_odd} predictions held non-residue tokens, dropped: {listed}",
        file=sys.stderr,
    )
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
