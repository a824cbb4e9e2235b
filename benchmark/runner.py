"""The runner: plans units, skips those already stored, runs the rest, hands results to the one writer.

Units are independent and keyed by content, so a killed run resumes where it stopped and a repeated run
writes nothing twice. A unit whose setting is stored under another key (the method's code or
hyperparameters changed) replaces those rows, so a method's name never stands for two versions of it. At
paper scale an executor (`benchmark.executors`) fans units out to worker processes or Ray workers; the store
writer stays single.
"""

import json
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from tqdm.auto import tqdm

from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.executors import Executor, SerialExecutor, make_executor
from benchmark.hashing import content_hash
from benchmark.provenance import provenance
from benchmark.store import Store, UnitRows
from benchmark.suites import Suite
from benchmark.tracks import Unit, get_track

FLUSH_SECONDS = 2.0  # finished units are written at least this often (one file open per batch, not per unit)


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
    """Record the suite spec and the zoo's model keys, every fine-tuning seed's (idempotent)."""
    suite = ctx.suite
    store.upsert("suites", ["suite_hash"], {"suite_hash": suite.hash, "suite": suite.name,
                                            "version": suite.version, "spec": suite.raw,
                                            "registered_at": _now()})
    for zoo in (ctx.zoo.for_seed(s) for s in suite.finetune_seeds):
        for name, key in zoo.keys.items():
            role, _, task = name.partition("/")
            seed = {"seed": zoo.seed} if role == "finetuned" and len(suite.finetune_seeds) > 1 else {}
            store.upsert("models", ["model_key"], {"model_key": key, "suite_hash": suite.hash, "role": role,
                                                   "task": task or None,
                                                   "spec": {"name": name, **seed, **zoo.sources.get(name, {})}})


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_stale_runs(store: Store) -> list[str]:
    """Runs still marked `running` whose driver process is gone (killed, machine crash) become `interrupted`:
    their finished units are stored and the next run resumes after them. Only runs started on this host are
    judged (a driver elsewhere cannot be checked from here). Returns the run ids changed."""
    if not store.path.exists():
        return []
    host = socket.gethostname()
    running = store.read("SELECT run_id, driver_pid FROM runs WHERE status = 'running' AND driver_host = ?", [host])
    stale = [r for r, pid in running.itertuples(index=False) if pid is None or not _alive(int(pid))]
    if stale:
        store.mark_runs(stale, "interrupted", f"the driver process on {host} ended without closing the run")
    return stale


def superseded(store: Store, suite_hash: str, units: list[Unit]) -> dict[str, list[str]]:
    """Stored units of the suite that measure the same setting as one of `units` with other code or
    hyperparameters (an earlier version of a method, defense or attack): unit key -> the keys it replaces."""
    if not units or not store.path.exists():
        return {}
    latest = {u.setting: u.key for u in units}
    stored = store.read("SELECT unit_key, track, description FROM units_done WHERE suite_hash = ? "
                        "AND list_contains(?, track)", [suite_hash, sorted({u.track for u in units})])
    out: dict[str, list[str]] = {}
    for key, track, description in stored.itertuples(index=False):
        new = latest.get(Unit(track, json.loads(description)).setting)
        if new is not None and new != key:
            out.setdefault(new, []).append(key)
    return out


def run_units(
    ctx: RunContext,
    tracks: list[str],
    units: list[Unit],
    store: Store,
    config: dict[str, Any],
    command: str = "",
    label: str = "",
    executor: Executor | None = None,
) -> RunSummary:
    """Run the `units` (planned from `tracks`) not yet in `store`, under a `runs` row with the provenance;
    each unit's rows replace those of earlier versions of its setting. `config` (with the suite hash and
    tracks) identifies the run. `executor` computes the units (default: serially in `ctx`); this function
    stays the one writer. Resumable, idempotent; a failure marks the run and is raised."""
    t0 = time.perf_counter()
    suite = ctx.suite
    done = store.done_keys([u.key for u in units])
    todo = [u for u in units if u.key not in done]
    old = superseded(store, suite.hash, units)
    stale_done = [k for u in units if u.key in done for k in old.get(u.key, [])]
    if stale_done:
        store.forget_units(stale_done)
    mark_stale_runs(store)
    run_id = uuid.uuid4().hex[:16]
    prov = provenance()
    run_row = {
        "run_id": run_id, "suite": suite.name, "suite_hash": suite.hash, "tracks": ",".join(tracks),
        "command": command, "git_commit": prov["git_commit"],
        "config_hash": content_hash({"suite_hash": suite.hash, "tracks": sorted(tracks), **config}),
        "mergesec_version": prov["mergesec_version"], "packages": prov["packages"],
        "hardware": {**prov["hardware"], "batch_sizes": ctx.batch_sizes}, "started_at": _now(), "status": "running",
        "driver_host": socket.gethostname(), "driver_pid": os.getpid(),
        "units_total": len(units), "units_run": 0}
    store.upsert("runs", ["run_id"], run_row)
    n_run, status, error, buffer, flushed = 0, "ok", None, [], time.monotonic()

    def flush() -> None:
        nonlocal n_run, flushed
        store.write_units(buffer)
        n_run += len(buffer)
        buffer.clear()
        flushed = time.monotonic()

    try:
        results = (executor or SerialExecutor(ctx)).map(todo)
        for unit, tables, seconds in tqdm(results, total=len(todo), desc=label or f"{suite.name}: {'+'.join(tracks)}",
                                          disable=not ctx.progress, unit="unit"):
            buffer.append(UnitRows(unit.key, unit.track, suite.hash, run_id, unit.description, tables, seconds,
                                   old.get(unit.key)))
            if time.monotonic() - flushed >= FLUSH_SECONDS:
                flush()
    except BaseException as e:
        status, error = ("interrupted" if isinstance(e, KeyboardInterrupt) else "failed"), traceback.format_exc(-3)
        raise
    finally:
        try:
            flush()  # what finished before a failure or Ctrl-C is kept
        except BaseException:
            status, error = ("failed" if status == "ok" else status), error or traceback.format_exc(-3)
            raise
        finally:
            run_row.update(ended_at=_now(), status=status, units_run=n_run, error=error)
            store.upsert("runs", ["run_id"], run_row)
    return RunSummary(run_id, len(units), n_run, len(units) - len(todo), time.perf_counter() - t0)


def run(
    suite: Suite,
    tracks: list[str],
    store: Store,
    cache: Cache,
    methods: list[str] | None = None,
    progress: bool = True,
    command: str = "",
    workers: int = 1,
    executor: str | None = None,
    ray_address: str | None = None,
) -> RunSummary:
    """Run `tracks` of `suite` for `methods` (default: the suite's) into `store`; resumable, idempotent.
    `executor` (`benchmark.executors.make_executor`: serial, process with `workers` processes, or ray at
    `ray_address`) computes the units; the results are the same whichever computes them."""
    t0 = time.perf_counter()
    methods = list(methods or suite.merge_methods)
    ctx = RunContext(suite, cache, progress)
    store.migrate()
    register_suite(store, ctx)
    register_methods(store, methods)
    units = plan(ctx, tracks, methods)
    summary = run_units(ctx, tracks, units, store, {"methods": sorted(methods)}, command,
                        executor=make_executor(executor, ctx, workers, ray_address))
    return replace(summary, seconds=time.perf_counter() - t0)
