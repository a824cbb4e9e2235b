"""AdaMerging's entropy curve on a suite: the evidence behind the suite's `steps` (docs/merging.md).

    python benchmarks/adamerging.py [--suite digits] [--steps 1500] [--every 50] [--cache DIR]

Runs the official loop (`benchmark.merging.methods.adamerging.learn_coefficients`, the method's defaults
otherwise) for each of `--variants` (task-wise, layer-wise) on the suite's zoo and dev data, seed 0, and
prints the summed entropy (mean over the last `--every` steps) every `--every` steps, the relative change
of that mean between consecutive windows and the λ spread (min, mean, max) at that step, then the final
per-task mean λ and the seconds taken, with the machine's load. Nothing is written to a results database.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.cache import Cache, default_cache_dir
from benchmark.data import load_task
from benchmark.errors import run_main
from benchmark.merging import MergeContext, get_method
from benchmark.merging.methods.adamerging import learn_coefficients
from benchmark.suites import load_suite
from benchmark.zoo import build_zoo


def entropy_printer(every: int) -> Callable[[int, float, torch.Tensor], None]:
    """An `on_step` callback printing, every `every` steps, the window's mean entropy, its relative change and
    the λ spread (min, mean, max)."""
    losses: list[float] = []
    means: list[float] = []

    def report(step: int, loss: float, lam: torch.Tensor) -> None:
        losses.append(loss)
        if step % every == 0:
            means.append(statistics.mean(losses[-every:]))
            change = f"{(means[-1] - means[-2]) / means[-2]:+8.2%}" if len(means) > 1 else ""
            spread = f"{float(lam.min()):.3f} {float(lam.mean()):.3f} {float(lam.max()):.3f}"
            print(f"{step:>6} {means[-1]:>8.4f} {change:>8} {spread}", flush=True)

    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--variants", default="adamerging_task,adamerging_layer", help="comma-separated")
    ap.add_argument("--cache", type=Path, default=None, help="zoo cache (default: $MERGESEC_CACHE or ./cache)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    suite = load_suite(args.suite)
    zoo = build_zoo(suite, Cache(args.cache or default_cache_dir()), progress=False)
    tasks = suite.task_names
    ctx = MergeContext(
        pretrained=zoo.pretrained, finetuned=[zoo.finetuned[t] for t in tasks], tasks=tasks,
        classifier_factory=lambda sd, i, adapter=None: zoo.classifier(sd, tasks[i], adapter),
        dev_data=[load_task(suite, t).dev for t in tasks], seed=0)
    print(f"suite {suite.name}, {args.steps} steps, load average {os.getloadavg()}")
    for name in args.variants.split(","):
        hparams = {**get_method(name).hparams, "steps": args.steps}
        print(f"\n== {name}\n{'steps':>6} {'entropy':>8} {'change':>8} λ min mean max", flush=True)
        t0 = time.perf_counter()
        learned = learn_coefficients(ctx, layerwise=name == "adamerging_layer", on_step=entropy_printer(args.every),
                                     **hparams)
        lam = learned.lambdas
        print(f"{time.perf_counter() - t0:.1f} s, load {os.getloadavg()[0]:.2f}")
        print(f"λ spread: min {float(lam.min()):.3f} mean {float(lam.mean()):.3f} max {float(lam.max()):.3f}")
        per_task = ", ".join(f"{t} {float(v):.3f}" for t, v in zip(tasks, lam.mean(1), strict=True))
        print(f"λ per task (mean over groups): {per_task}", flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
