"""Peak host memory of one paper-scale worker, through the real code path at real ViT-B/32 size.

    python benchmarks/memory.py [--cache DIR] [--device cpu] [--db FILE] [--unbounded]

The suite is clip-vit-b32-smoke (randomly initialised open_clip ViT-B-32, the eight tasks of clip-vit-b32 with
their class counts, synthetic 224x224 images generated on demand, never held) with the image counts cut down
where compute would take hours on a CPU: 16 training and 8 test images per task, one fine-tuning epoch, one
prompt template per class for the zero-shot heads, transfer subsets of 4 images, FGSM only. Every model is
real-sized (a ViT-B/32 encoder is 87.8 M float32 parameters, 335 MiB), so everything the memos hold per model
is measured as at paper scale. One worker (this process, the serial executor) runs the zoo, the merge track
(task arithmetic, weight averaging), the transfer track (8 tasks x 2 surrogates) and the backdoor track
(BadNets and its two baselines, task arithmetic, no defense and IBVS), then prints:
1. peak host RSS (`resource.getrusage`), after each stage;
2. what each in-process memo holds at the end (bytes of the tensors), and which ones are bounded;
3. the same memos projected to paper-scale image counts (1,000-image transfer subsets) with their bounds, and
   the activations one input-gradient pass saves per image (autograd's saved tensors, counted exactly), times
   the suite's `grad` and `craft` batch sizes on this device (clip-vit-b32's `batch_sizes`);
4. the disk per seed (`benchmarks/throughput.py`'s figures) and the machine's load average.
The zoo is cached in `--cache` (built once, in a child process, so its training is not counted; about 10
CPU-minutes); the tracks always start from a fresh copy of that zoo, so every run builds the same attack and
defense artefacts. `--unbounded` lifts the bounds added with issue 15 (the memos as they were before: those
never evicted), for the before/after comparison.
"""

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from benchmark import runner
from benchmark.cache import Cache, nbytes
from benchmark.context import RunContext
from benchmark.device import configure_threads, use_device
from benchmark.errors import run_main
from benchmark.store import Store
from benchmark.suites import load_suite
from benchmark.zoo import build_zoo

GIB = 2**30
PAPER_SUBSET = 1000  # clip-vit-b32's transfer.subset_size
ZOO_KINDS = ("pretrained", "head", "finetuned")
PER_IMAGE = ("transfer subsets", "transfer adversarial", "transfer surrogates")  # memos of per-image tensors


def _build_zoo(raw: dict, cache: str) -> None:
    from benchmark.suites import Suite

    build_zoo(Suite(raw=raw), Cache(Path(cache)), progress=False)


def unbound_memos() -> None:
    """Lift the bounds added with issue 15 (transfer subsets and surrogate models; the backdoor track's
    attacks, attack artefacts and defense memo): the memos as they were before, when only the merged models
    and three transfer memos were bounded."""
    from benchmark.attacks.backdoor import base
    from benchmark.tracks import backdoor, transfer_cache

    for memo, keys in ((transfer_cache.MEMO_BYTES, ("subsets", "surrogate_models")),
                       (backdoor.MEMO_BYTES, tuple(backdoor.MEMO_BYTES)), (base.MEMO_BYTES, ("artefacts",))):
        memo.update(dict.fromkeys(keys, 1 << 62))


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def suite_file(folder: Path) -> Path:
    """clip-vit-b32-smoke with the image counts cut down (see the module docstring)."""
    raw = load_suite("clip-vit-b32-smoke").raw
    raw["name"] = "clip-vit-b32-memory"
    raw["data"]["synthetic"] = {"train": 16, "test": 8, "seed": 0}
    raw["data"]["dev"] = {"fraction": 0.25, "max_size": 5000, "seed": 0}
    raw["recipe"]["finetune"]["epochs"] = 1
    for task in raw["tasks"]:  # one prompt template per class: the zero-shot heads' text passes are not measured
        task["templates"] = task["templates"][:1]
    raw["merging"]["methods"] = {"task_arithmetic": {"scaling_coef": 0.3}, "weight_averaging": {}}
    raw["transfer"].update(subset_size=4, attacks=["fgsm"])
    bd = raw["backdoor"]
    bd.update(methods=["task_arithmetic"], attacks=[a for a in bd["attacks"] if a["attack"] == "naive"],
              defenses={"ibvs": bd["defenses"]["ibvs"]})
    path = folder / "clip-vit-b32-memory.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def memos(ctx: RunContext) -> dict[str, tuple[int, Any]]:
    """(bytes held, bound in bytes or None) of every in-process memo of `ctx` that grows with the run."""
    from benchmark.cache import ByteLRU
    from benchmark.tracks import backdoor, transfer_cache

    def entry(memo: Any) -> tuple[int, Any]:
        if isinstance(memo, ByteLRU):
            return memo.bytes, memo.max_bytes
        return nbytes(list(memo.values())), None

    out = {"zoo (pretrained, 8 fine-tuned encoders, heads)": (nbytes([ctx.zoo.pretrained, ctx.zoo.finetuned,
                                                                      list(ctx.zoo.heads.values())]), "fixed"),
           "merged models": entry(ctx._merged)}
    ts = transfer_cache._STATES.get(ctx)
    if ts is not None:
        for name in ("subsets", "surrogate_models", "surrogates", "adversarial", "targets"):
            out[f"transfer {name}"] = entry(getattr(ts, name))
    bs = backdoor._STATES.get(ctx)
    if bs is not None:
        out["backdoor attack artefacts (env)"] = entry(bs.env._memo)
        out["backdoor attacks"] = entry(bs.backdoors)
        out["backdoor merges"] = (nbytes(list(bs.merges.values())), f"{backdoor.MERGE_MEMO} merges")
        out["backdoor defended merges"] = (nbytes(list(bs.defended.values())), f"{backdoor.MERGE_MEMO} merges")
        out["backdoor defense memo (IBVS vectors)"] = entry(bs.defense_memo)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "mergesec-memory-cache"))
    p.add_argument("--db", default=None, help="results database (default: a temporary file)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--unbounded", action="store_true", help="the memos as before issue 15's bounds")
    args = p.parse_args()
    device = use_device(args.device)
    configure_threads(device)
    if args.unbounded:
        unbound_memos()
    with tempfile.TemporaryDirectory() as tmp:
        suite = load_suite(suite_file(Path(tmp)))
        # built (or found) in a child process, whose memory is not this worker's (RUSAGE_SELF)
        child = multiprocessing.get_context("spawn").Process(target=_build_zoo, args=(suite.raw, args.cache))
        child.start()
        child.join()
        for kind in ZOO_KINDS:  # the tracks' cache: the zoo only, so every run builds the same artefacts
            shutil.copytree(Path(args.cache) / kind, Path(tmp) / "cache" / kind)
        print(f"suite {suite.name} (clip-vit-b32-smoke, ViT-B-32 random weights, 8 tasks, 224x224), device "
              f"{device}, memos {'as before issue 15' if args.unbounded else 'bounded'}, load average "
              f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
        ctx = RunContext(suite, Cache(Path(tmp) / "cache"), progress=False, device=device)
        ctx.zoo  # noqa: B018 (loaded here, so its peak is reported on its own)
        print(f"after the zoo:           peak host RSS {peak_gib():.2f} GiB")
        store = Store(Path(args.db) if args.db else Path(tmp) / "memory.duckdb")
        store.migrate()
        runner.register_suite(store, ctx)
        methods = list(suite.merge_methods)
        runner.register_methods(store, methods)
        for track in ("merge", "transfer", "backdoor"):
            units = runner.plan(ctx, [track], methods)
            summary = runner.run_units(ctx, [track], units, store, {"methods": sorted(methods)})
            print(f"after the {track + ' track:':14s} peak host RSS {peak_gib():.2f} GiB ({summary.units_run} "
                  f"units run, {len(units) - summary.units_run} already stored)")
        print("in-process memos at the end (tensor bytes held; bound):")
        held = memos(ctx)
        for name, (size, bound) in held.items():
            cap = ("unbounded" if bound is None or (isinstance(bound, int) and bound >= 1 << 62) else
                   f"<= {bound / GIB:.2f} GiB" if isinstance(bound, int) else bound)
            print(f"  {name:48s} {size / GIB:7.2f} GiB  ({cap})")
        project(suite, held, saved_bytes_per_image(ctx))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from throughput import workload

    print(f"disk per seed: {workload(load_suite('clip-vit-b32'))['disk']}")
    print(f"peak host RSS of this worker: {peak_gib():.2f} GiB; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def saved_bytes_per_image(ctx: RunContext) -> int:
    """Bytes autograd saves for the input gradient of one image through a surrogate (pretrained encoder and
    the first task's head): what a crafting or gradient batch holds per image, besides the model."""
    import torch

    model = ctx.zoo.classifier(ctx.zoo.pretrained, ctx.suite.task_names[0])
    size, seen = int(ctx.suite.data["image_size"]), {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    x = torch.rand(1, 3, size, size, device=ctx.device, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).logsumexp(-1).sum()
    torch.autograd.grad(loss, x)
    params = {p.data_ptr() for p in model.parameters()}
    return sum(n for (ptr, _, _), n in seen.items() if ptr not in params)


def project(suite, held: dict[str, tuple[int, Any]], per_image: int) -> None:
    """The memos at paper-scale image counts: the transfer subsets scale with the subset size (1,000 images);
    bounded memos are at most their bound; the rest hold models, whose size is already the real one."""
    scale = PAPER_SUBSET / suite.transfer.subset_size
    total = 0.0
    for name, (size, bound) in held.items():
        est = size * scale if name in PER_IMAGE else size
        if isinstance(bound, int) and bound < 1 << 62:
            est = min(max(est, size), bound)
        total += est
    print(f"projected memos at paper scale ({PAPER_SUBSET}-image subsets, 8 tasks, 1 seed): {total / GIB:.2f} GiB")
    paper = load_suite("clip-vit-b32")
    for kind in ("cpu", "cuda"):
        sizes = paper.raw["batch_sizes"][kind]
        where = "host" if kind == "cpu" else "device (not host)"
        print(f"activations of one input-gradient pass: {per_image / 2**20:.1f} MiB per image; clip-vit-b32 on {kind}: "
              f"grad batch {sizes['grad']} = {sizes['grad'] * per_image / GIB:.2f} GiB, craft batch {sizes['craft']} = "
              f"{sizes['craft'] * per_image / GIB:.2f} GiB of {where} memory")


if __name__ == "__main__":
    run_main(main)
