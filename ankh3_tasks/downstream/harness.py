"""Runs benchmark tasks on frozen embeddings: seeds, test sets, summaries.

  data = datasets.load_task("ssp3", "bench/")
  store = harness.EmbeddingStore("emb_nlu.npz")
  result = harness.run_task("ssp3", data, store)
  result["summary"]["casp12"]["accuracy"]   # {"mean", "std", "values"}

Embeddings are looked up by sequence, not by record id: `sequence_key`
names each distinct sequence, `write_fasta` writes every distinct sequence of
some tasks under that name, and `python -m ankh3_tasks.embed` on that file
gives the store (`python -m ankh3_tasks.downstream` does both when given a
checkpoint). A sequence shared by two tasks or splits is embedded once.

The baseline beside every result is the same head on one-hot residues:
`harness.run_task("ssp3", data, harness.OneHotStore())`.
"""

from collections.abc import Iterable, Mapping, Sequence
import hashlib
import math
from typing import Any, Optional, Union

import numpy as np
import tensorflow as tf

from ankh3_tasks import vocabularies
from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import formats
from ankh3_tasks.downstream import kinds
from ankh3_tasks.downstream import report
from ankh3_tasks.downstream import train

# Embeddings kept in memory, at most (bytes); the rest is read from the file
# each time it is needed.
DEFAULT_CACHE_BYTES = 16 * 2**30


def sequence_key(sequence: str) -> str:
  """The record id of a sequence in the benchmark's FASTA and embeddings.

  `sequence_key("MKTAYIAK")` -> `"seq_"` + the first 24 hex digits of the
  SHA-256 of the sequence: the same sequence always gets the same key.
  """
  return "seq_" + hashlib.sha256(sequence.encode("ascii")).hexdigest()[:24]


def _all_examples(data: Mapping[str, Any]) -> Iterable[formats.Example]:
  yield from data["train"]
  yield from data["valid"]
  for examples in data["test"].values():
    yield from examples


def write_fasta(tasks_data: Iterable[Mapping[str, Any]], path: str) -> int:
  """Writes each distinct sequence of the tasks once; returns how many."""
  seen = set()
  with tf.io.gfile.GFile(path, "w") as f:
    for data in tasks_data:
      for example in _all_examples(data):
        key = sequence_key(example.sequence)
        if key not in seen:
          seen.add(key)
          f.write(f">{key}\n{example.sequence}\n")
  return len(seen)


class EmbeddingStore:
  """Per-residue embeddings from the embed command's output, by sequence.

  Reads `.npz` (local or `gs://`) lazily, one array per access, and `.h5`
  through h5py; keeps arrays in memory up to `cache_bytes`.
  """

  def __init__(self, path: str, cache_bytes: int = DEFAULT_CACHE_BYTES):
    self.path = path
    if path.endswith(".npz"):
      # Through tf.io.gfile, so that gs:// paths work too.
      self._stream = tf.io.gfile.GFile(path, "rb")
      self._file = np.load(self._stream, allow_pickle=False)
      self._names = set(self._file.files)
    elif path.endswith((".h5", ".hdf5")):
      import h5py  # pylint: disable=g-import-not-at-top

      self._file = h5py.File(path, "r")
      self._names = {
          f"per_residue/{k}" for k in self._file.get("per_residue", {})
      }
    else:
      raise ValueError(f"{path}: embeddings must be an .npz or .h5 file.")
    self._cache = {}
    self._cache_bytes = cache_bytes
    self._cached_bytes = 0
    self._width = None

  def __contains__(self, sequence: str) -> bool:
    return f"per_residue/{sequence_key(sequence)}" in self._names

  def get(self, example: formats.Example) -> np.ndarray:
    """Returns float32 [L, D] for the example's sequence.

    Raises:
      KeyError: if the file has no embedding of the sequence, naming the
        example.
      ValueError: if the embedding has another number of rows than the
        sequence has residues.
    """
    key = sequence_key(example.sequence)
    if key in self._cache:
      return self._cache[key]
    name = f"per_residue/{key}"
    if name not in self._names:
      raise KeyError(
          f"{self.path} has no embedding of {example.id} ({key}, "
          f"{len(example.sequence)} residues): embed the FASTA that "
          "`python -m ankh3_tasks.downstream --write_fasta` writes, with the "
          "default --long=chunk."
      )
    array = np.asarray(self._file[name], dtype=np.float32)
    if array.ndim != 2 or len(array) != len(example.sequence):
      raise ValueError(
          f"{self.path}: the embedding of {example.id} ({key}) has shape "
          f"{array.shape}, but the sequence has {len(example.sequence)} "
          "residues."
      )
    if self._cached_bytes + array.nbytes <= self._cache_bytes:
      self._cache[key] = array
      self._cached_bytes += array.nbytes
    return array

  def close(self) -> None:
    self._file.close()
    if hasattr(self, "_stream"):
      self._stream.close()


class OneHotStore:
  """The no-language-model baseline: each residue as a one-hot vector.

  Stands where an `EmbeddingStore` stands, so the same ConvBERT head is
  trained on the residues alone; what a model's embeddings add is the
  difference. `MKT` -> float32 [3, width], row i one at the column of
  residue i in `vocabularies.RESIDUES` (25 letters: the 20 standard
  residues, X, and the rare U, Z, B, O), the other columns zero; `width`
  is 25 rounded up to a multiple of `multiple` (the head needs D to be a
  multiple of twice its self-attention heads: 28 for the paper's head).
  """

  def __init__(self, multiple: int = 4):
    self.path = report.ONE_HOT
    self._column = {r: i for i, r in enumerate(vocabularies.RESIDUES)}
    self.width = -(-len(self._column) // multiple) * multiple

  def __contains__(self, sequence: str) -> bool:
    return all(residue in self._column for residue in sequence)

  def get(self, example: formats.Example) -> np.ndarray:
    """Returns float32 [L, width] for the example's sequence."""
    columns = [self._column[residue] for residue in example.sequence]
    array = np.zeros((len(columns), self.width), dtype=np.float32)
    array[np.arange(len(columns)), columns] = 1.0
    return array

  def close(self) -> None:
    pass


# What `run_task` reads per-residue inputs from.
Store = Union[EmbeddingStore, OneHotStore]


class Pairs(Sequence):
  """(embedding, label) pairs of examples, each embedding read on access.

  `lengths()` and `labels()` come from the examples, reading no embedding.
  """

  def __init__(
      self,
      examples: Sequence[formats.Example],
      store: Store,
  ):
    self._examples = list(examples)
    self._store = store

  def __len__(self) -> int:
    return len(self._examples)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    example = self._examples[i]
    return self._store.get(example), example.label

  def lengths(self) -> list[int]:
    """The proteins' lengths (`EmbeddingStore.get` checks them)."""
    return [len(e.sequence) for e in self._examples]

  def labels(self) -> list[Any]:
    return [e.label for e in self._examples]


def check_embeddings(data: Mapping[str, Any], store: Store, task: str) -> None:
  """Fails before training if any sequence of the task has no embedding."""
  missing = [e for e in _all_examples(data) if e.sequence not in store]
  if missing:
    shown = ", ".join(e.id for e in missing[:5])
    raise KeyError(
        f"{store.path} lacks the embeddings of {len(missing)} sequences of "
        f"{task} (e.g. {shown}); write them with --write_fasta and embed "
        "that file."
    )


def summarize(values: Sequence[float]) -> dict[str, Any]:
  """Mean and sample standard deviation (n - 1; 0 for one value).

  Seeds whose metric is NaN (nothing to score) are left out; `n` counts
  those kept, `values` keeps them all.
  """
  finite = [v for v in values if not math.isnan(v)]
  summary = {"n": len(finite), "values": list(values)}
  if not finite:
    return {"mean": float("nan"), "std": float("nan"), **summary}
  std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
  return {"mean": float(np.mean(finite)), "std": std, **summary}


def run_task(
    task: str,
    data: Mapping[str, Any],
    store: Store,
    *,
    head_config: Optional[convbert.HeadConfig] = None,
    train_config: Optional[train.TrainConfig] = None,
    progress: bool = True,
) -> dict[str, Any]:
  """Trains a head per seed and scores every test set.

  Args:
    task: a key of `datasets.TASKS`.
    data: `datasets.load_task(task, ...)`.
    store: embeddings of every sequence of `data`.
    head_config: the head (the paper's if None).
    train_config: the training (the paper's if None); one head per seed of
      `train_config.seeds` (7, 0, 42).
    progress: progress bars per epoch.

  Returns:
    `{"task", "seeds": [{"seed", "best_epoch", "best_valid_metric",
    "history", "test": {TEST_SET: {METRIC: value}}}], "summary": {TEST_SET:
    {METRIC: {"mean", "std", "values"}}}, "sizes": {split: proteins}}`.
  """
  spec = datasets.TASKS[task]
  kind = kinds.get(spec.kind)
  head_config = head_config or convbert.HeadConfig()
  train_config = train_config or train.TrainConfig()
  if not train_config.seeds:
    raise ValueError("No seeds: give at least one (the paper: 7, 0, 42).")
  check_embeddings(data, store, task)
  train_pairs = Pairs(data["train"], store)
  valid_pairs = Pairs(data["valid"], store)
  runs = []
  for seed in train_config.seeds:
    fit = train.fit(
        spec.kind,
        spec.num_outputs,
        train_pairs,
        valid_pairs,
        metric_fn=kind.valid_metric,
        head_config=head_config,
        train_config=train_config,
        seed=seed,
        progress=progress,
    )
    test = {}
    for name, examples in data["test"].items():
      pairs = Pairs(examples, store)
      predictions = train.predict(
          spec.kind,
          fit.params,
          pairs,
          head_config,
          batch_size=train_config.eval_batch_size,
          pad_multiple=train_config.pad_multiple,
      )
      test[name] = kind.score(predictions, pairs.labels())
    runs.append({
        "seed": seed,
        "best_epoch": fit.best_epoch,
        "best_valid_metric": fit.best_valid_metric,
        "history": fit.history,
        "test": test,
    })
  summary = {}
  for name in data["test"]:
    summary[name] = {
        metric: summarize([run["test"][name][metric] for run in runs])
        for metric in runs[0]["test"][name]
    }
  sizes = {"train": len(data["train"]), "valid": len(data["valid"])}
  sizes.update({f"test/{k}": len(v) for k, v in data["test"].items()})
  return {
      "task": task,
      "selection_metric": kind.selection_metric,
      "seeds": runs,
      "summary": summary,
      "sizes": sizes,
  }
