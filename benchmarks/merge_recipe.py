"""How mergeable a suite's zoo is under a changed recipe: the sweep behind docs/merging.md's digits table.

    python benchmarks/merge_recipe.py [--suite digits] [--set recipe.finetune.lr=0.0003 ...] [--cache DIR]

Each `--set dotted.key=YAML` overrides one field of the suite (lists and mappings in YAML flow style, e.g.
`--set "data.pretrain_domains=[upright, inverted]"`). Builds (or loads: the cache is content-addressed, so a
changed fine-tuning recipe reuses the pretrained encoder) the zoo, then prints the test accuracy per task of
the pretrained and fine-tuned encoders, weight averaging, and task arithmetic and TIES over a grid of λ,
plus the mean task-vector norm. Nothing is written to a results database.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.cache import Cache, default_cache_dir
from benchmark.data import load_task
from benchmark.errors import run_main
from benchmark.merging import merge
from benchmark.suites import load_suite
from benchmark.zoo import accuracy, build_zoo

LAMBDAS = (0.1, 0.2, 0.3, 0.5)


def override(raw: dict, assignment: str) -> None:
    """Set `raw[a][b]... = value` from `a.b...=value` (value parsed as YAML)."""
    key, _, value = assignment.partition("=")
    *parents, leaf = key.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = yaml.safe_load(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=YAML")
    ap.add_argument("--cache", type=Path, default=None, help="zoo cache (default: $MERGESEC_CACHE or ./cache)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    raw = load_suite(args.suite).raw
    for s in args.sets:
        override(raw, s)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{raw['name']}.yaml"
        path.write_text(yaml.safe_dump(raw))
        suite = load_suite(path)
    t0 = time.perf_counter()
    zoo = build_zoo(suite, Cache(args.cache or default_cache_dir()))
    print(f"suite {suite.name} {' '.join(args.sets) or '(as shipped)'}: zoo {time.perf_counter() - t0:.0f} s")

    tasks = suite.task_names
    test = {t: load_task(suite, t).test.tensors for t in tasks}
    finetuned = [zoo.finetuned[t] for t in tasks]
    norms = [sum(float(((ft[k] - p) ** 2).sum()) for k, p in zoo.pretrained.items()) ** 0.5 for ft in finetuned]
    print(f"mean task-vector norm {statistics.mean(norms):.2f}\n")
    print(f"{'model':<22}{'mean':>6}  " + " ".join(f"{t[:7]:>7}" for t in tasks))

    def show(name: str, accs: list[float]) -> None:
        print(f"{name:<22}{statistics.mean(accs):>6.3f}  " + " ".join(f"{a:>7.3f}" for a in accs))

    def merged(state) -> list[float]:
        return [accuracy(zoo.classifier(state, t), *test[t]) for t in tasks]

    show("pretrained", merged(zoo.pretrained))
    show("fine-tuned", [accuracy(zoo.classifier(zoo.finetuned[t], t), *test[t]) for t in tasks])
    show("weight_averaging", merged(merge("weight_averaging", zoo.pretrained, finetuned)))
    for lam in LAMBDAS:
        show(f"task_arithmetic λ={lam}", merged(merge("task_arithmetic", zoo.pretrained, finetuned, scaling_coef=lam)))
    for lam in LAMBDAS:
        show(f"ties λ={lam}", merged(merge("ties", zoo.pretrained, finetuned, scaling_coef=lam)))
    return 0


if __name__ == "__main__":
    run_main(main)
