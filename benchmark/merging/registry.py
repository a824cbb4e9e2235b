"""The merge-method registry: built-ins, Python entry points (group `mergesec.merge_methods`) and submissions.

A method is registered once under a unique name with the data it needs, its hyperparameters with their
defaults, and the paper it implements. Entry points are loaded lazily, on the first lookup.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

from benchmark.errors import MergesecError, UnknownNameError

ENTRY_POINT_GROUP = "mergesec.merge_methods"
NEEDS = frozenset({"unlabelled_dev", "labelled_dev", "classifier_factory"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class MergeRegistrationError(MergesecError):
    """A merge method that cannot be registered (bad name, needs, hyperparameters or a duplicate name)."""


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method.

    Data-free (`needs` empty): `fn(pretrained, finetuned, **hparams) -> StateDict`.
    Data-dependent: `fn(ctx: MergeContext, **hparams) -> StateDict | MergeOutput`.
    """

    name: str
    fn: Callable[..., Any]
    needs: frozenset[str] = frozenset()
    hparams: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    citation: str = ""
    source: str = "builtin"

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "hparams", dict(self.hparams))

    @property
    def data_free(self) -> bool:
        return not self.needs


_REGISTRY: dict[str, MergeMethod] = {}
_entry_points_loaded = False


def register_method(method: MergeMethod, *, replace: bool = False) -> MergeMethod:
    """Check `method` and add it to the registry; an existing name is an error unless `replace=True`."""
    _check_method(method)
    if method.name in _REGISTRY and not replace:
        old = _REGISTRY[method.name]
        raise MergeRegistrationError(
            f"merge method {method.name!r} is already registered (source: {old.source}); "
            "pick another name, or pass replace=True to override it deliberately"
        )
    _REGISTRY[method.name] = method
    return method


def register_merge(
    name: str,
    *,
    needs: Iterable[str] = (),
    hparams: Mapping[str, Any] | None = None,
    paper: str = "",
    citation: str = "",
    replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `fn` as merge method `name`; returns `fn` unchanged (marked `__merge_method__`).

    `citation` defaults to the function's docstring. `source` is "builtin" for mergesec's own methods and
    "plugin:<module>" otherwise.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        module = getattr(fn, "__module__", "") or ""
        method = MergeMethod(
            name=name,
            fn=fn,
            needs=frozenset(needs),
            hparams=dict(hparams or {}),
            paper=paper,
            citation=citation or inspect.cleandoc(fn.__doc__ or ""),
            source="builtin" if module.startswith("benchmark.merging.") else f"plugin:{module}",
        )
        register_method(method, replace=replace)
        fn.__merge_method__ = method  # type: ignore[attr-defined]
        return fn

    return decorate


def get_method(name: str) -> MergeMethod:
    """The method registered as `name`; raises `UnknownNameError` listing the valid names."""
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("merge method", name, list(_REGISTRY)) from None


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_entry_points() -> None:
    """Import every `mergesec.merge_methods` entry point once. Each points at a module that registers on
    import, a `MergeMethod`, a function decorated with `register_merge`, or a zero-argument callable that
    registers. A plugin that fails is reported with a warning and skipped, so one broken package cannot
    hide the rest."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, MergeMethod):
                register_method(obj)
            elif isinstance(obj, ModuleType) or hasattr(obj, "__merge_method__"):
                pass  # registered while importing
            elif callable(obj):
                obj()
            else:
                raise TypeError(f"{type(obj).__name__} is not a module, MergeMethod or callable")
        except Exception as exc:
            warnings.warn(
                f"merge-method entry point {ep.name!r} ({ep.value}) failed to load and was skipped: {exc}. "
                "Fix or uninstall the package that provides it.",
                stacklevel=3,
            )


def _check_method(method: MergeMethod) -> None:
    def fail(problem: str) -> None:
        raise MergeRegistrationError(f"cannot register merge method {method.name!r}: {problem}")

    if not isinstance(method.name, str) or not _NAME.match(method.name):
        fail("the name must be letters, digits, '_', '-' or '.', starting with a letter or digit")
    if not callable(method.fn):
        fail("fn is not callable")
    unknown = set(method.needs) - NEEDS
    if unknown:
        fail(f"unknown needs {sorted(unknown)}; valid needs: {sorted(NEEDS)}")
    signature = inspect.signature(method.fn)
    params = list(signature.parameters.values())
    n_positional = 2 if method.data_free else 1
    expected = "fn(pretrained, finetuned, **hparams)" if method.data_free else "fn(ctx, **hparams)"
    if len(params) < n_positional or any(
        p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[:n_positional]
    ):
        fail(f"its signature must be {expected}; got fn{signature}")
    rest = {p.name: p for p in params[n_positional:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    unaccepted = [h for h in method.hparams if h not in rest and not takes_kwargs]
    if unaccepted:
        fail(f"hyperparameters {unaccepted} are not parameters of fn{signature}")
    undeclared = [n for n, p in rest.items() if p.default is p.empty and n not in method.hparams]
    if undeclared:
        fail(f"fn requires {undeclared} but hparams gives them no default; add them to hparams={{...}}")
    odd = {k: type(v).__name__ for k, v in method.hparams.items() if not isinstance(v, bool | int | float | str)}
    if odd:
        fail(f"hyperparameter defaults must be bool, int, float or str (they go into the suite hash); got {odd}")
