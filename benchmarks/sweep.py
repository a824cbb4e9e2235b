"""Wall and CPU time of a suite's sweep, per track and per executor.

    python benchmarks/sweep.py [--suite digits] [--tracks merge,transfer,backdoor] [--methods a,b]
                               [--executors serial,process,ray] [--workers 2] [--warm] [--keep DIR]

For each executor the sweep runs from a cache holding only the zoo (so every adversarial set, backdoored
upload and defense artefact is really computed; `--warm` reuses the artefacts of the executor before, to
show the per-unit overhead alone) into a fresh database, one track after another, and prints per track:
units, wall seconds, CPU seconds (this process and its worker processes; for Ray the cluster's worker
processes on this machine), the sum of the units' own seconds, and the executor's overhead per unit
(wall × parallel slots − unit seconds, over units) and the 1-minute load average when the track ended. The
zoo is built first (timed apart) in `--cache`. `--keep DIR` keeps each executor's database and cache
(`DIR/<i>-<executor>/`) to compare their rows and artefacts with another run's.
`ray` starts a local cluster on 127.0.0.1 with `--workers` CPUs. The machine's load average is printed
before and after: on a shared machine every number is slower.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import runner
from benchmark.cache import Cache, default_cache_dir
from benchmark.context import RunContext
from benchmark.errors import run_main
from benchmark.executors import make_executor
from benchmark.store import Store
from benchmark.suites import load_suite
from benchmark.zoo import build_zoo

ZOO_KINDS = ("pretrained", "head", "finetuned")


def _ray_workers_cpu() -> float:
    """CPU seconds of the Ray worker processes on this machine (their /proc titles start with 'ray::')."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def _cpu(executor: str) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return cpu + (_ray_workers_cpu() if executor == "ray" else 0.0)


def _zoo_cache(zoo: Path, dst: Path) -> Cache:
    for kind in ZOO_KINDS:
        shutil.copytree(zoo / kind, dst / kind)
    return Cache(dst)


def sweep(suite_name: str, tracks: list[str], methods: list[str] | None, executor: str, workers: int,
          zoo: Path, work: Path, cache: Cache | None) -> tuple[list[dict], Cache]:
    """One executor's sweep into a fresh database under `work`, from `cache` (default: a copy of the zoo)."""
    suite = load_suite(suite_name)
    work.mkdir(parents=True)
    cache = cache or _zoo_cache(zoo, work / "cache")
    store = Store(work / "results.duckdb")
    store.migrate()
    ctx = RunContext(suite, cache, progress=False)
    runner.register_suite(store, ctx)
    methods = methods or list(suite.merge_methods)
    runner.register_methods(store, methods)
    ex = make_executor(executor, ctx, workers)
    rows = []
    for track in tracks:
        units = runner.plan(ctx, [track], methods)
        wall, cpu = time.perf_counter(), _cpu(executor)
        summary = runner.run_units(ctx, [track], units, store, {"methods": sorted(methods)}, executor=ex)
        wall, cpu = time.perf_counter() - wall, _cpu(executor) - cpu
        unit_s = float(store.read("SELECT coalesce(sum(seconds), 0) s FROM units_done WHERE run_id = ?",
                                  [summary.run_id]).s[0])
        slots = 1 if executor == "serial" else workers
        rows.append({"executor": executor, "track": track, "units": summary.units_run, "wall_s": wall,
                     "cpu_s": cpu, "unit_s": unit_s,
                     "overhead_ms_per_unit": 1000 * (wall * slots - unit_s) / max(1, summary.units_run),
                     "load_1m": os.getloadavg()[0]})
    return rows, cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--tracks", default="merge,transfer,backdoor")
    ap.add_argument("--methods", default=None, help="comma-separated; default the suite's")
    ap.add_argument("--executors", default="serial,process,ray")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="where the zoo is (built if missing)")
    ap.add_argument("--warm", action="store_true", help="reuse the previous executor's artefacts")
    ap.add_argument("--keep", type=Path, default=None, help="keep each executor's database and cache here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("MERGESEC_THREADS", "1")))
    executors = args.executors.split(",")
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    zoo = args.cache or default_cache_dir()
    t0, cpu0 = time.perf_counter(), _cpu("process")
    build_zoo(load_suite(args.suite), Cache(zoo), progress=False, workers=args.workers)
    print(f"zoo: {time.perf_counter() - t0:.1f} s wall, {_cpu('process') - cpu0:.1f} s CPU, {args.workers} workers "
          f"(cached in {zoo})")
    if "ray" in executors:
        # a throw-away cluster on loopback: no token (it would be left in ~/.ray for later clusters to reject)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray

        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
    rows, cache = [], None
    with tempfile.TemporaryDirectory(prefix="mergesec-sweep-") as tmp:
        work = args.keep or tmp
        for i, executor in enumerate(executors):
            out, cache = sweep(args.suite, args.tracks.split(","), args.methods and args.methods.split(","),
                               executor, args.workers, zoo, Path(work) / f"{i}-{executor}",
                               cache if args.warm else None)
            rows += out
    import pandas as pd

    df = pd.DataFrame(rows)
    df.insert(0, "run", [i for i, e in enumerate(executors) for _ in args.tracks.split(",")])
    total = df.groupby(["run", "executor"], sort=False)[["units", "wall_s", "cpu_s", "unit_s"]].sum().reset_index()
    total.insert(2, "track", "all")
    print(pd.concat([df, total]).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    run_main(main)
