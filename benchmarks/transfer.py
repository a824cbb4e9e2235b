"""Speed of the transfer track: crafting every adversarial set of a suite vs. adding one merging method, and
the work a method costs with one and with two workers.

    python benchmarks/transfer.py [--suite digits] [--cache cache] [--methods task_arithmetic,...] [--no-workers]

Prints (wall-clock and process CPU seconds):
1. the time to craft all adversarial examples of the suite (every task x surrogate x attack x seed), into a
   temporary cache, so the crafting is really measured and the shared cache is left untouched;
2. the time to evaluate one additional merging method against all of them: a fresh run context (as a new
   `mergesec run --methods <m>` has), the zoo loaded from the cache, the merge, every unit of the transfer
   track, and the writes to a temporary DuckDB (one batch, as the runner writes). Every attack is made to
   raise during this step, so it also proves that a new method runs no attack;
3. their ratio (the target: adding a method costs at most 1/20 of crafting, i.e. a ratio >= 20);
4. per method, the merges and the forward passes (batches and images, by kind) that `mergesec run -t merge
   -t transfer --methods <m>` does with `-j 1` and with `-j 2`, counted from `$MERGESEC_TRACE` in every
   worker process, each run from a copy of the crafted cache without merged models or target evaluations
   (the counts must be equal).

The zoo comes from `--cache` (default $MERGESEC_CACHE or ./cache; built there if missing, timed apart).
Set OMP_NUM_THREADS to fix the thread count; the load average is printed because a shared machine slows
both steps.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import trace
from benchmark.attacks import TransferAttack
from benchmark.cache import Cache, default_cache_dir
from benchmark.context import RunContext
from benchmark.errors import run_main
from benchmark.store import Store, UnitRows
from benchmark.suites import load_suite
from benchmark.tracks import get_track
from benchmark.tracks.transfer import craft_all

PRIVATE_KINDS = ("adversarial", "surrogate_eval", "merged", "target_eval", "clean_accuracy")
PER_METHOD_KINDS = ("merged", "target_eval")  # removed before each counted run: a new method has none


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
            rows = []
            with times["evaluate"]:
                for unit in track.plan(ctx, [method]):
                    t0 = time.perf_counter()
                    tables = track.run_unit(unit, ctx)
                    rows.append(UnitRows(unit.key, unit.track, suite.hash, "benchmark", unit.description, tables,
                                         time.perf_counter() - t0))
            with times["write DuckDB"]:
                store.write_units(rows)
    finally:
        TransferAttack.craft, torchattacks.attack.Attack.__call__ = saved
    return times


def count_work(suite_arg: str, cache: Cache, method: str, workers: int, tmp: Path) -> Counter:
    """Merges and forward passes (batches and images, by kind) of `mergesec run -t merge -t transfer --methods
    <method> -j <workers>` from a copy of `cache` without any method's merged models or target evaluations."""
    root = tmp / f"count-{method}-j{workers}"
    shutil.copytree(cache.root, root, symlinks=True, ignore=lambda d, names: [n for n in names if n in PRIVATE_KINDS])
    shutil.copytree(cache.private, root, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n in PER_METHOD_KINDS])
    log = root / "trace.jsonl"
    subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--suite", suite_arg, "-t", "merge", "-t",
                    "transfer", "--methods", method, "--db", str(root / "db.duckdb"), "--cache", str(root), "-q",
                    "-j", str(workers)], check=True, env={**os.environ, trace.ENV: str(log)},
                   cwd=Path(__file__).resolve().parents[1], capture_output=True)
    counts: Counter = Counter()
    for e in trace.read(log):
        kind = e["event"] if e["event"] == "merge" else f"{e['event']} {e['what']}"
        counts[f"{kind} (calls)"] += 1
        if "images" in e:
            counts[f"{kind} (images)"] += e["images"]
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="digits")
    p.add_argument("--cache", type=Path, default=None, help="zoo cache (default $MERGESEC_CACHE or ./cache)")
    p.add_argument("--methods", default="task_arithmetic",
                   help="comma-separated methods, each measured as 'the one additional method'")
    p.add_argument("--no-workers", action="store_true", help="skip counting the work with -j 1 and -j 2")
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
                  f"{tc.cpu / total.cpu:.1f}x CPU (target >= 20x)")
        if not args.no_workers:
            for method in args.methods.split(","):
                counts = {j: count_work(args.suite, cache, method.strip(), j, Path(tmp)) for j in (1, 2)}
                print(f"work for {method} (merge + transfer tracks), -j 1 vs -j 2:"
                      f"{' equal' if counts[1] == counts[2] else ' DIFFERENT'}")
                for k in sorted(set(counts[1]) | set(counts[2])):
                    print(f"    {k:34s}{counts[1][k]:8d}{counts[2][k]:8d}")
        print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_main(main)
