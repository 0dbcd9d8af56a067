"""Registers the Ankh3 seqio tasks (the only module besides `mixtures` that
registers anything).

For each dataset (`sample`, the bundled proteins; `uniref50`, files the user
points to with `ANKH3_DATA_DIR`):

  ankh3_{dataset}_denoise    [NLU] multi-rate denoising of every protein
  ankh3_{dataset}_complete   [S2S] sequence completion of every protein
  ankh3_{dataset}_multitask  each example denoised or completed, drawn per
                             example (the paper's setting)

each with splits `train` and `validation` and features `inputs` / `targets`.
`register_ankh3_tasks` registers the same three for other files or settings.

Held-out evaluation (`t5x.eval` with `gin/runs/ankh3_eval.gin`; the splits
`validation`, and for `uniref50` also `test`):

  ankh3_{dataset}_eval_denoise_15  [NLU] denoising at one masking rate:
  ankh3_{dataset}_eval_denoise_20  15%, 20% and 30% (the paper's rates),
  ankh3_{dataset}_eval_denoise_30  one task each
  ankh3_{dataset}_eval_complete    [S2S] completion of the second half

each scored by `metrics.TokenCrossEntropy` and, from greedy decodes, by
`metrics.MaskedResidueAccuracy` (denoising) or `metrics.CompletionIdentity`
(completion); `register_ankh3_eval_tasks` does the same for other files or
rates. `mixtures` groups them as
`ankh3_{dataset}_eval`.
"""

from collections.abc import Callable, Mapping, Sequence
import functools
from typing import Optional

import seqio

from ankh3_tasks import metrics
from ankh3_tasks import prepared
from ankh3_tasks import preprocessors
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

DENOISE = "denoise"
COMPLETE = "complete"
MULTITASK = "multitask"
EVAL = "eval"


def output_features(
    vocabulary: Optional[vocabularies.Ankh3Vocabulary] = None,
) -> dict[str, seqio.Feature]:
  """Returns the `inputs` / `targets` features, both ending in `</s>`."""
  vocabulary = vocabulary or vocabularies.Ankh3Vocabulary()
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=True, required=True),
      "targets": seqio.Feature(vocabulary, add_eos=True, required=True),
  }


def _add_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: vocabularies.Ankh3Vocabulary,
    objective: Callable[..., object],
    *,
    max_residues: Optional[int],
    eval_window: str,
    cacheable: bool = True,
    metric_objs: Sequence[type[seqio.metrics.Metric]] = (),
) -> seqio.Task:
  """(Re-)registers a task: tokenize, cache point, crop, `objective`, `</s>`.

  Without `cacheable` the task has no cache point; seqio then reads it from
  the files even when a run asks for cached tasks (`USE_CACHED_TASKS`).
  """
  seqio.TaskRegistry.remove(name)
  cache = [seqio.CacheDatasetPlaceholder()] if cacheable else []
  return seqio.TaskRegistry.add(
      name,
      source=source,
      output_features=output_features(vocabulary),
      preprocessors=[
          preprocessors.tokenize_sequence,
          *cache,
          functools.partial(
              preprocessors.crop_proteins,
              max_residues=max_residues,
              eval_window=eval_window,
          ),
          objective,
          seqio.preprocessors.append_eos,
      ],
      metric_objs=list(metric_objs),
  )


def register_ankh3_tasks(
    prefix: str,
    files_fn: Callable[[str], Sequence[str]],
    *,
    splits: Sequence[str] = ("train", "validation"),
    vocabulary: Optional[vocabularies.Ankh3Vocabulary] = None,
    max_residues: Optional[int] = None,
    eval_window: str = "start",
    denoise_probability: float = preprocessors.DEFAULT_DENOISE_PROBABILITY,
    noise_densities: Sequence[float] = preprocessors.DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = (
        preprocessors.DEFAULT_MEAN_NOISE_SPAN_LENGTH
    ),
    split_fraction: preprocessors.SplitFraction = (
        preprocessors.DEFAULT_SPLIT_FRACTION
    ),
    **table_options,
) -> dict[str, seqio.Task]:
  """Registers `{prefix}_denoise`, `{prefix}_complete`, `{prefix}_multitask`.

  Args:
    prefix: task name prefix, e.g. `ankh3_sample`.
    files_fn: maps a split name to its protein files (read lazily).
    splits: split names; `train` gets random crops, the others fixed ones.
    vocabulary: defaults to the built-in Ankh3 table.
    max_residues: crop proteins to this many residues. By default the crop
      follows the run's `inputs` length (minus the task token and `</s>`:
      510 for the paper's 512), and the sentinel check at registration
      assumes 510.
    eval_window: crop window of the evaluation splits (`start`, `center`).
    denoise_probability: per-example share of denoising in `multitask`.
    noise_densities: masking probabilities drawn from, per example.
    mean_noise_span_length: mean residues per sentinel.
    split_fraction: completion split, a fraction or a (low, high) range.
    **table_options: `sequence_column` / `id_column` for CSV/TSV/Parquet.

  Returns:
    The registered tasks by kind (`denoise`, `complete`, `multitask`).

  Raises:
    ValueError: at once, for a setting that could need more sentinels than
      the vocabulary has, or any other bad setting.
  """
  vocabulary = vocabulary or vocabularies.Ankh3Vocabulary()
  preprocessors.check_settings(
      preprocessors.residue_budget(max_residues=max_residues),
      denoise_probability=denoise_probability,
      noise_densities=noise_densities,
      mean_noise_span_length=mean_noise_span_length,
      split_fraction=split_fraction,
      num_sentinels=vocabulary.num_sentinels,
  )
  source = sources.ProteinSource(files_fn, splits, ("train",), **table_options)
  denoise_options = dict(
      noise_densities=tuple(noise_densities),
      mean_noise_span_length=mean_noise_span_length,
      max_residues=max_residues,
  )
  objectives = {
      DENOISE: functools.partial(preprocessors.denoise, **denoise_options),
      COMPLETE: functools.partial(
          preprocessors.complete,
          split_fraction=split_fraction,
          max_residues=max_residues,
      ),
      MULTITASK: functools.partial(
          preprocessors.denoise_or_complete,
          denoise_probability=denoise_probability,
          split_fraction=split_fraction,
          **denoise_options,
      ),
  }
  return {
      kind: _add_task(
          f"{prefix}_{kind}",
          source,
          vocabulary,
          objective,
          max_residues=max_residues,
          eval_window=eval_window,
      )
      for kind, objective in objectives.items()
  }


def eval_task_names(
    prefix: str,
    noise_densities: Sequence[float] = preprocessors.DEFAULT_NOISE_DENSITIES,
) -> dict[str, str]:
  """Names of the evaluation tasks, by what they measure.

  `eval_task_names("ankh3_sample")` -> `{"denoise_15":
  "ankh3_sample_eval_denoise_15", "denoise_20": ..., "denoise_30": ...,
  "complete": "ankh3_sample_eval_complete"}`.

  Args:
    prefix: task name prefix, e.g. `ankh3_sample`.
    noise_densities: one denoising task per masking rate.

  Returns:
    Task names keyed by kind (`denoise_<percent>`, `complete`).

  Raises:
    ValueError: if two rates give the same name.
  """
  names = {}
  for density in noise_densities:
    # 0.15 -> "15", 0.125 -> "12p5": task names are identifiers.
    kind = f"{DENOISE}_" + f"{round(density * 100, 4):g}".replace(".", "p")
    if kind in names:
      raise ValueError(
          f"noise_densities {tuple(noise_densities)} name the task {kind} "
          "twice; give each masking rate once."
      )
    names[kind] = f"{prefix}_{EVAL}_{kind}"
  names[COMPLETE] = f"{prefix}_{EVAL}_{COMPLETE}"
  return names


def register_ankh3_eval_tasks(
    prefix: str,
    files_fn: Callable[[str], Sequence[str]],
    *,
    splits: Sequence[str] = ("validation",),
    vocabulary: Optional[vocabularies.Ankh3Vocabulary] = None,
    max_residues: Optional[int] = None,
    eval_window: str = "start",
    noise_densities: Sequence[float] = preprocessors.DEFAULT_NOISE_DENSITIES,
    mean_noise_span_length: float = (
        preprocessors.DEFAULT_MEAN_NOISE_SPAN_LENGTH
    ),
    split_fraction: float = preprocessors.DEFAULT_SPLIT_FRACTION,
    composition_fn: Optional[Callable[[], Mapping[str, int]]] = None,
    **table_options,
) -> dict[str, seqio.Task]:
  """Registers one denoising task per masking rate and a completion task.

  Each example is cropped like the training tasks' evaluation splits (no
  random window) and masked with seqio's stateless seeds, so one dataset
  seed (`utils.DatasetConfig.seed`) gives the same masks in every run.

  Args:
    prefix: task name prefix, e.g. `ankh3_sample`; names as
      `eval_task_names` gives them.
    files_fn: maps a split name to its protein files (read lazily).
    splits: held-out split names.
    vocabulary: defaults to the built-in Ankh3 table.
    max_residues: crop proteins to this many residues (default: the run's
      `inputs` length minus 2; see `register_ankh3_tasks`).
    eval_window: crop window (`start`, `center`).
    noise_densities: the masking rates, one task each.
    mean_noise_span_length: mean residues per sentinel.
    split_fraction: share of each protein given to the encoder in the
      completion task.
    composition_fn: () -> residue counts of the training split, for the
      composition baseline of `metrics.ResidueCrossEntropy` (called when
      the metric is computed); None leaves the baseline NaN.
    **table_options: `sequence_column` / `id_column` for CSV/TSV/Parquet.

  Returns:
    The registered tasks keyed as `eval_task_names` keys them.

  Raises:
    ValueError: at once, for a bad setting (as `register_ankh3_tasks`).
  """
  vocabulary = vocabulary or vocabularies.Ankh3Vocabulary()
  preprocessors.check_settings(
      preprocessors.residue_budget(max_residues=max_residues),
      noise_densities=noise_densities,
      mean_noise_span_length=mean_noise_span_length,
      split_fraction=split_fraction,
      num_sentinels=vocabulary.num_sentinels,
  )
  source = sources.ProteinSource(files_fn, splits, (), **table_options)
  names = eval_task_names(prefix, noise_densities)
  objectives = {}
  denoise_kinds = [kind for kind in names if kind != COMPLETE]
  for density, kind in zip(noise_densities, denoise_kinds):
    objectives[kind] = functools.partial(
        preprocessors.denoise,
        noise_densities=(density,),
        mean_noise_span_length=mean_noise_span_length,
        max_residues=max_residues,
    )
  objectives[COMPLETE] = functools.partial(
      preprocessors.complete,
      split_fraction=split_fraction,
      max_residues=max_residues,
  )
  residue_metric = metrics.ResidueCrossEntropy
  if composition_fn is not None:
    residue_metric = residue_metric.with_composition(composition_fn)
  return {
      kind: _add_task(
          names[kind],
          source,
          vocabulary,
          objective,
          max_residues=max_residues,
          eval_window=eval_window,
          # Held-out splits are small and not cached, so a run with
          # USE_CACHED_TASKS reads them from the files.
          cacheable=False,
          metric_objs=[
              metrics.TokenCrossEntropy,
              residue_metric,
              (
                  metrics.CompletionIdentity
                  if kind == COMPLETE
                  else metrics.MaskedResidueAccuracy
              ),
          ],
      )
      for kind, objective in objectives.items()
  }


def _sample_files(split: str) -> Sequence[str]:
  return sources.SAMPLE_FILES[split]


def _uniref50_files(split: str) -> Sequence[str]:
  return sources.split_files(sources.data_dir(), split)


@functools.cache
def _sample_composition() -> Mapping[str, int]:
  return sources.residue_counts(_sample_files("train"))


def _uniref50_composition() -> Mapping[str, int]:
  # The counts `prepare` recorded (all splits); none for other files.
  return prepared.composition(sources.data_dir())


register_ankh3_tasks("ankh3_sample", _sample_files)
register_ankh3_tasks("ankh3_uniref50", _uniref50_files)
register_ankh3_eval_tasks(
    "ankh3_sample", _sample_files, composition_fn=_sample_composition
)
register_ankh3_eval_tasks(
    "ankh3_uniref50",
    _uniref50_files,
    splits=("validation", "test"),
    composition_fn=_uniref50_composition,
)
