"""The defense registry: built-ins, Python entry points (group `mergesec.defenses`) and submissions.

Defenses are registered like merge methods (`benchmark.merging.registry`), with the same name rules,
hyperparameter rules and entry-point loading, plus a `stage`:

- `stage="merge"`: `fn(inputs: DefenseInputs, **hparams) -> CleanedInputs | StateDict | MergeOutput`.
  The defense sees what the merger sees (pretrained and fine-tuned encoders, the method and its
  hyperparameters, optional dev data) and returns either cleaned inputs (then merged with the victim's
  method) or a merged model. `inputs.merge(pretrained, finetuned)` runs the victim's method.
- `stage="post"`: `fn(merged: MergeOutput, inputs: DefenseInputs, **hparams) -> StateDict | MergeOutput`:
  the defense receives the merged model (and the same optional data) and returns a repaired one.

No defense ever receives the attacker's trigger, target or identity: `DefenseInputs` has no such field.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

from benchmark.errors import MergesecError, UnknownNameError
from benchmark.merging.registry import _NAME
from benchmark.merging.registry import NEEDS as MERGE_NEEDS
from benchmark.merging.validate import _type_ok

ENTRY_POINT_GROUP = "mergesec.defenses"
STAGES = ("merge", "post")
NEEDS = MERGE_NEEDS | {"finetune_recipe"}
"""What a defense may ask for: the merge methods' needs, plus the suite's fine-tuning recipe (defenses that
train, e.g. IBVS's own backdoor injection)."""


class DefenseError(MergesecError):
    """A defense that cannot be registered or used (bad name, stage, needs, hyperparameters, output)."""


@dataclass(frozen=True)
class Defense:
    """A registered defense (see the module docstring for the two call signatures)."""

    name: str
    fn: Callable[..., Any]
    stage: str
    needs: frozenset[str] = frozenset()
    hparams: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    citation: str = ""
    source: str = "builtin"


_REGISTRY: dict[str, Defense] = {}
_entry_points_loaded = False


def register(defense: Defense, *, replace: bool = False) -> Defense:
    """Check `defense` and add it to the registry; an existing name is an error unless `replace=True`."""
    _check(defense)
    if defense.name in _REGISTRY and not replace:
        raise DefenseError(
            f"defense {defense.name!r} is already registered (source: {_REGISTRY[defense.name].source}); "
            "pick another name, or pass replace=True to override it deliberately")
    _REGISTRY[defense.name] = defense
    return defense


def register_defense(
    name: str,
    *,
    stage: str,
    needs: Iterable[str] = (),
    hparams: Mapping[str, Any] | None = None,
    paper: str = "",
    citation: str = "",
    replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `fn` as defense `name` at `stage` ("merge" or "post"); returns `fn` unchanged
    (marked `__defense__`). `citation` defaults to the docstring; `source` is "builtin" for mergesec's own
    defenses and "plugin:<module>" otherwise."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        module = getattr(fn, "__module__", "") or ""
        d = Defense(name=name, fn=fn, stage=stage, needs=frozenset(needs), hparams=dict(hparams or {}),
                    paper=paper, citation=citation or inspect.cleandoc(fn.__doc__ or ""),
                    source="builtin" if module.startswith("benchmark.defenses.") else f"plugin:{module}")
        register(d, replace=replace)
        fn.__defense__ = d  # type: ignore[attr-defined]
        return fn

    return decorate


def get_defense(name: str) -> Defense:
    """The defense registered as `name`; raises `UnknownNameError` listing the valid names."""
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("defense", name, list(_REGISTRY)) from None


def list_defenses() -> list[str]:
    """Names of all registered defenses, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def check_defense_hparams(defense: Defense, given: Mapping[str, Any]) -> dict[str, Any]:
    """`defense`'s defaults updated with `given`; unknown names and values of the wrong type are errors."""
    unknown = sorted(set(given) - set(defense.hparams))
    if unknown:
        raise DefenseError(
            f"defense {defense.name!r} has no hyperparameter(s) {', '.join(map(repr, unknown))}; valid "
            f"hyperparameters: {', '.join(sorted(defense.hparams)) or 'none'}")
    for k, v in given.items():
        if not _type_ok(v, defense.hparams[k]):
            raise DefenseError(
                f"hyperparameter {k!r} of defense {defense.name!r} must be a {type(defense.hparams[k]).__name__} "
                f"(default {defense.hparams[k]!r}); got {v!r}")
    return {**defense.hparams, **given}


def _load_entry_points() -> None:
    """Import every `mergesec.defenses` entry point once (a module that registers on import, a `Defense`,
    a decorated function, or a zero-argument callable that registers). A failing plugin is skipped with a
    warning, so one broken package cannot hide the rest."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, Defense):
                register(obj)
            elif isinstance(obj, ModuleType) or hasattr(obj, "__defense__"):
                pass
            elif callable(obj):
                obj()
            else:
                raise TypeError(f"{type(obj).__name__} is not a module, Defense or callable")
        except Exception as exc:
            warnings.warn(f"defense entry point {ep.name!r} ({ep.value}) failed to load and was skipped: {exc}. "
                          "Fix or uninstall the package that provides it.", stacklevel=3)


def _check(d: Defense) -> None:
    def fail(problem: str) -> None:
        raise DefenseError(f"cannot register defense {d.name!r}: {problem}")

    if not isinstance(d.name, str) or not _NAME.match(d.name) or d.name == "none":
        fail("the name must be letters, digits, '_', '-' or '.', starting with a letter or digit, and not 'none'")
    if d.stage not in STAGES:
        fail(f"stage must be one of {STAGES}; got {d.stage!r}")
    if not callable(d.fn):
        fail("fn is not callable")
    unknown = set(d.needs) - NEEDS
    if unknown:
        fail(f"unknown needs {sorted(unknown)}; valid needs: {sorted(NEEDS)}")
    sig = inspect.signature(d.fn)
    params = list(sig.parameters.values())
    n_pos = 1 if d.stage == "merge" else 2
    expected = "fn(inputs, **hparams)" if d.stage == "merge" else "fn(merged, inputs, **hparams)"
    if len(params) < n_pos or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[:n_pos]):
        fail(f"a {d.stage}-stage defense's signature must be {expected}; got fn{sig}")
    rest = {p.name: p for p in params[n_pos:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    unaccepted = [h for h in d.hparams if h not in rest and not takes_kwargs]
    if unaccepted:
        fail(f"hyperparameters {unaccepted} are not parameters of fn{sig}")
    undeclared = [n for n, p in rest.items() if p.default is p.empty and n not in d.hparams]
    if undeclared:
        fail(f"fn requires {undeclared} but hparams gives them no default; add them to hparams={{...}}")
    odd = {k: type(v).__name__ for k, v in d.hparams.items() if not isinstance(v, bool | int | float | str)}
    if odd:
        fail(f"hyperparameter defaults must be bool, int, float or str (they go into the suite hash); got {odd}")
