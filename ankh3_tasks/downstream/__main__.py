r"""The paper's downstream benchmark on frozen embeddings, from the shell.

From a checkpoint (embeds every sequence of the tasks first; needs T5X):

  python -m ankh3_tasks.downstream --tasks=all --data_dir=bench/ \
    --checkpoint=MODEL_DIR/checkpoint_N --gin_file=gin/models/ankh3_large.gin \
    --task_tokens=NLU,S2S --output_dir=results/

From embeddings the embed command wrote (`LABEL=PATH`, one per setting):

  python -m ankh3_tasks.downstream --tasks=ssp3 --data_dir=bench/ \
    --write_fasta=ssp.fasta          # every distinct sequence, once
  python -m ankh3_tasks.embed --checkpoint=... --gin_file=... \
    --input=ssp.fasta --output=nlu.npz --task_token=NLU
  python -m ankh3_tasks.downstream --tasks=ssp3 --data_dir=bench/ \
    --embeddings=NLU=nlu.npz --output_dir=results/

Beside every setting the same head is trained on one-hot residues (no
language model), so the table says what the embeddings add; `--no_baseline`
leaves it out.

Writes to `--output_dir`: `results.md` (the table, in the layout of the
paper's Table 5: ours, the one-hot baseline, ours minus the baseline, and
published numbers beside them), `results.json` (the
table, every seed's history and test metrics, and the settings),
`learning_curves.png`, and `embeddings_<TOKEN>.npz` when it embedded.
Every setting the paper gives (Ankh3, Table 4) is a flag with its value as
default; the reference code's other settings are fields of
`train.TrainConfig` and `convbert.HeadConfig`. `--data_dir` holds the files as
`ankh3_tasks/downstream/datasets.py` `DEFAULT_FILES` names them, or as a
JSON file given to `--files` says (`{"ssp3": {"train": PATH, "valid": PATH or
null, "test": {NAME: PATH}}, ...}`, paths relative to `--data_dir`); see
docs/downstream.md.
"""

import argparse
from collections.abc import Mapping, Sequence
import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional

import tensorflow as tf

from ankh3_tasks.downstream import convbert
from ankh3_tasks.downstream import datasets
from ankh3_tasks.downstream import harness
from ankh3_tasks.downstream import report
from ankh3_tasks.downstream import train


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(x) for x in text.split(",") if x.strip())


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m ankh3_tasks.downstream",
      description=(
          "Trains ConvBERT heads on frozen Ankh3 embeddings and scores the "
          "paper's downstream tasks."
      ),
  )
  parser.add_argument(
      "--tasks",
      default="all",
      help=f"comma-separated, of {sorted(datasets.TASKS)}, or all",
  )
  parser.add_argument("--data_dir", required=True)
  parser.add_argument(
      "--files",
      help=(
          "JSON file: per task, its files under --data_dir (shaped like "
          "datasets.DEFAULT_FILES); the DEFAULT_FILES layout if not given"
      ),
  )
  parser.add_argument("--output_dir", help="required unless --write_fasta")
  parser.add_argument(
      "--write_fasta",
      help="write the tasks' distinct sequences to this FASTA and stop",
  )
  source = parser.add_argument_group("embeddings")
  source.add_argument(
      "--embeddings",
      action="append",
      default=[],
      help="LABEL=PATH (.npz/.h5 of the embed command); repeat per setting",
  )
  source.add_argument("--checkpoint", help="embed with this checkpoint")
  source.add_argument("--gin_file", help="model gin file (with --checkpoint)")
  source.add_argument("--gin_search_paths", default="")
  source.add_argument("--task_tokens", default="NLU,S2S")
  source.add_argument("--embed_batch_size", type=int, default=8)
  source.add_argument("--max_length", type=int, default=512)
  parser.add_argument("--model_name", default="ours", help="table label")
  parser.add_argument(
      "--no_baseline",
      action="store_true",
      help=(
          "skip the one-hot baseline (the same head on one-hot residues, "
          "run beside every setting by default)"
      ),
  )

  head = parser.add_argument_group("head (paper: Table 4)")
  defaults = convbert.HeadConfig()
  head.add_argument("--num_layers", type=int, default=defaults.num_layers)
  head.add_argument("--num_heads", type=int, default=defaults.num_heads)
  head.add_argument(
      "--ffn_ratio",
      type=float,
      default=defaults.ffn_ratio,
      help="feed-forward dim / embedding dim",
  )
  head.add_argument("--dropout", type=float, default=defaults.dropout)
  head.add_argument("--kernel_size", type=int, default=defaults.kernel_size)
  head.add_argument(
      "--pooling", default=defaults.pooling, choices=("max", "avg")
  )
  training = parser.add_argument_group("training (paper: Table 4)")
  t = train.TrainConfig()
  training.add_argument("--learning_rate", type=float, default=t.learning_rate)
  training.add_argument("--warmup_steps", type=int, default=t.warmup_steps)
  training.add_argument("--epochs", type=int, default=t.epochs)
  training.add_argument("--batch_size", type=int, default=t.batch_size)
  training.add_argument(
      "--grad_accumulation", type=int, default=t.grad_accumulation
  )
  training.add_argument("--weight_decay", type=float, default=t.weight_decay)
  training.add_argument(
      "--seeds", type=_ints, default=t.seeds, help="comma-separated"
  )
  parser.add_argument(
      "--published_models",
      default=",".join(report.DEFAULT_PUBLISHED),
      help="published columns (comma-separated model names, or all)",
  )
  parser.add_argument("--no_progress", action="store_true")
  args = parser.parse_args(argv)
  if not args.write_fasta and not args.output_dir:
    parser.error("--output_dir is required (or --write_fasta).")
  if not args.write_fasta and bool(args.embeddings) == bool(args.checkpoint):
    parser.error("give --embeddings or --checkpoint (with --gin_file).")
  if args.checkpoint and not args.gin_file:
    parser.error("--checkpoint needs --gin_file.")
  return args


def _task_names(text: str) -> list[str]:
  names = sorted(datasets.TASKS) if text == "all" else text.split(",")
  unknown = [n for n in names if n not in datasets.TASKS]
  if unknown:
    raise ValueError(
        f"Unknown tasks {unknown}; tasks: {sorted(datasets.TASKS)} or all."
    )
  return names


def _layouts(args: argparse.Namespace) -> dict[str, Any]:
  """`--files` as task -> layout (empty: the default layouts)."""
  if not args.files:
    return {}
  with tf.io.gfile.GFile(args.files) as f:
    try:
      layouts = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"--files {args.files}: not valid JSON: {e}") from None
  unknown = sorted(set(layouts) - set(datasets.TASKS))
  if unknown:
    raise ValueError(
        f"--files {args.files}: unknown tasks {unknown}; tasks: "
        f"{sorted(datasets.TASKS)}."
    )
  return layouts


def _load(
    name: str, data_dir: str, layouts: Mapping[str, Any]
) -> dict[str, Any]:
  splits = datasets.load_task(name, data_dir, layouts.get(name))
  sizes = ", ".join(
      [f"train {len(splits['train'])}", f"valid {len(splits['valid'])}"]
      + [f"{k} {len(v)}" for k, v in splits["test"].items()]
  )
  print(f"{name}: {sizes}")
  return splits


def _write_fasta(
    names: Sequence[str],
    data_dir: str,
    layouts: Mapping[str, Any],
    path: str,
) -> int:
  """Writes the tasks' distinct sequences, reading one task at a time."""
  return harness.write_fasta((_load(n, data_dir, layouts) for n in names), path)


def _embedding_files(items: Sequence[str]) -> dict[str, str]:
  """`--embeddings` as setting label -> path; `nlu.npz` alone is `nlu`."""
  files = {}
  for item in items:
    label, sep, path = item.partition("=")
    if not sep:
      label, path = os.path.splitext(os.path.basename(item))[0], item
    files[label] = path
  return files


def _settings(args: argparse.Namespace, names: Sequence[str]) -> dict[str, str]:
  """Setting label -> embeddings file, embedding first if needed."""
  if args.embeddings:
    return _embedding_files(args.embeddings)
  from ankh3_tasks import embed  # pylint: disable=g-import-not-at-top

  fasta = os.path.join(args.output_dir, "sequences.fasta")
  count = _write_fasta(names, args.data_dir, _layouts(args), fasta)
  print(f"embedding {count} distinct sequences")
  settings = {}
  for token in args.task_tokens.split(","):
    path = os.path.join(args.output_dir, f"embeddings_{token}.npz")
    embed.main([
        f"--checkpoint={args.checkpoint}",
        f"--gin_file={args.gin_file}",
        f"--gin_search_paths={args.gin_search_paths}",
        f"--input={fasta}",
        f"--output={path}",
        f"--task_token={token}",
        f"--batch_size={args.embed_batch_size}",
        f"--max_length={args.max_length}",
    ])
    settings[token] = path
  return settings


def _check_checkpoint(args: argparse.Namespace) -> None:
  """The checkpoint has the gin model's shapes (from its metadata alone)."""
  # pylint: disable=g-import-not-at-top
  from ankh3_tasks import checkpoints
  from ankh3_tasks import t5x_adapter

  # pylint: enable=g-import-not-at-top
  search = [p for p in args.gin_search_paths.split(",") if p]
  shapes = checkpoints.param_shapes(args.checkpoint)
  if shapes is None:
    return  # Not an Orbax checkpoint: embed says what it finds there.
  expected = t5x_adapter.load_gin([args.gin_file], (), search).model
  expected = expected.module.config
  checkpoints.check_config(
      expected,
      checkpoints.params_config(
          shapes, expected.relative_attention_max_distance
      ),
  )


def _write_outputs(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    head_config: convbert.HeadConfig,
    train_config: train.TrainConfig,
) -> str:
  """Writes results.md, results.json and the curves of what has finished."""
  result_table = report.table(
      results,
      model_name=args.model_name,
      published_models=args.published_models.split(","),
  )
  text = report.markdown(result_table)
  with open(os.path.join(args.output_dir, "results.md"), "w") as f:
    f.write(text)
  with open(os.path.join(args.output_dir, "results.json"), "w") as f:
    json.dump(
        {
            "model_name": args.model_name,
            "settings": _settings_paths(args),
            "head_config": dataclasses.asdict(head_config),
            "train_config": dataclasses.asdict(train_config),
            "table": result_table,
            "results": results,
        },
        f,
        indent=1,
        default=float,
    )
  report.plot_learning_curves(
      results, os.path.join(args.output_dir, "learning_curves.png")
  )
  return text


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command line; returns the exit status.

  Raises:
    ValueError, KeyError: for bad data, settings or embeddings (the shell
      entry point prints them as `error: ...`).
  """
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  names = _task_names(args.tasks)
  layouts = _layouts(args)
  for name in names:  # Missing files fail here, before any work.
    datasets.check_files(name, args.data_dir, layouts.get(name))
  for label, path in _embedding_files(args.embeddings).items():
    if not tf.io.gfile.exists(path):
      raise ValueError(f"--embeddings {label}={path}: {path} does not exist.")
  if args.write_fasta:
    count = _write_fasta(names, args.data_dir, layouts, args.write_fasta)
    print(f"wrote {count} distinct sequences to {args.write_fasta}")
    return 0
  if not args.seeds:
    raise ValueError("--seeds is empty; the paper's are 7,0,42.")

  if not args.embeddings:
    # Before anything is written: a gin file of another size than the
    # checkpoint would otherwise fail after sequences.fasta, leaving a
    # half-filled output directory.
    _check_checkpoint(args)
  os.makedirs(args.output_dir, exist_ok=True)
  head_config = convbert.HeadConfig(
      num_layers=args.num_layers,
      num_heads=args.num_heads,
      ffn_ratio=args.ffn_ratio,
      dropout=args.dropout,
      kernel_size=args.kernel_size,
      pooling=args.pooling,
  )
  train_config = train.TrainConfig(
      learning_rate=args.learning_rate,
      warmup_steps=args.warmup_steps,
      epochs=args.epochs,
      batch_size=args.batch_size,
      grad_accumulation=args.grad_accumulation,
      weight_decay=args.weight_decay,
      seeds=args.seeds,
  )
  report.check_model_name(args.model_name)  # Before hours of training.
  settings = _settings(args, names)
  if not args.no_baseline:
    if report.ONE_HOT in settings:
      raise ValueError(
          f"--embeddings {report.ONE_HOT}=...: that label is the one-hot "
          "baseline's; choose another (or pass --no_baseline)."
      )
    settings[report.ONE_HOT] = None
  results: dict[str, dict[str, Any]] = {}
  text = ""
  for name in names:
    # One task in memory at a time, read once for all settings.
    splits = _load(name, args.data_dir, layouts)
    for setting, path in settings.items():
      if path is None:
        # D must be a multiple of twice the head's self-attention heads.
        store = harness.OneHotStore(2 * head_config.attention_heads())
      else:
        store = harness.EmbeddingStore(path)
      try:
        begin = time.time()
        print(f"{setting} {name}: seeds {list(args.seeds)}")
        result = harness.run_task(
            name,
            splits,
            store,
            head_config=head_config,
            train_config=train_config,
            progress=not args.no_progress,
        )
      finally:
        store.close()
      result["seconds"] = time.time() - begin
      results.setdefault(setting, {})[name] = result
      for test_set, by_metric in result["summary"].items():
        for metric, s in by_metric.items():
          print(f"  {test_set} {metric}: {s['mean']:.4f} ± {s['std']:.4f}")
      # After every run: a crash later loses nothing finished.
      text = _write_outputs(args, results, head_config, train_config)
  print(text)
  print(
      "wrote results.md, results.json, learning_curves.png to "
      f"{args.output_dir}"
  )
  return 0


def _settings_paths(args: argparse.Namespace) -> Any:
  settings = {"one_hot_baseline": not args.no_baseline, "files": args.files}
  if args.embeddings:
    return {"embeddings": args.embeddings, **settings}
  return {
      "checkpoint": args.checkpoint,
      "task_tokens": args.task_tokens,
      **settings,
  }


def _shell() -> int:
  try:
    return main()
  except (ValueError, KeyError, tf.errors.OpError) as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(_shell())
