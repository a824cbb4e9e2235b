"""Where units of work execute. The runner hands an executor the units still to run and writes what comes
back through the one store writer, in completion order; an executor only computes.

- `SerialExecutor`: one unit after another in this process, sharing one `RunContext`'s memos.
- `ProcessExecutor`: a pool of worker processes, each with its own `RunContext` over the same
  content-addressed cache (artefacts are written atomically, so workers that build the same one agree).
  Units that share an in-process memo (`Track.affinity`, e.g. one merged model under several defenses) go to
  one worker together (`affinity_batches`), so no worker recomputes what another holds.
  Units are independent functions of cached inputs, so the results equal the serial ones whatever the
  worker count (a test checks it). Workers are spawned, so, as with any `multiprocessing` spawn, the calling
  program's `__main__` must be import-safe (`mergesec` and `python -m benchmark.cli` are).
- `RayExecutor` (`benchmark.ray_executor`): units as Ray tasks across the machines of a cluster.

`make_executor` picks one by name (`mergesec run --executor`, `$MERGESEC_EXECUTOR`).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch

from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.suites import Suite
from benchmark.tracks import Unit, affinity_batches, get_track

Result = tuple[Unit, dict[str, pd.DataFrame], float]
WorkerSetup = Callable[[], None]
"""Run once in every worker process before its first unit (e.g. registering a submission's method there); it
must pickle by reference (a module-level class or function, not a closure)."""


def execute(unit: Unit, ctx: RunContext) -> tuple[dict[str, pd.DataFrame], float]:
    """One unit's result tables and its wall-clock seconds."""
    t0 = time.perf_counter()
    tables = get_track(unit.track).run_unit(unit, ctx)
    return tables, time.perf_counter() - t0


class Executor(Protocol):
    def map(self, units: list[Unit]) -> Iterator[Result]:
        """Run every unit once; yield (unit, tables, seconds) as each finishes. An error is raised at once."""
        ...


class SerialExecutor:
    """Units in order, in this process."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def map(self, units: list[Unit]) -> Iterator[Result]:
        for unit in units:
            yield unit, *execute(unit, self.ctx)


_WORKER_CTX: RunContext | None = None


def _init_worker(raw: dict[str, Any], cache_root: str, threads: int, setup: WorkerSetup | None) -> None:
    global _WORKER_CTX
    torch.set_num_threads(threads)
    if setup is not None:
        setup()
    _WORKER_CTX = RunContext(Suite(raw=raw), Cache(Path(cache_root)), progress=False)


def execute_batch(units: list[Unit], ctx: RunContext) -> list[tuple[dict[str, pd.DataFrame], float]]:
    """`execute` of each unit of an affinity batch, in order, over one context (so they share its memos)."""
    return [execute(unit, ctx) for unit in units]


def _execute_in_worker(units: list[Unit]) -> list[tuple[dict[str, pd.DataFrame], float]]:
    assert _WORKER_CTX is not None, "worker not initialised"
    return execute_batch(units, _WORKER_CTX)


class ProcessExecutor:
    """`workers` spawned processes, each on `threads` torch threads (default: this process's count, so
    the floats match a serial run's). Units go out in affinity batches; at most `2 * workers` batches are in
    flight, so a failure stops the run soon and a stop (Ctrl-C) cancels what has not started."""

    def __init__(self, suite: Suite, cache: Cache, workers: int, threads: int | None = None,
                 setup: WorkerSetup | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.suite, self.cache, self.workers, self.setup = suite, cache, workers, setup
        self.threads = threads or torch.get_num_threads()

    def map(self, units: list[Unit]) -> Iterator[Result]:
        pending = iter(affinity_batches(units))
        with ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(self.suite.raw, str(self.cache.root), self.threads, self.setup)) as pool:
            running: dict[Future, list[Unit]] = {}
            try:
                while True:
                    while len(running) < 2 * self.workers and (batch := next(pending, None)) is not None:
                        running[pool.submit(_execute_in_worker, batch)] = batch
                    if not running:
                        return
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        batch = running.pop(future)
                        for unit, (tables, seconds) in zip(batch, future.result(), strict=True):
                            yield unit, tables, seconds
            finally:
                for future in running:
                    future.cancel()


EXECUTORS = ("serial", "process", "ray")


def make_executor(name: str | None, ctx: RunContext, workers: int = 1, ray_address: str | None = None,
                  ray_cpus: float | None = None, ray_gpus: float | None = None,
                  setup: WorkerSetup | None = None) -> Executor:
    """The executor called `name` over `ctx`'s suite and cache. None picks `process` when `workers` > 1, else
    `serial`; `workers` sizes the process pool; the `ray_*` options go to `RayExecutor`; `setup` runs once in
    every worker process (this process already has what it sets up)."""
    from benchmark.errors import UnknownNameError

    name = name or ("process" if workers > 1 else "serial")
    if name == "serial":
        return SerialExecutor(ctx)
    if name == "process":
        return ProcessExecutor(ctx.suite, ctx.cache, workers, setup=setup)
    if name == "ray":
        from benchmark.ray_executor import RayExecutor, UnitResources

        return RayExecutor(ctx.suite, ctx.cache, ray_address, UnitResources.of(ctx.suite, ray_cpus, ray_gpus),
                           device=str(ctx.device), setup=setup)
    raise UnknownNameError("executor", name, list(EXECUTORS))
