"""The merge-method registry: built-ins, Python entry points (group `mergesec.merge_methods`) and submissions.

A method is registered once under a unique name with the data it needs, its hyperparameters with their
defaults, and the paper it implements. Entry points are loaded lazily, on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from torch import nn

from benchmark.errors import MergeRegistrationError
from benchmark.registry import Registry, check_name, check_signature
from benchmark.types import StateDict

ENTRY_POINT_GROUP = "mergesec.merge_methods"
NEEDS = frozenset({"unlabelled_dev", "labelled_dev", "classifier_factory"})
"""The data a data-dependent method may need (shared with the defense registry)."""
SEED = "seed"
"""A need any method may declare: it draws random numbers, so it receives the unit's merge seed."""


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method.

    Data-free (`needs` ⊆ {"seed"}): `fn(pretrained, finetuned, **hparams) -> StateDict`, or
    `fn(pretrained, finetuned, seed, **hparams)` when it declares the need `"seed"` (a random method: the
    unit's merge seed, `MergeContext.seed`, reaches it, so two seeds give two merges).
    Data-dependent: `fn(ctx: MergeContext, **hparams) -> StateDict | MergeOutput` (the seed is `ctx.seed`).

    `seed_free`: a data-dependent method declares that its result does not depend on `ctx.seed` (its data is
    read in a fixed order, nothing random is drawn), so one merge serves every seed (`reads_seed`).

    `load_adapter(state_dict) -> nn.Module` rebuilds one of the method's `MergeOutput` adapters from its
    `state_dict()` (an eval-mode module computing exactly what the original did), so a merge with adapters is
    cached like any other (`RunContext.merged`); without it such a merge is kept in memory only.
    """

    name: str
    fn: Callable[..., Any]
    needs: frozenset[str] = frozenset()
    hparams: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    citation: str = ""
    source: str = "builtin"
    load_adapter: Callable[[StateDict], nn.Module] | None = None
    seed_free: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "hparams", dict(self.hparams))

    @property
    def data_free(self) -> bool:
        return not self.needs - {SEED}

    @property
    def seeded(self) -> bool:
        """Whether the method is random (declares the need "seed")."""
        return SEED in self.needs

    @property
    def reads_seed(self) -> bool:
        """Whether the merge may depend on the unit's merge seed: a random method (need "seed"), or a
        data-dependent one (it receives `ctx.seed`) unless it declares `seed_free`. A data-free method without
        the need never receives the seed."""
        return self.seeded or not (self.data_free or self.seed_free)


def _check_method(method: MergeMethod) -> None:
    def fail(problem: str) -> NoReturn:
        raise MergeRegistrationError(f"cannot register merge method {method.name!r}: {problem}")

    check_name(method.name, fail)
    positional = ["pretrained", "finetuned", *([SEED] if method.seeded else [])] if method.data_free else ["ctx"]
    expected = f"fn({', '.join(positional)}, **hparams)"
    if method.seed_free and method.seeded:
        fail('it declares the need "seed" and seed_free; a method that draws random numbers from the seed is not '
             "seed-free: drop one of the two")
    if method.load_adapter is not None and not callable(method.load_adapter):
        fail("load_adapter must be a function state_dict -> nn.Module")
    check_signature(method.fn, needs=method.needs, valid_needs=NEEDS | {SEED}, hparams=method.hparams,
                    n_positional=len(positional), rule=f"its signature must be {expected}", fail=fail)


METHODS: Registry[MergeMethod] = Registry(
    "merge method", MergeMethod, group=ENTRY_POINT_GROUP, marker="__merge_method__",
    builtin_prefix="benchmark.merging.", error=MergeRegistrationError, check=_check_method)
"""The merge methods; entry points are loaded on the first `get_method`/`list_methods`."""

register_method = METHODS.register
get_method = METHODS.get
list_methods = METHODS.names


def register_merge(
    name: str, *, needs: Iterable[str] = (), hparams: Mapping[str, Any] | None = None, paper: str = "",
    citation: str = "", replace: bool = False, load_adapter: Callable[[StateDict], nn.Module] | None = None,
    seed_free: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `fn` as merge method `name`; returns `fn` unchanged (marked `__merge_method__`).

    `citation` defaults to the function's docstring. `source` is "builtin" for mergesec's own methods and
    "plugin:<module>" otherwise. `load_adapter`, `seed_free`: see `MergeMethod`.
    """
    return METHODS.decorator(replace=replace, name=name, needs=frozenset(needs), hparams=dict(hparams or {}),
                             paper=paper, citation=citation, load_adapter=load_adapter, seed_free=seed_free)
