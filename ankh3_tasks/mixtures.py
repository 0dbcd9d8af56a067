"""Registers the Ankh3 mixtures (and, by importing `tasks`, the tasks).

  ankh3_{dataset}_mixture   `ankh3_{dataset}_denoise` and
                            `ankh3_{dataset}_complete` mixed 1:1 by seqio,
                            task by task, for `sample` and `uniref50`.

The paper mixes the two objectives per example: that is the
`ankh3_{dataset}_multitask` task; the mixture is the task-level alternative.
"""

import seqio

from ankh3_tasks import tasks  # pylint: disable=unused-import


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


register_ankh3_mixture("ankh3_sample")
register_ankh3_mixture("ankh3_uniref50")
