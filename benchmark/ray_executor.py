"""The Ray executor: units of work as Ray tasks on a cluster (a lab's GPU nodes, KubeRay, `ray up`).

The contract is `benchmark.executors.Executor`'s: `map(units)` yields `(unit, tables, seconds)` as units
finish and never touches the results database; the driver (`benchmark.runner`) stays its one writer.

- Each affinity batch of units (`benchmark.tracks.affinity_batches`; most batches are one unit) is one task
  declaring its resources (`UnitResources`: CPUs, and a GPU fraction so several
  ViT-B/32 units share one GPU), taken from the suite's `execution:` section or the command line.
- Workers share the content-addressed cache through a shared filesystem mounted at the same path on every
  node; artefacts are written atomically and built under a per-artefact file lock (`benchmark.cache`), so
  an artefact needed by many units is computed once and two workers never corrupt it. A worker that cannot
  see the driver's cache fails the run with one clear message.
- A worker killed mid-unit has its unit re-run by Ray (`max_retries`); since a unit is a pure function of
  its cached inputs, the retried unit returns the same rows and the driver stores them once.
- Results do not depend on the cluster: every worker runs torch on the driver's thread count.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.cache import Cache
from benchmark.errors import MergesecError, MissingResourceError
from benchmark.suites import Suite
from benchmark.tracks import Unit, affinity_batches

RAY_INSTALL = "pip install 'mergesec[ray]'"
CACHE_ID_FILE = ".mergesec-cache-id"
MAX_RETRIES = 3  # Ray re-runs a unit whose worker process died this many times before the run fails


class RayExecutorError(MergesecError):
    """The Ray cluster cannot run the units (not installed, unreachable, a worker without the cache)."""


def require_ray() -> Any:
    """The `ray` module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise MissingResourceError(
            f"--executor ray needs Ray, which is not installed here; install it with: {RAY_INSTALL}") from e
    return ray


@dataclass(frozen=True)
class UnitResources:
    """What one unit asks of the cluster: Ray `num_cpus` and `num_gpus` (fractions share a device)."""

    cpus: float = 1.0
    gpus: float = 0.0

    @classmethod
    def of(cls, suite: Suite, cpus: float | None = None, gpus: float | None = None) -> UnitResources:
        """The suite's `execution: {cpus_per_unit, gpus_per_unit}` (not part of the protocol's hash),
        overridden by explicit values."""
        spec = suite.execution
        res = cls(float(cpus if cpus is not None else spec.get("cpus_per_unit", 1.0)),
                  float(gpus if gpus is not None else spec.get("gpus_per_unit", 0.0)))
        if res.cpus <= 0 or res.gpus < 0:
            raise RayExecutorError(f"unit resources must be cpus > 0 and gpus >= 0, got {res}; fix the suite's "
                                   "execution: section or the --ray-cpus/--ray-gpus options")
        return res


def cache_id(cache: Cache) -> str:
    """The cache's identity token (created once): a worker that reads another token, or none, is not looking
    at the driver's cache."""
    path = cache.root / CACHE_ID_FILE
    if not path.exists():
        cache.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{CACHE_ID_FILE}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(uuid.uuid4().hex)
        try:
            os.link(tmp, path)  # first writer wins; a concurrent driver keeps the token already there
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


_CONTEXTS: dict[tuple[str, str, str, Any], Any] = {}


def run_units_on_worker(raw: dict[str, Any], cache_root: str, token: str, threads: int, units: list[Unit],
                        device: str = "cpu", setup: Any = None) -> list[tuple[dict[str, pd.DataFrame], float]]:
    """Body of the Ray task: one affinity batch of units (`benchmark.tracks.affinity_batches`) in this worker
    process on `device` (a GPU task sees only the GPU Ray gave it, as `cuda`), with a `RunContext` kept for the
    later units of the same suite and cache (the memos of a worker, as in `ProcessExecutor`)."""
    import torch

    from benchmark.context import RunContext
    from benchmark.executors import execute_batch

    root = Path(cache_root)
    try:
        seen = (root / CACHE_ID_FILE).read_text().strip()
    except OSError:
        seen = None
    if seen != token:
        raise RayExecutorError(
            f"the Ray worker on {socket.gethostname()} cannot see the driver's cache at {root} "
            f"({'no cache there' if seen is None else 'another cache is mounted there'}); mount the same shared "
            "filesystem (NFS, CephFS, Lustre) at that path on every node, or pass a shared --cache")
    torch.set_num_threads(threads)
    suite = Suite(raw=raw)
    key = (suite.hash, cache_root, device, setup)
    if key not in _CONTEXTS:
        _CONTEXTS.clear()
        if setup is not None:  # `benchmark.executors.WorkerSetup`, once per worker process and run
            setup()
        _CONTEXTS[key] = RunContext(suite, Cache(root), progress=False, device=torch.device(device))
    return execute_batch(units, _CONTEXTS[key])


class RayExecutor:
    """Units as Ray tasks on the cluster at `address` (None: `$RAY_ADDRESS`, else a new local cluster).

    At most `max_in_flight` tasks (affinity batches) are submitted at a time (default: twice what the cluster
    can run at once), so a failing unit stops the run soon and a stop cancels what has not started.
    """

    def __init__(self, suite: Suite, cache: Cache, address: str | None = None,
                 resources: UnitResources | None = None, threads: int | None = None,
                 max_in_flight: int | None = None, max_retries: int = MAX_RETRIES, device: str = "cpu",
                 setup: Any = None):
        import torch

        self.suite, self.cache, self.address, self.device, self.setup = suite, cache, address, device, setup
        self.resources = resources or UnitResources.of(suite)
        self.threads = threads or torch.get_num_threads()
        self.max_in_flight, self.max_retries = max_in_flight, max_retries

    def _connect(self, ray: Any) -> bool:
        """Join the cluster; True if this call started the connection (and must end it)."""
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayExecutorError(f"cannot reach a Ray cluster at {self.address or 'RAY_ADDRESS/local'}: {e}; "
                                   "start one with `ray start --head` or pass --ray-address HOST:PORT") from e
        return True

    def _window(self, ray: Any) -> int:
        if self.max_in_flight:
            return self.max_in_flight
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(2 * cpus / self.resources.cpus))

    def map(self, units: list[Unit]) -> Iterator[tuple[Unit, dict[str, pd.DataFrame], float]]:
        if not units:
            return
        ray = require_ray()
        started = self._connect(ray)
        try:
            task = ray.remote(run_units_on_worker).options(
                num_cpus=self.resources.cpus, num_gpus=self.resources.gpus,
                max_retries=self.max_retries, retry_exceptions=False, name="mergesec-unit")
            raw, root, token = ray.put(self.suite.raw), str(self.cache.root.resolve()), cache_id(self.cache)
            window, pending, running = self._window(ray), iter(affinity_batches(units)), {}
            try:
                while True:
                    while len(running) < window and (batch := next(pending, None)) is not None:
                        running[task.remote(raw, root, token, self.threads, batch, self.device, self.setup)] = batch
                    if not running:
                        return
                    ready, _ = ray.wait(list(running), num_returns=1)
                    for ref in ready:
                        batch = running.pop(ref)
                        for unit, (tables, seconds) in zip(batch, self._result(ray, ref, batch), strict=True):
                            yield unit, tables, seconds
            finally:
                for ref in running:
                    ray.cancel(ref)
        finally:
            if started:
                ray.shutdown()

    def _result(self, ray: Any, ref: Any, batch: list[Unit]) -> list[tuple[dict[str, pd.DataFrame], float]]:
        from ray.exceptions import RayTaskError, WorkerCrashedError

        try:
            return ray.get(ref)
        except RayTaskError as e:
            if isinstance(e.cause, MergesecError):
                raise e.cause from None
            raise
        except WorkerCrashedError as e:
            unit, more = batch[0], f" and the {len(batch) - 1} units batched with it" if len(batch) > 1 else ""
            raise RayExecutorError(f"unit {unit.label()} ({unit.key}){more}: its Ray worker died "
                                   f"{self.max_retries + 1} times; see the worker logs under "
                                   "/tmp/ray/session_latest/logs") from e
