"""Frozen-embedding downstream benchmark (the paper's ConvBERT evaluation)."""
