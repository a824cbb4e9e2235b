"""A submission's units: the suite and tracks it runs, the units of those tracks that evaluate it, and their
run into a store on any executor. What `submit` (`benchmark.submissions.submit`) and `reproduce`
(`benchmark.submissions.reproduce`) share: both run exactly `plan_units`' units through `run_tracks`, so a
reproduction re-runs the very units a submission stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.cache import Cache
from benchmark.store import Store
from benchmark.submissions.loader import Submission
from benchmark.submissions.manifest import SubmissionError
from benchmark.submissions.registration import register_submission
from benchmark.submissions.sandbox import Limits
from benchmark.suites import Suite, load_suite


def resolve_suite(sub: Submission, suite: str | Path | None) -> Suite:
    """The suite to run: `suite` if given (it must be one the manifest claims), else the manifest's first."""
    s = load_suite(suite if suite is not None else sub.manifest.suites[0])
    if s.name not in sub.manifest.suites:
        raise SubmissionError(
            f"submission {sub.slug!r} claims results for suites {sub.manifest.suites}, not {s.name!r}; add "
            f"{s.name!r} to `suites` in submission.toml, or pass --suite {sub.manifest.suites[0]}"
        )
    return s


def claimed_tracks(sub: Submission) -> list[str]:
    """The tracks the manifest claims; an unknown one raises `UnknownNameError` with the valid names."""
    from benchmark.tracks import get_track

    for t in sub.manifest.tracks:
        get_track(t)
    return list(sub.manifest.tracks)


def methods_for(sub: Submission, suite: Suite) -> list[str]:
    """The merge methods a run of `sub` evaluates: the submission itself, or for a defense the suite's
    methods (the backdoor track pairs each with the defense)."""
    return [sub.name] if sub.kind == "merge" else list(suite.merge_methods)


def evaluates(unit: Any, sub: Submission) -> bool:
    d = unit.description
    return d.get("defense") == sub.name if sub.kind == "defense" else d.get("method") == sub.name


def units_in_store(store: Store, suite_hash: str, sub: Submission) -> pd.DataFrame:
    """unit_key and description of the units in `store` that evaluate the submission's method or defense
    (any version of its code) on the suite."""
    if not store.path.exists():
        return pd.DataFrame(columns=["unit_key", "track", "description"])
    df = store.read("SELECT unit_key, track, description FROM units_done WHERE suite_hash = ?", [suite_hash])
    field = "defense" if sub.kind == "defense" else "method"
    keep = pd.Series([json.loads(d).get(field) == sub.name for d in df.description], index=df.index, dtype=bool)
    return df[keep].reset_index(drop=True)


def plan_units(sub: Submission, suite: Suite, tracks: list[str], ctx: Any) -> list[Any]:
    """The units of the claimed tracks that evaluate the submission; a claimed track with none is an error."""
    from benchmark import runner

    units = [u for u in runner.plan(ctx, tracks, methods_for(sub, suite)) if evaluates(u, sub)]
    empty = [t for t in tracks if not any(u.track == t for u in units)]
    if empty:
        raise SubmissionError(
            f"submission {sub.slug!r} claims track(s) {empty}, but on suite {suite.name} they evaluate no "
            f"{sub.kind} like it (e.g. the suite's backdoor section restricts its methods); remove them from "
            "`tracks` in submission.toml"
        )
    return units


def register_rows(sub: Submission, store: Store, ctx: Any) -> None:
    from benchmark import runner

    store.migrate()
    runner.register_suite(store, ctx)
    if sub.kind == "merge":
        runner.register_methods(store, [sub.name])
        return
    m = sub.manifest
    store.upsert("methods", ["name", "kind"], {
        "name": m.name, "kind": "defense", "source": f"submission:{sub.slug}", "hparams": m.hyperparameters,
        "needs": [], "paper": f"{m.title or m.name} ({m.paper_url})", "code_url": m.code_url,
        "authors": ", ".join(m.authors), "code_hash": sub.code_hash, "updated_at": runner._now()})


@dataclass(frozen=True)
class Execution:
    """Where a submission's units run: `benchmark.executors.make_executor`'s `name` (serial, process, ray),
    `workers` and `ray_address`; every worker registers the submission first (`RegisterInWorker`)."""

    name: str | None = None
    workers: int = 1
    ray_address: str | None = None



DEFAULT_EXECUTION = Execution()
"""One worker, this process (`make_executor`'s serial executor)."""

def run_tracks(sub: Submission, suite: Suite, store: Store, cache: Cache, limits: Limits, progress: bool,
                command: str, execution: Execution = DEFAULT_EXECUTION) -> Any:
    """Run the units of the claimed tracks that evaluate `sub` into `store` with `benchmark.runner.run_units`
    (a `runs` row with the provenance), restricted to the submission's units (so a defense's run does not
    recompute the rest of the backdoor sweep), on `execution`'s executor. A crash inside a track becomes a
    `SubmissionError`."""
    from benchmark import runner
    from benchmark.context import RunContext
    from benchmark.executors import make_executor
    from benchmark.submissions.registration import RegisterInWorker

    register_submission(sub, limits)
    tracks = claimed_tracks(sub)
    ctx = RunContext(suite, cache, progress)
    units = plan_units(sub, suite, tracks, ctx)
    register_rows(sub, store, ctx)
    config = {"submission": sub.slug, "code_hash": sub.code_hash}
    try:
        executor = make_executor(execution.name, ctx, execution.workers, execution.ray_address,
                                 setup=RegisterInWorker(str(sub.folder), limits))
        return runner.run_units(ctx, tracks, units, store, config, command, f"{sub.slug} on {suite.name}",
                                executor)
    except SubmissionError:
        raise
    except Exception as e:
        raise SubmissionError(f"submission {sub.slug!r} failed while running the tracks: "
                              f"{type(e).__name__}: {e}") from e
