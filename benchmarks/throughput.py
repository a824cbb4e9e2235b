"""Throughput of a suite's surrogate on one device, and what one seed of the transfer sweep costs from it.

    python benchmarks/throughput.py [--suite clip-vit-b32-smoke] [--device cpu|cuda|auto] [--batch-size 32]
                                    [--images 64]

The model is the suite's backbone (seeded random weights: speed does not depend on the values) with a head of
the suite's first task, on `--device`, in float32 (mergesec uses no mixed precision: it would change the
gradients the attacks follow). Prints:
1. raw forward+backward images/s (the input gradient an attack step needs; parameters frozen);
2. PGD-`steps` crafting images/s through mergesec's attack wrapper (torchattacks), and the ratio
   crafting / (raw fwd+bwd / steps): 1.0 means crafting costs exactly the gradients it needs (target >= 0.9);
3. clean evaluation images/s (`dataset_accuracy` over the task's test split, data generation or decoding
   included) vs raw no-grad forward images/s;
4. peak memory (host RSS; device memory on CUDA);
5. the projected time of one seed of the 336 transfer settings (8 methods x 7 tasks x 6 attacks, as in Gangwal
   & Sharma, arXiv 2509.23689) with `--protocol`'s attacks, steps and subset size (default clip-vit-b32):
   crafting (each attack's gradient count per image) on one surrogate + evaluating every setting's target;
   merges are not included;
6. disk per seed: the adversarial sets (float32 and uint8) and the zoo's encoders.
The machine's load average is printed: a shared machine slows everything.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from benchmark.attacks import ATTACKS
from benchmark.data import load_task
from benchmark.device import describe, use_device
from benchmark.errors import run_main
from benchmark.suites import Suite, load_suite
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.model import ClassificationHead, ImageClassifier, dataset_accuracy

SETTINGS = {"methods": 8, "tasks": 7, "attacks": 6}  # the 336 settings of one seed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn, n_images: int, device: torch.device, repeats: int = 1) -> tuple[float, float]:
    """Images per second of `fn()` (which processes `n_images`), after one warm-up call: by wall clock, and
    by this process's CPU time (on a shared CPU the second is what the load average does not distort)."""
    fn()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    _sync(device)
    return repeats * n_images / (time.perf_counter() - t0), repeats * n_images / (time.process_time() - c0)


def grads_per_image(attack: str, eps: float, steps: int) -> int:
    """Input gradients one adversarial image costs: 1 for FGSM, steps x (1 + neighbours) for the others."""
    atk = ATTACKS[attack](eps, steps)
    if not atk.iterative:
        return 1
    return steps * (1 + int(atk.params().get("N", 0)))


def workload(proto: Suite) -> dict[str, Any]:
    """What one seed of the 336 settings costs under `proto`'s transfer protocol, independent of the device:
    each (task, attack) adversarial set crafted once on one surrogate; each (method, task, attack) target
    evaluated on it (one forward per image); per (method, task) one clean pass with input gradients (the
    gradient-alignment diagnostic). Plus the disk of all of the protocol's adversarial sets and its zoo."""
    t, size = proto.transfer, int(proto.data["image_size"])
    grads = {a: grads_per_image(a, t.eps, t.steps) for a in t.attacks[: SETTINGS["attacks"]]}
    mt = SETTINGS["methods"] * SETTINGS["tasks"]
    n_sets = len(proto.tasks) * len(t.surrogates) * len(t.attacks)
    image_bytes = t.subset_size * 3 * size * size
    with torch.device("meta"):
        params = sum(v.numel() for v in build_encoder(proto.backbone).state_dict().values())
    gib = 2**30
    return {
        "summary": f"{proto.name}: {mt * SETTINGS['attacks']} settings = {SETTINGS['methods']} methods x "
                   f"{SETTINGS['tasks']} tasks x {SETTINGS['attacks']} attacks, {t.subset_size} images, input "
                   f"gradients per image {grads}",
        "crafting_grads": SETTINGS["tasks"] * t.subset_size * sum(grads.values()),
        "eval_forwards": mt * (SETTINGS["attacks"] + 1) * t.subset_size,
        "eval_grads": mt * t.subset_size,
        "disk": f"{n_sets} adversarial sets ({len(proto.tasks)} tasks x {len(t.surrogates)} surrogates x "
                f"{len(t.attacks)} attacks x {t.subset_size} images) = {n_sets * image_bytes * 4 / gib:.2f} GiB as "
                f"float32, {n_sets * image_bytes / gib:.2f} GiB as uint8; zoo ({len(proto.tasks) + 1} encoders of "
                f"{params:,} parameters) {(len(proto.tasks) + 1) * params * 4 / gib:.2f} GiB",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="clip-vit-b32-smoke")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:i] [env MERGESEC_DEVICE, default cpu]")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 on CUDA, 8 on the CPU")
    p.add_argument("--images", type=int, default=None, help="images per measurement (default: one batch)")
    p.add_argument("--protocol", default="clip-vit-b32",
                   help="suite whose transfer protocol (attacks, steps, subset size) the projection uses")
    args = p.parse_args()
    device = use_device(args.device)
    suite = load_suite(args.suite)
    bs = args.batch_size or (128 if device.type == "cuda" else 8)
    n = args.images or bs
    task = suite.tasks[0]
    size = int(suite.data["image_size"])
    torch.manual_seed(0)
    encoder = build_encoder(suite.backbone).to(device)
    dim = encoder.output_dim
    b = suite.backbone
    head = ClassificationHead(dim, task.n_classes)
    model = ImageClassifier(encoder, head, b.mean, b.std).eval().requires_grad_(False)
    x = torch.rand(n, 3, size, size, device=device)
    y = torch.randint(task.n_classes, (n,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    print(f"suite {suite.name}: {b.model_name or b.kind} at {size}x{size}, task {task.name} ({task.n_classes} "
          f"classes), device {describe(device)}, batch {bs}, {n} images per measurement, float32; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")

    def fwd_bwd() -> None:
        for i in range(0, n, bs):
            xb = x[i : i + bs].clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i : i + bs])
            torch.autograd.grad(loss, xb)

    @torch.no_grad()
    def fwd() -> None:
        for i in range(0, n, bs):
            model(x[i : i + bs])

    t = suite.transfer
    pgd = ATTACKS["pgd"](t.eps, t.steps, batch_size=bs)
    (raw_fb, raw_fb_cpu), (raw_f, raw_f_cpu) = rate(fwd_bwd, n, device), rate(fwd, n, device)
    craft, craft_cpu = rate(lambda: pgd.craft(model, x, y, seed=0), n, device)
    ratio = craft * t.steps / raw_fb
    print(f"raw forward+backward (input gradient): {raw_fb:10.2f} images/s")
    print(f"PGD-{t.steps} crafting:                     {craft:10.2f} images/s = {ratio:.3f} x raw fwd+bwd / "
          f"{t.steps} (target >= 0.9; by process CPU time {craft_cpu * t.steps / raw_fb_cpu:.3f})")
    test = load_task(suite, task.name).test
    n_eval = min(len(test), n)
    from torch.utils.data import Subset

    clean, _ = rate(lambda: dataset_accuracy(model, Subset(test, range(n_eval))), n_eval, device)
    print(f"clean evaluation (dataset_accuracy):   {clean:10.2f} images/s vs raw forward {raw_f:10.2f} images/s "
          f"({clean / raw_f:.3f}; data {'generation' if suite.data['source'] == 'synthetic' else 'decoding'} "
          "included)")
    peak_host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak_dev = f", device {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else ""
    print(f"peak memory: host RSS {peak_host:.2f} GiB{peak_dev}")

    work = workload(load_suite(args.protocol))
    crafting, evaluation = work["crafting_grads"] / raw_fb, work["eval_forwards"] / raw_f + work["eval_grads"] / raw_fb
    print(f"work per seed ({work['summary']}): {work['crafting_grads']:,} input gradients to craft, "
          f"{work['eval_forwards']:,} forwards + {work['eval_grads']:,} input gradients to evaluate")
    print(f"projected on this device: crafting {crafting / 3600:.2f} h + evaluation {evaluation / 3600:.2f} h = "
          f"{(crafting + evaluation) / 3600:.2f} h (merges excluded)")
    if device.type == "cpu":  # the same from process CPU time: what an unloaded machine would take
        cpu_h = (work["crafting_grads"] / raw_fb_cpu + work["eval_forwards"] / raw_f_cpu
                 + work["eval_grads"] / raw_fb_cpu) / 3600
        print(f"projected from process CPU time (an unloaded machine, {torch.get_num_threads()} thread(s)): "
              f"{cpu_h:.2f} h; raw forward+backward {raw_fb_cpu:.2f}, raw forward {raw_f_cpu:.2f} images/CPU-s")
    print(f"disk per seed: {work['disk']}")

if __name__ == "__main__":
    run_main(main)
