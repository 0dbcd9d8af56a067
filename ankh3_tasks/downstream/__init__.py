"""Frozen-embedding downstream benchmark (the paper's ConvBERT evaluation).

`python -m ankh3_tasks.downstream` runs it (docs/downstream.md);
`ankh3_tasks.benchmark` is its old name.
"""
