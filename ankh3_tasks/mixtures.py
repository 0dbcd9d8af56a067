"""Registers the Ankh3 mixtures (and, by importing `tasks`, the tasks).

  ankh3_{dataset}_mixture   `ankh3_{dataset}_denoise` and
                            `ankh3_{dataset}_complete` mixed 1:1 by seqio,
                            task by task, for `sample` and `uniref50`.

  ankh3_{dataset}_eval      the held-out evaluation tasks (one denoising
                            task per masking rate and completion), for
                            `t5x.eval` and for evaluation during training.

The paper mixes the two objectives per example: that is the
`ankh3_{dataset}_multitask` task; the mixture is the task-level alternative.
"""

from collections.abc import Sequence

import seqio

from ankh3_tasks import preprocessors
from ankh3_tasks import tasks


def register_ankh3_mixture(prefix: str, rate: float = 1.0) -> seqio.Mixture:
  """Registers `{prefix}_mixture` over `{prefix}_denoise` / `_complete`."""
  name = f"{prefix}_mixture"
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(
      name,
      [
          (f"{prefix}_{tasks.DENOISE}", rate),
          (f"{prefix}_{tasks.COMPLETE}", rate),
      ],
  )


def register_ankh3_eval_mixture(
    prefix: str,
    noise_densities: Sequence[float] = preprocessors.DEFAULT_NOISE_DENSITIES,
) -> seqio.Mixture:
  """Registers `{prefix}_eval` over `tasks.eval_task_names(prefix, ...)`.

  T5X evaluates a mixture task by task (`t5x.eval`, and train_eval in
  `t5x.train`), so each masking rate gets its own metrics.
  """
  name = f"{prefix}_{tasks.EVAL}"
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(
      name,
      [
          (task, 1.0)
          for task in tasks.eval_task_names(prefix, noise_densities).values()
      ],
  )


register_ankh3_mixture("ankh3_sample")
register_ankh3_mixture("ankh3_uniref50")
register_ankh3_eval_mixture("ankh3_sample")
register_ankh3_eval_mixture("ankh3_uniref50")
