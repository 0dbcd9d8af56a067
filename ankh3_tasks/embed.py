r"""Per-residue and mean-pooled embeddings from the Ankh3 encoder.

  python -m ankh3_tasks.embed --checkpoint=MODEL_DIR/checkpoint_N \
    --gin_file=gin/models/ankh3_large.gin --input=proteins.fasta \
    --output=emb.npz [--task_token=NLU|S2S] [--batch_size=8] \
    [--max_length=512] [--long=chunk|refuse] [--overlap=64] [--pooled_only] \
    [--dtype=float32|float16]

Each protein is read as `[task token] residues </s>`, run through the encoder
(no dropout, in the dtype the gin file gives the network) and the outputs of
the task token and `</s>` are sliced off: one row per residue. The mean is
taken over those rows.

Proteins are sorted by length and batched; a batch is padded to its longest
member rounded up to a multiple of `pad_multiple` (64), and to `batch_size`
rows, so the encoder is compiled once per padded length. Padding is masked
out by the encoder: a protein's embedding does not depend on its batch.

Longer than `max_length - 2` residues (`long="chunk"`, the default): the
protein is cut into windows of `max_length - 2` residues, each overlapping
the next by at least `overlap` residues (the last window ends at the last
residue), and each window is embedded as a protein of its own, with its own
task token and `</s>`. Every residue takes its row from the window where it is
most central: inside an overlap, the left half comes from the left window
and the right half from the right window. Rows of residues covered by one
window only are therefore that window's rows exactly. `long="refuse"` skips
such proteins instead; the CLI reports each by id and length.

Output (`--output`):

  .npz  keys `per_residue/<key>` (float [residues, emb_dim]), `mean/<key>`
        (float [emb_dim]), and `ids`, `keys`, `lengths`: the record ids, their
        keys and residue counts, in input order.
  .h5   the same, with `per_residue` and `mean` as HDF5 groups (needs h5py).

A key is the record id with every character outside `A-Z a-z 0-9 _ . | : + =
-` replaced by `_` (`sp|P69905|HBA_HUMAN` stays, `a/b` becomes `a_b`). Two
records with the same key stop the run before anything is embedded, with an
error naming them.
"""

import argparse
import collections
from collections.abc import Iterator, Sequence
import functools
import os
import re
import sys
import time
from typing import Any, Optional
import zipfile

from absl import logging
import jax
import numpy as np

from ankh3_tasks import checkpoints
from ankh3_tasks import cli
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

CHUNK = "chunk"
REFUSE = "refuse"
TOO_LONG = "longer than max_length - 2"
_TASK_TOKENS = {"NLU": vocabularies.NLU, "S2S": vocabularies.S2S}
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.|:+=-]")
# Records embedded (and written) per group: enough to batch by length, few
# enough that a group's per-residue rows fit in memory.
_GROUP = 4096


def _task_token(task_token: str) -> str:
  name = task_token.strip("[]").upper()
  if name not in _TASK_TOKENS:
    raise ValueError(f"task_token must be NLU or S2S, got {task_token!r}.")
  return _TASK_TOKENS[name]


def windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
  """Returns the [start, end) windows that cover `length` residues.

  `windows(10, 4, 1)` -> `[(0, 4), (3, 7), (6, 10)]`: `window` residues
  each, consecutive windows overlapping by at least `overlap`, the last one
  ending at `length`.

  Args:
    length: residues of the protein.
    window: residues per window (`max_length - 2`).
    overlap: least residues shared by consecutive windows.

  Returns:
    The windows, left to right; one window `(0, length)` when it fits.

  Raises:
    ValueError: if `overlap` is not in [0, window).
  """
  if not 0 <= overlap < window:
    raise ValueError(
        f"overlap must be in [0, window): overlap={overlap}, window={window}."
    )
  if length <= window:
    return [(0, length)]
  stride = window - overlap
  starts = list(range(0, length - window, stride)) + [length - window]
  return [(s, s + window) for s in starts]


def _pieces(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
  """The [start, end) residues each window contributes: overlaps halved."""
  cuts = [0]
  for (_, left_end), (right_start, _) in zip(spans, spans[1:]):
    cuts.append((right_start + left_end) // 2)
  cuts.append(spans[-1][1])
  return list(zip(cuts, cuts[1:]))


@functools.partial(jax.jit, static_argnums=0)
def _encode(module, params, tokens):
  return module.apply(
      {"params": params}, tokens, method=module.encode, enable_dropout=False
  )


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def embed_sequences(
    model: Any,
    params: Any,
    sequences: Sequence[str],
    *,
    task_token: str = "NLU",
    batch_size: int = 8,
    max_length: int = 512,
    long: str = CHUNK,
    overlap: int = 64,
    pad_multiple: int = 64,
    vocabulary: Optional[vocabularies.Ankh3Vocabulary] = None,
) -> list[np.ndarray]:
  """Returns the per-residue encoder embeddings of proteins.

  `embed_sequences(model, params, ["MKTAYIAK"])` -> `[array of shape (8,
  emb_dim)]`: the encoder outputs of `[NLU] M K T A Y I A K </s>` without
  the first and last rows. See the module docstring for batching and for
  proteins longer than `max_length - 2`.

  Args:
    model: a `t5x.models.EncoderDecoderModel` of the Ankh3 network (see
      `load_model`).
    params: its parameters (`checkpoints.load_params`, or
      `model.get_initial_variables(...)["params"]`).
    sequences: proteins, residue letters only (case and whitespace are
      ignored, one terminal `*` is dropped).
    task_token: `NLU` or `S2S`.
    batch_size: rows per encoder call.
    max_length: encoder ids per protein or window, task token and `</s>`
      included.
    long: `chunk` or `refuse` (a `ValueError`) for longer proteins.
    overlap: least residues shared by consecutive windows (`chunk`).
    pad_multiple: batches are padded to a multiple of this length.
    vocabulary: defaults to `model.input_vocabulary`.

  Returns:
    One float32 array [residues, emb_dim] per sequence, in input order.

  Raises:
    ValueError: for a sequence that is not a protein, a bad setting, or a
      protein too long under `long="refuse"` (naming its index and length).
  """
  token = _task_token(task_token)
  if long not in (CHUNK, REFUSE):
    raise ValueError(f"long must be {CHUNK!r} or {REFUSE!r}, got {long!r}.")
  if max_length < 3 or batch_size < 1 or pad_multiple < 1:
    raise ValueError(
        "Need max_length >= 3, batch_size >= 1, pad_multiple >= 1; got "
        f"{max_length}, {batch_size}, {pad_multiple}."
    )
  vocab = vocabulary or model.input_vocabulary
  window = max_length - 2
  if long == CHUNK and not 0 <= overlap < window:
    raise ValueError(
        f"overlap must be in [0, max_length - 2): overlap={overlap}, "
        f"max_length - 2={window}."
    )
  prefix, eos = vocab.token_id(token), vocab.eos_id
  # Windows of every protein: (protein index, residue ids).
  jobs = []
  plans = []
  for i, raw in enumerate(sequences):
    sequence, reason, detail = sources.clean_sequence(raw)
    if reason:
      raise ValueError(f"Sequence {i}: {reason} {detail}".rstrip() + ".")
    if len(sequence) > window and long == REFUSE:
      raise ValueError(
          f"Sequence {i} has {len(sequence)} residues, more than max_length "
          f"- 2 = {window}."
      )
    ids = vocab.encode(sequence)
    spans = windows(len(ids), window, overlap if long == CHUNK else 0)
    plans.append(spans)
    jobs += [(i, [prefix, *ids[s:e], eos]) for s, e in spans]
  order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1]))
  outputs = [None] * len(jobs)
  for b in range(0, len(order), batch_size):
    members = order[b : b + batch_size]
    width = _round_up(max(len(jobs[j][1]) for j in members), pad_multiple)
    tokens = np.zeros((batch_size, width), np.int32)
    for row, j in enumerate(members):
      tokens[row, : len(jobs[j][1])] = jobs[j][1]
    encoded = np.asarray(_encode(model.module, params, tokens), np.float32)
    for row, j in enumerate(members):
      outputs[j] = encoded[row, 1 : len(jobs[j][1]) - 1]
  results = []
  j = 0
  for spans in plans:
    parts = []
    for (start, _), (lo, hi) in zip(spans, _pieces(spans)):
      parts.append(outputs[j][lo - start : hi - start])
      j += 1
    results.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
  return results


# The gin model loader, here too for notebooks that embed.
load_model = checkpoints.load_model


def load_checkpoint(
    checkpoint: str, gin_file: str, search_paths: Sequence[str] = ()
) -> tuple[Any, Any]:
  """Returns the gin file's model and the checkpoint's parameters.

  The commands that run a checkpoint (`embed`, `score`) load it here.

  Args:
    checkpoint: a `checkpoint_N` directory written by `t5x.train`.
    gin_file: the model gin file the checkpoint was trained with.
    search_paths: extra gin search paths.

  Returns:
    (`t5x.models.EncoderDecoderModel`, parameter tree of numpy arrays).

  Raises:
    ValueError: naming the first size where the gin model and the
      checkpoint differ.
  """
  model = load_model(gin_file, list(search_paths))
  params = checkpoints.load_params(checkpoint)
  config = model.module.config
  checkpoints.check_config(
      config,
      checkpoints.params_config(params, config.relative_attention_max_distance),
  )
  return model, params


def safe_key(record_id: str) -> str:
  """Returns the output key of a record id: `a/b c` -> `a_b_c`."""
  return _UNSAFE_RE.sub("_", record_id) or "_"


class _NpzWriter:
  """Writes arrays one by one into an uncompressed `.npz` (as np.savez)."""

  def __init__(self, path: str):
    self._zip = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True)

  def write(self, name: str, array: np.ndarray) -> None:
    with self._zip.open(name + ".npy", "w", force_zip64=True) as f:
      np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

  def close(self) -> None:
    self._zip.close()


class _H5Writer:
  """Writes arrays into an HDF5 file; `a/b` is dataset `b` of group `a`."""

  def __init__(self, path: str):
    import h5py  # pylint: disable=g-import-not-at-top

    self._file = h5py.File(path, "w")

  def write(self, name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "U":
      array = array.astype(object)
      import h5py  # pylint: disable=g-import-not-at-top

      self._file.create_dataset(
          name, data=array, dtype=h5py.string_dtype("utf-8")
      )
    else:
      self._file.create_dataset(name, data=array)

  def close(self) -> None:
    self._file.close()


def _writer_class(path: str) -> type:
  if path.endswith(".npz"):
    return _NpzWriter
  if path.endswith((".h5", ".hdf5")):
    return _H5Writer
  raise ValueError(f"{path}: the output must end in .npz, .h5 or .hdf5.")


def _groups(items: list, size: int) -> Iterator[list]:
  for start in range(0, len(items), size):
    yield items[start : start + size]


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.embed",
      description="Embeds proteins with the Ankh3 encoder.",
  )
  parser.add_argument("--checkpoint", required=True, help="checkpoint_N dir")
  parser.add_argument("--gin_file", required=True, help="model gin file")
  parser.add_argument("--gin_search_paths", default="", help="comma-separated")
  parser.add_argument("--input", required=True, help="FASTA, CSV, TSV, ...")
  parser.add_argument("--output", required=True, help=".npz or .h5")
  parser.add_argument("--task_token", default="NLU", choices=("NLU", "S2S"))
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--max_length", type=int, default=512)
  parser.add_argument("--long", default=CHUNK, choices=(CHUNK, REFUSE))
  parser.add_argument("--overlap", type=int, default=64)
  parser.add_argument("--pad_multiple", type=int, default=64)
  parser.add_argument("--pooled_only", action="store_true")
  parser.add_argument(
      "--dtype", default="float32", choices=("float32", "float16")
  )
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command line; returns the exit status."""
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  writer_class = _writer_class(args.output)  # Checked before any work.
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  stats = sources.ReadStats(os.path.basename(args.input))
  records = list(sources.read_records(args.input, stats))
  by_key = collections.defaultdict(list)
  for record_id, _ in records:
    by_key[safe_key(record_id)].append(record_id)
  clashes = {k: v for k, v in by_key.items() if len(v) > 1}
  if clashes:
    shown = "; ".join(f"{k}: {v}" for k, v in list(clashes.items())[:10])
    raise ValueError(
        f"{args.input}: {len(clashes)} output keys are shared by several "
        f"records (duplicate ids): {shown}. Make the ids unique."
    )
  refused = []
  if args.long == REFUSE:
    window = args.max_length - 2
    kept = []
    for record_id, sequence in records:
      if len(sequence) > window:
        refused.append((record_id, len(sequence)))
        logging.warning(
            "Refused %r: %d residues, more than max_length - 2 = %d.",
            record_id,
            len(sequence),
            window,
        )
      else:
        kept.append((record_id, sequence))
    records = kept

  model, params = load_checkpoint(
      args.checkpoint,
      args.gin_file,
      [p for p in args.gin_search_paths.split(",") if p],
  )
  writer = writer_class(args.output)
  residues = 0
  begin = time.time()
  try:
    for group in _groups(records, _GROUP):
      per_residue = embed_sequences(
          model,
          params,
          [s for _, s in group],
          task_token=args.task_token,
          batch_size=args.batch_size,
          max_length=args.max_length,
          long=args.long,
          overlap=args.overlap,
          pad_multiple=args.pad_multiple,
      )
      for (record_id, _), rows in zip(group, per_residue):
        key = safe_key(record_id)
        residues += len(rows)
        if not args.pooled_only:
          writer.write(f"per_residue/{key}", rows.astype(args.dtype))
        writer.write(f"mean/{key}", rows.mean(axis=0).astype(args.dtype))
    writer.write("ids", np.array([r for r, _ in records], dtype=str))
    writer.write("keys", np.array([safe_key(r) for r, _ in records], str))
    writer.write("lengths", np.array([len(s) for _, s in records], np.int64))
  finally:
    writer.close()
  seconds = time.time() - begin
  print(stats.summary())
  if refused:
    shown = ", ".join(f"{r} ({n} residues)" for r, n in refused[:10])
    more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
    print(
        f"refused {len(refused)} ({TOO_LONG} = {args.max_length - 2}): "
        f"{shown}{more}"
    )
  print(
      f"embedded {len(records)} proteins ({residues} residues) in "
      f"{seconds:.1f} s into {args.output}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
