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
"""

from collections.abc import Callable, Sequence
import functools
from typing import Optional

import seqio

from ankh3_tasks import preprocessors
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

DENOISE = "denoise"
COMPLETE = "complete"
MULTITASK = "multitask"


def output_features(
    vocabulary: Optional[vocabularies.Ankh3Vocabulary] = None,
) -> dict[str, seqio.Feature]:
  """Returns the `inputs` / `targets` features, both ending in `</s>`."""
  vocabulary = vocabulary or vocabularies.Ankh3Vocabulary()
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=True, required=True),
      "targets": seqio.Feature(vocabulary, add_eos=True, required=True),
  }


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
  source = sources.protein_source(files_fn, splits, ("train",), **table_options)
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
  registered = {}
  for kind, objective in objectives.items():
    name = f"{prefix}_{kind}"
    seqio.TaskRegistry.remove(name)
    registered[kind] = seqio.TaskRegistry.add(
        name,
        source=source,
        output_features=output_features(vocabulary),
        preprocessors=[
            preprocessors.tokenize_sequence,
            seqio.CacheDatasetPlaceholder(),
            functools.partial(
                preprocessors.crop_proteins,
                max_residues=max_residues,
                eval_window=eval_window,
            ),
            objective,
            seqio.preprocessors.append_eos,
        ],
        metric_fns=[],
    )
  return registered


def _sample_files(split: str) -> Sequence[str]:
  return sources.SAMPLE_FILES[split]


def _uniref50_files(split: str) -> Sequence[str]:
  return sources.split_files(sources.data_dir(), split)


register_ankh3_tasks("ankh3_sample", _sample_files)
register_ankh3_tasks("ankh3_uniref50", _uniref50_files)
