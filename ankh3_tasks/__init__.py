"""Ankh3 protein language model pretraining tasks for seqio and T5X.

Importing `ankh3_tasks.mixtures` (or `ankh3_tasks.tasks`) registers the tasks.
"""

from ankh3_tasks import preprocessors
from ankh3_tasks import sources
from ankh3_tasks import vocabularies

__version__ = "0.1.0"
