"""`Registry[T]`: named plugins (merge methods, defenses) from built-ins, entry points and submissions.

A registry guarantees: names are unique unless `replace=True`; the entry points of its group are imported
once, lazily, on the first lookup, and one that fails is skipped with a warning; an unknown name raises
`UnknownNameError` listing the valid names. `check_name` and `check_signature` are the registration rules
the registries share.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Collection, Mapping
from importlib import metadata
from types import ModuleType
from typing import Any, Generic, NoReturn, Protocol, TypeVar

from benchmark.errors import MergesecError, UnknownNameError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
"""A valid plugin name: letters, digits, '_', '-' or '.', starting with a letter or digit."""


class Plugin(Protocol):
    """What a registry holds: a named item that records where it came from."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...


T = TypeVar("T", bound=Plugin)
F = TypeVar("F", bound=Callable[..., Any])
Fail = Callable[[str], NoReturn]


class Registry(Generic[T]):
    """Items of type `item_type`, by name. `check(item)` raises `error` for an item that cannot be registered;
    entry points of `group` may be a module (registers on import), an item, a function decorated by this
    registry (marked with attribute `marker`) or a zero-argument callable that registers."""

    def __init__(self, kind: str, item_type: type[T], *, group: str, marker: str, builtin_prefix: str,
                 error: type[MergesecError], check: Callable[[T], None]) -> None:
        self.kind, self.item_type, self.group, self.marker = kind, item_type, group, marker
        self.builtin_prefix, self.error, self.check = builtin_prefix, error, check
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, item: T, *, replace: bool = False) -> T:
        """Check `item` and add it; an existing name is an error unless `replace=True`."""
        self.check(item)
        old = self._items.get(item.name)
        if old is not None and not replace:
            raise self.error(f"{self.kind} {item.name!r} is already registered (source: {old.source}); "
                             "pick another name, or pass replace=True to override it deliberately")
        self._items[item.name] = item
        return item

    def decorator(self, *, replace: bool, **fields: Any) -> Callable[[F], F]:
        """Decorator registering `item_type(fn=fn, **fields)` and returning `fn` marked with the item.
        `citation` defaults to `fn`'s docstring; `source` is "builtin" for modules under `builtin_prefix`
        and "plugin:<module>" otherwise."""

        def decorate(fn: F) -> F:
            module = getattr(fn, "__module__", "") or ""
            item = self.item_type(**{
                **fields, "fn": fn, "citation": fields.get("citation") or inspect.cleandoc(fn.__doc__ or ""),
                "source": "builtin" if module.startswith(self.builtin_prefix) else f"plugin:{module}"})
            setattr(fn, self.marker, self.register(item, replace=replace))
            return fn

        return decorate

    def get(self, name: str) -> T:
        """The item registered as `name`; raises `UnknownNameError` listing the valid names."""
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._items)) from None

    def names(self) -> list[str]:
        """Names of all registered items, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in metadata.entry_points(group=self.group):
            try:
                obj = ep.load()
                if isinstance(obj, self.item_type):
                    self.register(obj)
                elif isinstance(obj, ModuleType) or hasattr(obj, self.marker):
                    pass  # registered while importing
                elif callable(obj):
                    obj()
                else:
                    raise TypeError(f"{type(obj).__name__} is not a module, {self.item_type.__name__} or callable")
            except Exception as exc:
                warnings.warn(
                    f"{self.kind.replace(' ', '-')} entry point {ep.name!r} ({ep.value}) failed to load and was "
                    f"skipped: {exc}. Fix or uninstall the package that provides it.",
                    stacklevel=3,  # the caller of `get`/`names`
                )


def check_name(name: Any, fail: Fail, *, reserved: str | None = None) -> None:
    """Fail unless `name` matches `NAME` (and is not `reserved`)."""
    if not isinstance(name, str) or not NAME.match(name) or name == reserved:
        fail("the name must be letters, digits, '_', '-' or '.', starting with a letter or digit"
             + (f" and not {reserved!r}" if reserved else ""))


def check_signature(fn: Any, *, needs: Collection[str], valid_needs: Collection[str], hparams: Mapping[str, Any],
                    n_positional: int, rule: str, fail: Fail) -> None:
    """Fail unless `fn` is callable, `needs` ⊆ `valid_needs`, `fn` takes `n_positional` positional parameters
    (else `fail(f"{rule}; got fn(...)")`), every hyperparameter is a parameter of `fn` (or `fn` takes
    `**kwargs`), every other parameter without a default is in `hparams`, and defaults are bool/int/float/str."""
    if not callable(fn):
        fail("fn is not callable")
    unknown = set(needs) - set(valid_needs)
    if unknown:
        fail(f"unknown needs {sorted(unknown)}; valid needs: {sorted(valid_needs)}")
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if len(params) < n_positional or any(
        p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[:n_positional]
    ):
        fail(f"{rule}; got fn{signature}")
    rest = {p.name: p for p in params[n_positional:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    unaccepted = [h for h in hparams if h not in rest and not takes_kwargs]
    if unaccepted:
        fail(f"hyperparameters {unaccepted} are not parameters of fn{signature}")
    undeclared = [n for n, p in rest.items() if p.default is p.empty and n not in hparams]
    if undeclared:
        fail(f"fn requires {undeclared} but hparams gives them no default; add them to hparams={{...}}")
    odd = {k: type(v).__name__ for k, v in hparams.items() if not isinstance(v, bool | int | float | str)}
    if odd:
        fail(f"hyperparameter defaults must be bool, int, float or str (they go into the suite hash); got {odd}")
