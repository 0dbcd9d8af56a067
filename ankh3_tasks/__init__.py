"""Ankh3 protein language model pretraining tasks for seqio and T5X.

Importing `ankh3_tasks.mixtures` (or `ankh3_tasks.tasks`) registers the tasks.
Importing the package itself loads nothing else (no TensorFlow), so that
`python -m ankh3_tasks.gin_search_path` answers at once.
"""

__version__ = "0.1.0"
