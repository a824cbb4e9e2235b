"""Merge methods: the registry, validation, `merge()` and the built-in published algorithms
(docs/merging.md)."""

from benchmark.merging import methods  # noqa: F401  (registers the built-ins)
from benchmark.merging.api import merge
from benchmark.merging.context import MergeContext, MergeOutput
from benchmark.merging.registry import MergeMethod, get_method, list_methods, register_merge, register_method

__all__ = [
    "MergeContext",
    "MergeMethod",
    "MergeOutput",
    "get_method",
    "list_methods",
    "merge",
    "register_merge",
    "register_method",
]
