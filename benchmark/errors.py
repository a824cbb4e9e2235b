"""mergesec's error hierarchy: every user-facing failure names the problem and the fix."""

import sys
from collections.abc import Callable
from typing import NoReturn


class MergesecError(Exception):
    """Base class. The CLI prints the message (problem and fix) and exits with status 2."""


class UnknownNameError(MergesecError, KeyError):
    """A suite, method, attack, defense or task name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}")

    def __str__(self) -> str:
        return self.args[0]


class MissingResourceError(MergesecError):
    """Weights or data that are not on this machine; the message says how to point mergesec at a copy."""


class CheckpointError(MergesecError):
    """A checkpoint that is not safetensors, has NaN/inf values, or does not match the expected keys/shapes."""


class MergeRegistrationError(MergesecError):
    """A merge method that cannot be registered (bad name, needs, hyperparameters or a duplicate name)."""


class MergeInputError(MergesecError):
    """Inputs to a merge method that violate the API contract."""


class MergeOutputError(MergesecError):
    """A merge method's output that violates the API contract."""


class StoreError(MergesecError):
    """The results database cannot be opened or written."""


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``main`` and exit with the status it returns (None: 0); a :class:`MergesecError` (a
    suite, name or file the user got wrong) becomes one line on stderr, ``error: <problem and fix>``, and exit
    status 2, never a traceback. What `mergesec` and the scripts under ``benchmarks/`` run their ``main`` with."""
    try:
        status = main()
    except MergesecError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(status)
