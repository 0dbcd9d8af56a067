"""Tests of the registered tasks and mixtures, and of the inspect command."""

import subprocess
import sys

import pytest
import seqio
import tensorflow as tf

from ankh3_tasks import inspect as inspect_lib
from ankh3_tasks import mixtures  # pylint: disable=unused-import
from ankh3_tasks import vocabularies

LENGTHS = {"inputs": 512, "targets": 512}


@pytest.mark.parametrize("dataset", ["sample", "uniref50"])
def test_tasks_and_mixture_are_registered(dataset):
  for kind in ("denoise", "complete", "multitask"):
    task = seqio.get_mixture_or_task(f"ankh3_{dataset}_{kind}")
    assert set(task.splits) == {"train", "validation"}
    assert set(task.output_features) == {"inputs", "targets"}
    assert task.output_features["inputs"].vocabulary == (
        vocabularies.Ankh3Vocabulary()
    )
  mixture = seqio.get_mixture_or_task(f"ankh3_{dataset}_mixture")
  assert sorted(t.name for t in mixture.tasks) == [
      f"ankh3_{dataset}_complete",
      f"ankh3_{dataset}_denoise",
  ]


def test_sample_reads_whole_and_fits_the_paper_lengths():
  task = seqio.get_mixture_or_task("ankh3_sample_multitask")
  for split, count in (("train", 3000), ("validation", 300)):
    lengths = []
    for ex in task.get_dataset(
        LENGTHS, split=split, shuffle=False, seed=0
    ).as_numpy_iterator():
      assert len(ex["inputs"]) <= 512 and len(ex["targets"]) <= 512
      assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
      lengths.append(len(ex["inputs"]))
    assert len(lengths) == count
  raw = task.source.get_dataset("validation", shuffle=False)
  sizes = [len(r["sequence"]) for r in raw.as_numpy_iterator()]
  assert min(sizes) >= 30 and max(sizes) <= 1500


def test_mixture_yields_both_objectives():
  ds = seqio.get_mixture_or_task("ankh3_sample_mixture").get_dataset(
      LENGTHS, split="train", shuffle=False, seed=0, num_epochs=1
  )
  first = {ex["inputs"][0] for ex in ds.take(200).as_numpy_iterator()}
  assert first == {28, 29}


def test_inspect_examples_show_sentinels_and_are_repeatable():
  a = list(inspect_lib.examples("ankh3_sample_denoise", num_examples=3, seed=4))
  b = list(inspect_lib.examples("ankh3_sample_denoise", num_examples=3, seed=4))
  assert a == b
  assert a[0]["inputs"].startswith("[NLU]") and "<extra_id_0>" in a[0]["inputs"]
  assert a[0]["targets"].startswith("<extra_id_0>")
  assert a[0]["inputs_tokens"][-1] == "</s>"


def test_inspect_command_line():
  out = subprocess.run(
      [
          sys.executable,
          "-m",
          "ankh3_tasks.inspect",
          "ankh3_sample_multitask",
          "-n",
          "4",
          "--split",
          "validation",
          "--inputs_length",
          "64",
      ],
      check=True,
      capture_output=True,
      text=True,
  ).stdout
  assert out.count("--- example") == 4
  assert "inputs (" in out and "targets (" in out and "</s>" in out
  assert (
      max(
          int(line.split("(")[1].split()[0])
          for line in out.splitlines()
          if line.startswith("inputs (")
      )
      <= 64
  )


def test_inspect_unknown_task_names_the_known_ones():
  result = subprocess.run(
      [sys.executable, "-m", "ankh3_tasks.inspect", "nope"],
      capture_output=True,
      text=True,
  )
  assert result.returncode == 2
  assert "unknown task 'nope'" in result.stderr
  assert "ankh3_sample_multitask" in result.stderr


def test_task_dataset_position_can_be_checkpointed(tmp_path):
  # T5X saves the input pipeline with tf.train.Checkpoint (SAVE_DATASET);
  # a stateful op anywhere in the task (such as a lookup table) breaks it.
  task = seqio.get_mixture_or_task("ankh3_sample_multitask")
  ds = task.get_dataset(
      {"inputs": 128, "targets": 80}, split="train", shuffle=True, seed=3
  )
  iterator = iter(ds)
  for _ in range(5):
    next(iterator)
  checkpoint = tf.train.Checkpoint(iterator=iterator)
  path = checkpoint.save(str(tmp_path / "ds"))
  expected = [next(iterator)["inputs"].numpy().tolist() for _ in range(3)]

  restored = iter(
      task.get_dataset(
          {"inputs": 128, "targets": 80}, split="train", shuffle=True, seed=3
      )
  )
  tf.train.Checkpoint(iterator=restored).restore(path)
  assert [next(restored)["inputs"].numpy().tolist() for _ in range(3)] == (
      expected
  )
