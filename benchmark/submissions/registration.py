"""Register a submission from its manifest alone: a merge method in `benchmark.merging`, a defense in
`benchmark.defenses` (the backdoor track's registry). Nothing from the folder is imported here: the
registered `fn` runs the entry point in the sandbox (`loader.sandboxed_call`).

Both kinds are the registry's own dataclass (`MergeMethod`, `Defense`) extended with the same provenance
fields; the runner stores `code_hash`, `authors` and `code_url` in the `methods` table, and `code_hash` is
part of every unit key, so a changed submission runs again and an unchanged one is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, make_dataclass
from typing import Any

from benchmark.submissions.data import CallData, from_context
from benchmark.submissions.loader import Submission, sandboxed_call
from benchmark.submissions.manifest import SubmissionError
from benchmark.submissions.sandbox import Limits

PROVENANCE_FIELDS = ("code_hash", "authors", "code_url", "slug", "folder", "license", "paper_url")


class Sandboxed:
    """`fn(pretrained, finetuned, **hparams)` of a data-free submission, run in the sandbox: the merged state
    dict of a merge method, or the list of defended fine-tuned state dicts of a defense."""

    def __init__(self, submission: Submission, limits: Limits):
        self.submission, self.limits = submission, limits
        self.needs = frozenset(submission.manifest.needs)
        self.__doc__ = submission.manifest.description or submission.manifest.title
        self.__module__ = f"submission:{submission.slug}"

    def __call__(self, pretrained: Any, finetuned: list[Any], **hparams: Any) -> Any:
        return self.run(pretrained, finetuned, CallData(self.needs), hparams)

    def run(self, pretrained: Any, finetuned: list[Any], data: CallData, hparams: dict[str, Any]) -> Any:
        return sandboxed_call(self.submission, pretrained, finetuned, hparams, self.limits, data=data)[0]


class SandboxedSeeded(Sandboxed):
    """`fn(pretrained, finetuned, seed, **hparams)` of a merge submission that needs only "seed"."""

    def __call__(self, pretrained: Any, finetuned: list[Any], seed: int, **hparams: Any) -> Any:  # type: ignore[override]
        return self.run(pretrained, finetuned, CallData(self.needs, seed=int(seed)), hparams)


class SandboxedWithData(Sandboxed):
    """`fn(ctx, **hparams)` of a data-dependent merge submission: exactly the declared parts of the
    `MergeContext` go into the sandbox as files (`data.from_context`)."""

    def __call__(self, ctx: Any, **hparams: Any) -> Any:  # type: ignore[override]
        data = from_context(ctx, self.needs, self.submission.slug)
        return self.run(ctx.pretrained, ctx.finetuned, data, hparams)


def sandboxed(sub: Submission, limits: Limits) -> Sandboxed:
    """The registry `fn` for the submission's needs (the built-in methods' contract, `MergeMethod`)."""
    needs = frozenset(sub.manifest.needs)
    if needs - {"seed"}:
        return SandboxedWithData(sub, limits)
    return SandboxedSeeded(sub, limits) if needs else Sandboxed(sub, limits)


@functools.cache
def submitted_class(base: type, name: str) -> type:
    """`base` (a registry's frozen dataclass) with the submission's provenance fields (all strings)."""
    doc = f"A {base.__name__} from `submissions/<slug>/`; `fn` runs in the sandbox."
    return make_dataclass(name, [(f, str, "") for f in PROVENANCE_FIELDS], bases=(base,), frozen=True,
                          namespace={"__module__": __name__, "__doc__": doc})


def _fields(sub: Submission, fn: Callable[..., Any]) -> dict[str, Any]:
    """The registry fields both kinds take from the manifest."""
    m = sub.manifest
    return {"name": m.name, "fn": fn, "needs": frozenset(m.needs), "hparams": dict(m.hyperparameters),
            "paper": f"{m.title or m.name} ({m.paper_url})", "citation": m.citation or m.description,
            "source": f"submission:{sub.slug}", "code_hash": sub.code_hash, "authors": ", ".join(m.authors),
            "code_url": m.code_url, "slug": sub.slug, "folder": str(sub.folder), "license": m.license,
            "paper_url": m.paper_url}


def build_method(sub: Submission, limits: Limits | None = None) -> Any:
    """The `SubmittedMethod` of a merge submission (not registered)."""
    from benchmark.merging.registry import MergeMethod

    if sub.kind != "merge":
        raise SubmissionError(f"submission {sub.slug!r} is a {sub.kind}, not a merge method")
    cls = submitted_class(MergeMethod, "SubmittedMethod")
    return cls(**_fields(sub, sandboxed(sub, limits or Limits.from_env())), seed_free=sub.manifest.seed_free)


def build_defense(sub: Submission, limits: Limits | None = None) -> Any:
    """The `SubmittedDefense` of a defense submission (not registered): a data-free `stage="merge"` defense
    returning `CleanedInputs` (see `defense_glue.MergeStageDefense`)."""
    from benchmark.defenses import Defense
    from benchmark.submissions.defense_glue import MergeStageDefense

    if sub.kind != "defense":
        raise SubmissionError(f"submission {sub.slug!r} is a {sub.kind}, not a defense")
    cls = submitted_class(Defense, "SubmittedDefense")
    return cls(stage="merge", **_fields(sub, MergeStageDefense(Sandboxed(sub, limits or Limits.from_env()))))


@dataclass(frozen=True)
class _Registry:
    what: str
    get: Callable[[str], Any]
    register: Callable[..., Any]
    error: type[Exception]
    build: Callable[[Submission, Limits], Any]


def _registry(kind: str) -> _Registry:
    if kind == "merge":
        from benchmark.merging.registry import MergeRegistrationError, get_method, register_method

        return _Registry("merge method", get_method, register_method, MergeRegistrationError, build_method)
    from benchmark.defenses import DefenseError, get_defense, register

    return _Registry("defense", get_defense, register, DefenseError, build_defense)


def register_submission(sub: Submission, limits: Limits | None = None) -> Any:
    """Register the submission under its name in its kind's registry. Re-registering the same slug replaces
    it; clashing with another method or defense is an error."""
    from benchmark.errors import UnknownNameError

    reg = _registry(sub.kind)
    try:
        old = reg.get(sub.name)
    except UnknownNameError:
        old = None
    if old is not None and old.source != f"submission:{sub.slug}":
        raise SubmissionError(
            f"submission {sub.slug!r}: field `name`: {sub.name!r} is already the name of the {reg.what} from "
            f"{old.source}; pick another name (and rename the folder to match)"
        )
    try:
        return reg.register(reg.build(sub, limits or Limits.from_env()), replace=old is not None)
    except reg.error as e:
        raise SubmissionError(f"submission {sub.slug!r}: {e}") from None


@dataclass(frozen=True)
class RegisterInWorker:
    """`benchmark.executors.WorkerSetup` for a submission's units: loads and registers the submission in a
    worker process (a `-j` or Ray worker), so its method or defense is found there as in the driver."""

    folder: str
    limits: Limits

    def __call__(self) -> None:
        from benchmark.submissions.loader import load_submission

        register_submission(load_submission(self.folder), self.limits)
