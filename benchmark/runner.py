"""The runner: plans units, skips those already stored, runs the rest, hands results to the one writer.

Units are independent and keyed by content, so a killed run resumes where it stopped and a repeated run
writes nothing twice. At paper scale `run_units` is the place where units fan out to Ray workers; the
store writer stays single.
"""

import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from tqdm.auto import tqdm

from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.hashing import content_hash
from benchmark.provenance import provenance
from benchmark.store import Store
from benchmark.suites import Suite
from benchmark.tracks import Unit, get_track


@dataclass
class RunSummary:
    run_id: str
    units_total: int
    units_run: int
    units_skipped: int
    seconds: float


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def register_suite(store: Store, ctx: RunContext) -> None:
    """Record the suite spec and the zoo's model keys (idempotent)."""
    suite = ctx.suite
    store.upsert("suites", ["suite_hash"], {"suite_hash": suite.hash, "suite": suite.name,
                                            "version": suite.version, "spec": suite.raw,
                                            "registered_at": _now()})
    for name, key in ctx.zoo.keys.items():
        role, _, task = name.partition("/")
        store.upsert("models", ["model_key"], {"model_key": key, "suite_hash": suite.hash, "role": role,
                                               "task": task or None, "spec": {"name": name}})


def register_methods(store: Store, methods: list[str]) -> None:
    from benchmark.merging import get_method

    for name in methods:
        m = get_method(name)
        store.upsert("methods", ["name", "kind"], {
            "name": m.name, "kind": "merge", "source": m.source, "hparams": m.hparams,
            "needs": sorted(m.needs), "paper": m.paper, "code_url": getattr(m, "code_url", None),
            "authors": getattr(m, "authors", None), "code_hash": getattr(m, "code_hash", None),
            "updated_at": _now()})


def plan(ctx: RunContext, tracks: list[str], methods: list[str]) -> list[Unit]:
    return [u for t in tracks for u in get_track(t).plan(ctx, methods)]


def run(
    suite: Suite,
    tracks: list[str],
    store: Store,
    cache: Cache,
    methods: list[str] | None = None,
    progress: bool = True,
    command: str = "",
) -> RunSummary:
    """Run `tracks` of `suite` for `methods` (default: the suite's) into `store`; resumable, idempotent."""
    t0 = time.perf_counter()
    methods = list(methods or suite.merge_methods)
    ctx = RunContext(suite, cache, progress)
    store.migrate()
    register_suite(store, ctx)
    register_methods(store, methods)
    units = plan(ctx, tracks, methods)
    done = store.done_keys([u.key for u in units])
    todo = [u for u in units if u.key not in done]
    run_id = uuid.uuid4().hex[:16]
    prov = provenance()
    config = {"suite_hash": suite.hash, "tracks": sorted(tracks), "methods": sorted(methods)}
    run_row = {
        "run_id": run_id, "suite": suite.name, "suite_hash": suite.hash, "tracks": ",".join(tracks),
        "command": command, "config_hash": content_hash(config), "git_commit": prov["git_commit"],
        "mergesec_version": prov["mergesec_version"], "packages": prov["packages"],
        "hardware": prov["hardware"], "started_at": _now(), "status": "running",
        "units_total": len(units), "units_run": 0}
    store.upsert("runs", ["run_id"], run_row)
    n_run, status, error = 0, "ok", None
    try:
        for unit in tqdm(todo, desc=f"{suite.name}: {'+'.join(tracks)}", disable=not progress, unit="unit"):
            u0 = time.perf_counter()
            tables = get_track(unit.track).run_unit(unit, ctx)
            store.write_unit(unit.key, unit.track, suite.hash, run_id, unit.description, tables,
                             time.perf_counter() - u0)
            n_run += 1
    except BaseException as e:
        status, error = ("interrupted" if isinstance(e, KeyboardInterrupt) else "failed"), traceback.format_exc(-3)
        raise
    finally:
        run_row.update(ended_at=_now(), status=status, units_run=n_run, error=error)
        store.upsert("runs", ["run_id"], run_row)
    return RunSummary(run_id, len(units), n_run, len(units) - len(todo), time.perf_counter() - t0)
