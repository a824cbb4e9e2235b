"""Where the backdoor track's time goes: wall and CPU seconds per attack x method x defense unit, split into
the attack (the backdoored upload, its trigger and shadow head, built once per attack and seed), the merge
and the defense, and the evaluation (clean accuracy on every task, the ASR and its floor).

    python benchmarks/backdoor.py [--suite digits] [--cache cache] [--attacks naive,badmerging:on_task]
                                  [--methods task_arithmetic] [--defenses none,ibvs] [--seeds 0]

The units are the track's own (`mergesec run --track backdoor` plans them), filtered by the options
(`--attacks` takes attack names or attack:variant), and run one by one in this process, serially, in the
track's order, from a cache holding only the zoo (copied from `--cache` into a temporary folder, so every
upload, trigger and defense artefact is really computed and the shared cache is left untouched). A phase
memoised by an earlier unit (the upload of the same attack and seed, a merge shared by the defenses of one
method) costs that unit nothing: the first unit of each pays for it. Prints one row per unit, the sums per
unit type (attack, variant, method, defense) and per phase, and the load average before and after: on a
shared machine every number is slower. Torch threads: $MERGESEC_THREADS (default 1), as `mergesec run`.
"""

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from sweep import _cpu, _zoo_cache

from benchmark import runner
from benchmark.cache import Cache, default_cache_dir
from benchmark.context import RunContext
from benchmark.errors import MergesecError, run_main
from benchmark.suites import load_suite
from benchmark.tracks import get_track
from benchmark.tracks.backdoor import backdoor_for, defended_model
from benchmark.tracks.backdoor_settings import Setting
from benchmark.tracks.base import Unit
from benchmark.zoo import build_zoo

PHASES = ("attack", "merge_defense", "evaluate")


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), _cpu("serial")
    fn()
    return time.perf_counter() - wall, _cpu("serial") - cpu


def wanted(unit: Unit, attacks: list[str] | None, defenses: list[str] | None, seeds: list[int] | None) -> bool:
    """Whether `unit` is in the subset: its attack (or attack:variant), defense and seed are among those given
    (None: all)."""
    d = unit.description
    return ((attacks is None or d["attack"] in attacks or f"{d['attack']}:{d['variant']}" in attacks)
            and (defenses is None or d["defense"] in defenses) and (seeds is None or d["seed"] in seeds))


def time_unit(ctx: RunContext, unit: Unit) -> dict[str, Any]:
    """One unit's phases, timed in order (each phase's memo is filled by the one before)."""
    d = unit.description
    s, seed, hp = Setting.of_unit(d), d["seed"], d["hparams"]
    row = {k: d[k] for k in ("attack", "variant", "method", "defense", "seed")}
    phases = {
        "attack": lambda: backdoor_for(ctx, s, seed),
        "merge_defense": lambda: defended_model(ctx, s, backdoor_for(ctx, s, seed), d["method"], hp["method"],
                                                d["defense"], hp["defense"], seed),
        "evaluate": lambda: get_track("backdoor").run_unit(unit, ctx),
    }
    for name in PHASES:
        row[f"{name}_wall_s"], row[f"{name}_cpu_s"] = _timed(phases[name])
    row["wall_s"] = sum(row[f"{p}_wall_s"] for p in PHASES)
    row["cpu_s"] = sum(row[f"{p}_cpu_s"] for p in PHASES)
    return row


def _split(value: str | None) -> list[str] | None:
    return value.split(",") if value else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--cache", type=Path, default=None, help="where the zoo is (built if missing)")
    ap.add_argument("--attacks", default=None, help="comma-separated attack or attack:variant; default all")
    ap.add_argument("--methods", default=None, help="comma-separated; default the backdoor section's")
    ap.add_argument("--defenses", default=None, help="comma-separated, 'none' included; default all")
    ap.add_argument("--seeds", default=None, help="comma-separated; default the backdoor section's")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("MERGESEC_THREADS", "1")))
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {_load()}")
    suite = load_suite(args.suite)
    zoo = args.cache or default_cache_dir()
    t0 = time.perf_counter()
    build_zoo(suite, Cache(zoo), progress=False)
    print(f"zoo: {time.perf_counter() - t0:.1f} s (cached in {zoo})")
    seeds = [int(s) for s in _split(args.seeds) or []] or None
    rows = []
    with tempfile.TemporaryDirectory(prefix="mergesec-backdoor-") as work:
        ctx = RunContext(suite, _zoo_cache(zoo, Path(work)), progress=False)
        planned = runner.plan(ctx, ["backdoor"], _split(args.methods) or list(suite.merge_methods))
        units = [u for u in planned if wanted(u, _split(args.attacks), _split(args.defenses), seeds)]
        if not units:
            raise MergesecError("no backdoor unit matches --attacks/--methods/--defenses/--seeds; the suite's "
                                f"units have attacks {sorted({u.description['attack'] for u in planned})}, "
                                f"defenses {sorted({u.description['defense'] for u in planned})} and seeds "
                                f"{sorted({u.description['seed'] for u in planned})}")
        print(f"{len(units)} units")
        for unit in units:
            rows.append(time_unit(ctx, unit))
    df = pd.DataFrame(rows)
    fmt = {"float_format": lambda v: f"{v:.2f}", "index": False}
    print("\nper unit (a phase memoised by an earlier unit costs ~0 here):")
    print(df.to_string(**fmt))
    kind = ["attack", "variant", "method", "defense"]
    per_type = df.groupby(kind, sort=False).agg(units=("seed", "size"), **{
        c: (c, "sum") for c in ("wall_s", "cpu_s", *(f"{p}_{m}_s" for p in PHASES for m in ("wall", "cpu")))})
    print("\nper unit type (sums over seeds):")
    print(per_type.reset_index().to_string(**fmt))
    totals = pd.DataFrame([{"phase": p, "wall_s": df[f"{p}_wall_s"].sum(), "cpu_s": df[f"{p}_cpu_s"].sum()}
                           for p in PHASES] + [{"phase": "all", "wall_s": df.wall_s.sum(), "cpu_s": df.cpu_s.sum()}])
    print("\nper phase:")
    print(totals.to_string(**fmt))
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    run_main(main)
