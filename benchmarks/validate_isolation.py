"""Cost of the bubblewrap sandbox: `mergesec validate` with and without isolation, interleaved.

    python benchmarks/validate_isolation.py [--repeats 3] [--slug model_breadcrumbs]

Runs `validate` (manifest, files, one sandboxed worker that imports torch and calls the entry point twice on
tiny models) on an example submission, alternating isolated and `--no-isolation` calls so both see the same
machine load, and prints each call's wall-clock seconds, the medians and their ratio (the target: isolation
costs well under 2x; the worker's torch import dominates either way). The load average is printed because a
busy machine slows everything.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.errors import run_main
from benchmark.submissions import Limits
from benchmark.submissions.check import validate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slug", default="model_breadcrumbs")
    args = ap.parse_args()
    folder = ROOT / "submissions" / args.slug
    times: dict[bool, list[float]] = {True: [], False: []}
    validate(folder, Limits(isolate=True))  # warm the page cache for both
    for i in range(args.repeats):
        for isolate in (True, False):
            t0 = time.perf_counter()
            validate(folder, Limits(isolate=isolate))
            times[isolate].append(time.perf_counter() - t0)
            print(f"run {i + 1} {'isolated' if isolate else 'no isolation'}: {times[isolate][-1]:.2f} s "
                  f"(load {os.getloadavg()[0]:.1f})")
    iso, plain = statistics.median(times[True]), statistics.median(times[False])
    print(f"median: isolated {iso:.2f} s, no isolation {plain:.2f} s, ratio {iso / plain:.2f}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    run_main(main)
