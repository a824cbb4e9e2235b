"""Declarative, versioned, hashed benchmark suites."""

from benchmark.suites.spec import (
    BackboneSpec,
    Suite,
    TaskSpec,
    TransferSpec,
    list_suites,
    load_suite,
)

__all__ = ["BackboneSpec", "Suite", "TaskSpec", "TransferSpec", "list_suites", "load_suite"]
