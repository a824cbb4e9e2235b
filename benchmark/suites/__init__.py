"""Declarative, versioned, hashed benchmark suites."""

from benchmark.suites.spec import (
    SUITE_DIR,
    BackboneSpec,
    Suite,
    TaskSpec,
    TransferSpec,
    list_suites,
    load_suite,
)

__all__ = ["SUITE_DIR", "BackboneSpec", "Suite", "TaskSpec", "TransferSpec", "list_suites", "load_suite"]
