"""Tests of the registered tasks and mixtures, and of the inspect command."""

import subprocess
import sys

import numpy as np
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
  vocab = vocabularies.Ankh3Vocabulary()
  assert first == {vocab.token_id(t) for t in (vocabularies.NLU, vocabularies.S2S)}


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


# ------------------------------------------------------------ evaluation


EVAL_LENGTHS = {"inputs": 128, "targets": 80}


def _eval_examples(name, seed=42):
  ds = seqio.get_mixture_or_task(name).get_dataset(
      EVAL_LENGTHS, split="validation", shuffle=False, seed=seed
  )
  return list(ds.as_numpy_iterator())


@pytest.mark.parametrize("dataset", ["sample", "uniref50"])
def test_eval_tasks_and_mixture_are_registered(dataset):
  names = {
      f"ankh3_{dataset}_eval_{kind}"
      for kind in ("denoise_15", "denoise_20", "denoise_30", "complete")
  }
  mixture = seqio.get_mixture_or_task(f"ankh3_{dataset}_eval")
  assert {t.name for t in mixture.tasks} == names
  for task in mixture.tasks:
    assert "train" not in task.splits
    assert task.score_metric_fns == [] and task.metric_objs
  if dataset == "uniref50":
    assert "test" in mixture.tasks[0].splits


@pytest.mark.parametrize("percent", [15, 20, 30])
def test_eval_denoise_masks_its_rate_of_every_protein(percent):
  vocab = vocabularies.Ankh3Vocabulary()
  sentinels = set(vocab.sentinel_ids)
  examples = _eval_examples(f"ankh3_sample_eval_denoise_{percent}")
  assert len(examples) == 300  # The whole validation split.
  for ex in examples:
    inputs, targets = ex["inputs"].tolist(), ex["targets"].tolist()
    assert inputs[0] == vocab.token_id(vocabularies.NLU)
    residues = [t for t in inputs[1:-1] if t not in sentinels]
    masked = [t for t in targets[:-1] if t not in sentinels]
    length = len(residues) + len(masked)
    # As the preprocessor computes it, in float32.
    rounded = int(np.round(np.float32(percent / 100) * np.float32(length)))
    expected = min(max(rounded, 1), max(length - 1, 1))
    assert len(masked) == expected, (length, percent)


def test_eval_masks_are_the_same_for_a_seed_and_new_for_another():
  name = "ankh3_sample_eval_denoise_30"
  first, again = _eval_examples(name), _eval_examples(name)
  other = _eval_examples(name, seed=7)
  assert all((a["targets"] == b["targets"]).all() for a, b in zip(first, again))
  assert any(
      a["targets"].shape != b["targets"].shape
      or (a["targets"] != b["targets"]).any()
      for a, b in zip(first, other)
  )


def test_eval_complete_gives_the_second_half():
  vocab = vocabularies.Ankh3Vocabulary()
  for ex in _eval_examples("ankh3_sample_eval_complete")[:50]:
    inputs, targets = ex["inputs"].tolist(), ex["targets"].tolist()
    assert inputs[0] == vocab.token_id(vocabularies.S2S)
    prefix, rest = inputs[1:-1], targets[:-1]
    assert len(prefix) == (len(prefix) + len(rest)) // 2
    residue_ids = {vocab.token_id(r) for r in vocabularies.RESIDUES}
    assert set(prefix + rest) <= residue_ids


def test_eval_task_names_and_duplicate_rates():
  from ankh3_tasks import tasks  # pylint: disable=g-import-not-at-top

  assert tasks.eval_task_names("p", (0.125, 0.3)) == {
      "denoise_12p5": "p_eval_denoise_12p5",
      "denoise_30": "p_eval_denoise_30",
      "complete": "p_eval_complete",
  }
  with pytest.raises(ValueError, match="denoise_15 twice"):
    tasks.eval_task_names("p", (0.15, 0.15))
