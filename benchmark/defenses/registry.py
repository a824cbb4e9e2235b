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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from benchmark.errors import MergesecError
from benchmark.merging.registry import NEEDS as MERGE_NEEDS
from benchmark.merging.validate import _type_ok
from benchmark.registry import Registry, check_name, check_signature

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


def _check(d: Defense) -> None:
    def fail(problem: str) -> NoReturn:
        raise DefenseError(f"cannot register defense {d.name!r}: {problem}")

    check_name(d.name, fail, reserved="none")
    if d.stage not in STAGES:
        fail(f"stage must be one of {STAGES}; got {d.stage!r}")
    expected = "fn(inputs, **hparams)" if d.stage == "merge" else "fn(merged, inputs, **hparams)"
    check_signature(d.fn, needs=d.needs, valid_needs=NEEDS, hparams=d.hparams,
                    n_positional=1 if d.stage == "merge" else 2,
                    rule=f"a {d.stage}-stage defense's signature must be {expected}", fail=fail)


DEFENSES: Registry[Defense] = Registry(
    "defense", Defense, group=ENTRY_POINT_GROUP, marker="__defense__", builtin_prefix="benchmark.defenses.",
    error=DefenseError, check=_check)
"""The defenses; entry points are loaded on the first `get_defense`/`list_defenses`."""

register = DEFENSES.register
get_defense = DEFENSES.get
list_defenses = DEFENSES.names


def register_defense(
    name: str, *, stage: str, needs: Iterable[str] = (), hparams: Mapping[str, Any] | None = None, paper: str = "",
    citation: str = "", replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `fn` as defense `name` at `stage` ("merge" or "post"); returns `fn` unchanged
    (marked `__defense__`). `citation` defaults to the docstring; `source` is "builtin" for mergesec's own
    defenses and "plugin:<module>" otherwise."""
    return DEFENSES.decorator(replace=replace, name=name, stage=stage, needs=frozenset(needs),
                              hparams=dict(hparams or {}), paper=paper, citation=citation)
