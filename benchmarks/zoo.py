"""Wall and CPU time of building a suite's zoo from nothing, with one and with several worker processes.

    python benchmarks/zoo.py [--suite digits] [--workers 1,2] [--compare CACHE]

For each worker count the zoo is built into a fresh temporary cache (`build_zoo(..., workers=n)`, what
`mergesec zoo --workers n` runs), and the script prints the wall seconds, the CPU seconds of this process and
its worker processes, and whether every artefact (pretrained encoder, heads, every seed's fine-tuned
encoders) is bitwise the one of the first count (and, with `--compare`, of the zoo already cached in
CACHE, e.g. one built by an earlier version of the code). Torch threads: $MERGESEC_THREADS (default 1), as
the CLI. The machine's load average is printed before and after: on a shared machine every number is slower.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import _cpu

from benchmark.cache import Cache, state_digest
from benchmark.errors import run_main
from benchmark.suites import load_suite
from benchmark.zoo import Zoo, build_zoo


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _digests(zoo: Zoo) -> dict[str, str]:
    return {"pretrained": state_digest(zoo.pretrained),
            **{f"head/{t}": state_digest(h.state_dict()) for t, h in zoo.heads.items()},
            **{f"finetuned/{t}@{s}": state_digest(sd) for s in zoo.suite.finetune_seeds
               for t, sd in zoo.for_seed(s).finetuned.items()}}  # every fine-tuning seed's (recipe.finetune_seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--compare", type=Path, default=None, help="a cache holding this suite's zoo to compare with")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("MERGESEC_THREADS", "1")))
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {_load()}")
    suite = load_suite(args.suite)
    first = _digests(build_zoo(suite, Cache(args.compare), progress=False)) if args.compare else None
    for n in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix="mergesec-zoo-") as tmp:
            wall, cpu = time.perf_counter(), _cpu("process")
            zoo = build_zoo(suite, Cache(tmp), progress=False, workers=n)
            wall, cpu = time.perf_counter() - wall, _cpu("process") - cpu
            digests = _digests(zoo)  # in the cache's lifetime: the other seeds' fine-tunes load from it
        first = first or digests
        print(f"workers {n}: {wall:.1f} s wall, {cpu:.1f} s CPU, artefacts bitwise equal to "
              f"{'--compare' if args.compare else 'the first count'}'s: {digests == first} (load average {_load()})")


if __name__ == "__main__":
    run_main(main)
