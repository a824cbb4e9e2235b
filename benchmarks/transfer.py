"""Speed of the transfer track: crafting every adversarial set of a suite vs. adding one merging method.

    python benchmarks/transfer.py [--suite digits] [--cache cache] [--methods task_arithmetic,...]

Prints (wall-clock and process CPU seconds):
1. the time to craft all adversarial examples of the suite (every task x surrogate x attack x seed), into a
   temporary cache, so the crafting is really measured and the shared cache is left untouched;
2. the time to evaluate one additional merging method against all of them: a fresh run context (as a new
   `mergesec run --methods <m>` has), the zoo loaded from the cache, the merge, every unit of the transfer
   track, and the writes to a temporary DuckDB. Every attack is made to raise during this step, so it also
   proves that a new method runs no attack;
3. their ratio.

The zoo comes from `--cache` (default $MERGESEC_CACHE or ./cache; built there if missing, timed apart).
Set OMP_NUM_THREADS to fix the thread count; the load average is printed because a shared machine slows
both steps.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.attacks import TransferAttack
from benchmark.cache import Cache, default_cache_dir
from benchmark.context import RunContext
from benchmark.store import Store
from benchmark.suites import load_suite
from benchmark.tracks import get_track
from benchmark.tracks.transfer import craft_all

PRIVATE_KINDS = ("adversarial", "surrogate_eval")


class SplitCache(Cache):
    """The zoo from the shared cache; the transfer track's own artefacts in a private folder."""

    def __init__(self, shared: Path, private: Path):
        super().__init__(shared)
        self.private = private

    def path(self, kind: str, key: str) -> Path:
        root = self.private if kind in PRIVATE_KINDS else self.root
        return root / kind / f"{key}.safetensors"


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:8.1f} s wall {self.cpu:8.1f} s CPU"


def _no_attack(*args, **kwargs):
    raise AssertionError("an attack ran while evaluating an additional merging method")


def add_method(suite, cache: Cache, store: Store, method: str) -> dict[str, Timer]:
    """Evaluate `method` against every cached adversarial set, as a fresh run does; timed by phase."""
    import torchattacks

    track = get_track("transfer")
    saved = TransferAttack.craft, torchattacks.attack.Attack.__call__
    TransferAttack.craft = _no_attack
    torchattacks.attack.Attack.__call__ = _no_attack
    times = {k: Timer() for k in ("zoo load", "merge", "evaluate", "write DuckDB", "total")}
    try:
        with times["total"]:
            ctx = RunContext(suite, cache, progress=False)
            with times["zoo load"]:
                _ = ctx.zoo
            with times["merge"]:
                for seed in suite.transfer.seeds:
                    ctx.merged(method, ctx.method_hparams(method), seed)
            ev, wr = times["evaluate"], times["write DuckDB"]
            ev.wall = ev.cpu = wr.wall = wr.cpu = 0.0
            for unit in track.plan(ctx, [method]):
                t0, c0 = time.perf_counter(), time.process_time()
                tables = track.run_unit(unit, ctx)
                t1, c1 = time.perf_counter(), time.process_time()
                store.write_unit(unit.key, unit.track, suite.hash, "benchmark", unit.description, tables, t1 - t0)
                ev.wall, ev.cpu = ev.wall + t1 - t0, ev.cpu + c1 - c0
                wr.wall, wr.cpu = wr.wall + time.perf_counter() - t1, wr.cpu + time.process_time() - c1
    finally:
        TransferAttack.craft, torchattacks.attack.Attack.__call__ = saved
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="digits")
    p.add_argument("--cache", type=Path, default=None, help="zoo cache (default $MERGESEC_CACHE or ./cache)")
    p.add_argument("--methods", default="task_arithmetic",
                   help="comma-separated methods, each measured as 'the one additional method'")
    args = p.parse_args()
    suite = load_suite(args.suite)
    spec = suite.transfer
    import torch

    print(f"suite {suite.name} ({suite.hash}): {len(suite.task_names)} tasks x {len(spec.surrogates)} surrogates x "
          f"{len(spec.attacks)} attacks x {len(spec.seeds)} seeds, subset {spec.subset_size}; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="mergesec-bench-") as tmp:
        cache = SplitCache(args.cache or default_cache_dir(), Path(tmp) / "cache")
        ctx = RunContext(suite, cache, progress=False)
        with Timer() as tz:
            _ = ctx.zoo
        print(f"zoo (from {cache.root}):{tz}")
        with Timer() as tc:
            counts = craft_all(ctx)
        n_sets = counts["crafted"]
        print(f"craft all adversarial examples ({n_sets} sets):{tc}")
        store = Store(Path(tmp) / "bench.duckdb")
        store.migrate()
        for method in args.methods.split(","):
            times = add_method(suite, cache, store, method.strip())
            total = times["total"]
            n_units = len(suite.task_names) * len(spec.surrogates) * len(spec.attacks) * len(spec.seeds)
            print(f"one additional method, {method} ({n_units} units, no attack run):{total}")
            for k in ("zoo load", "merge", "evaluate", "write DuckDB"):
                print(f"    {k:14s}{times[k]}")
            print(f"    ratio crafting / additional method: {tc.wall / total.wall:.1f}x wall, "
                  f"{tc.cpu / total.cpu:.1f}x CPU")
        print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
