"""mergesec: a statistical benchmark for the security of model merging."""

__version__ = "0.1.0"
