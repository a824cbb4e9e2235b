"""IBVS: Injection Backdoor Vector Subtraction (Pawlak, Dubiński, Marczak & Twardowski, "Backdoor Vectors:
a Task Arithmetic View on Backdoor Attacks and Defenses", arXiv 2510.08016, 2025).

The defender does not know the attacker's trigger, target or which contributor is malicious. It injects a
backdoor of its own with a simple known trigger (a white square, a fixed target class) into a model of a
task it has data for, computes that Backdoor Vector BV_inj = θ_bd − θ_clean (both fine-tuned by the
defender from the same pretrained encoder on the same data and seed), and subtracts it, scaled, during
merging: θ_defended = merge(θ_0, θ_1..θ_K) − scale·BV_inj. The premise (from the paper): backdoors share
a direction in weight space (BVs transfer across trigger positions and seeds, and exploit the pretrained
model's inherent triggers), so removing a known backdoor's direction also weakens unknown ones.

mergesec's defender trains on the labelled dev split of task `inject_task` (the defender's own data, streamed
batch by batch, never held whole) with the suite's fine-tuning recipe; the clean and backdoored fine-tunes
and their BV are cached.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch.utils.data import Dataset

from benchmark.attacks.backdoor.backdoor_vectors import backdoor_vector
from benchmark.attacks.backdoor.naive import poison
from benchmark.attacks.backdoor.triggers import Trigger, white_square
from benchmark.data import batches, labels
from benchmark.defenses.api import DefenseInputs
from benchmark.defenses.registry import DefenseError, register_defense
from benchmark.hashing import content_hash
from benchmark.merging import MergeOutput
from benchmark.types import StateDict
from benchmark.zoo.train import finetune
from benchmark.zoo.zoo import task_recipe

IBVS_HPARAMS = {
    "scale": 1.0,
    "inject_task": 0,
    "target_class": 0,
    "patch_size": 3,
    "position": "top_left",
    "poison_rate": 0.2,
    "seed": 0,
    "max_warmup_fraction": 0.25,
}


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _dataset_digest(ds: Dataset, y: torch.Tensor) -> str:
    """`_digest(x, y)` of a dataset's images and labels `y`, read batch by batch: the same digest as of the
    whole split's tensors (the bytes of consecutive batches are the bytes of their concatenation)."""
    h = hashlib.sha256()
    for x, _ in batches(ds):
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def defender_trigger(patch_size: int, position: str) -> Trigger:
    """The defender's own, known trigger: a white square."""
    return Trigger(white_square(patch_size), position)


def defender_recipe(recipe: dict, n_images: int, max_warmup_fraction: float) -> dict:
    """A task's fine-tuning `recipe` as the defender runs it on its `n_images` dev images: the
    same epochs, with the warm-up capped at `max_warmup_fraction` of the defender's steps. The dev split is
    ~10% of the training split, so the contributors' warm-up (task vectors: 500 of ~2,000 steps, 25%) would
    otherwise cover the defender's whole fine-tune on CLIP suites (160-245 steps) and it would never reach
    the full learning rate."""
    cfg = dict(recipe)
    steps = int(cfg["epochs"]) * math.ceil(n_images / int(cfg["batch_size"]))
    cfg["warmup_steps"] = min(int(cfg.get("warmup_steps", 0)), math.floor(max_warmup_fraction * steps))
    return cfg


def injected_backdoor_vector(inputs: DefenseInputs, inject_task: int, target_class: int, patch_size: int,
                             position: str, poison_rate: float, seed: int,
                             max_warmup_fraction: float = 0.25) -> StateDict:
    """BV_inj = θ_bd − θ_clean of the defender's own injection (float64), built from `inputs` only."""
    if not 0 <= inject_task < len(inputs.finetuned):
        raise DefenseError(f"ibvs: inject_task {inject_task} is not a task index (0..{len(inputs.finetuned) - 1})")
    dev = inputs.context.dev_data[inject_task]
    y = labels(dev)
    if not 0 <= target_class < int(y.max()) + 1:
        raise DefenseError(f"ibvs: target_class {target_class} is not a class of task index {inject_task}")
    recipe = defender_recipe(task_recipe(inputs.finetune_recipe, inputs.context.tasks[inject_task]),
                             len(y), max_warmup_fraction)
    spec = {"defense": "ibvs", "pretrained": _digest(*[inputs.pretrained[k] for k in sorted(inputs.pretrained)]),
            "data": _dataset_digest(dev, y), "recipe": recipe, "target_class": target_class, "patch_size": patch_size,
            "position": position, "poison_rate": poison_rate, "seed": seed, "task_index": inject_task,
            "head": _digest(*[p for p in inputs.context.classifier_factory(inputs.pretrained, inject_task)
                             .head.parameters()])}
    key = "ibvs_bv/" + content_hash(spec)
    if key in inputs.memo:
        return inputs.memo[key]

    def train(data: Dataset) -> StateDict:
        model = inputs.context.classifier_factory(inputs.pretrained, inject_task)
        model.encoder.requires_grad_(True)
        finetune(model, data, recipe, seed, desc="IBVS injection", progress=False)
        return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}

    def build() -> StateDict:
        poisoned = poison(dev, defender_trigger(patch_size, position), target_class, poison_rate, seed)
        return backdoor_vector(train(poisoned), train(dev))

    bv = inputs.cache.get_or_build("ibvs_bv", spec, build) if inputs.cache is not None else build()
    inputs.memo[key] = bv
    return bv


@register_defense(
    "ibvs", stage="merge", needs=("labelled_dev", "classifier_factory", "finetune_recipe"), hparams=IBVS_HPARAMS,
    paper="Pawlak et al., Backdoor Vectors: a Task Arithmetic View on Backdoor Attacks and Defenses, "
          "arXiv 2510.08016 (IBVS)",
)
def ibvs(inputs: DefenseInputs, scale: float, inject_task: int, target_class: int, patch_size: int, position: str,
         poison_rate: float, seed: int, max_warmup_fraction: float) -> MergeOutput:
    """Injection Backdoor Vector Subtraction: merge with the victim's method, then subtract `scale` times the
    defender's own injected Backdoor Vector (white-square trigger, class `target_class` of task index
    `inject_task`, trained on that task's labelled dev data). Uses nothing about the attack."""
    bv = injected_backdoor_vector(inputs, inject_task, target_class, patch_size, position, poison_rate, seed,
                                  max_warmup_fraction)
    merged = inputs.merge(inputs.pretrained, inputs.finetuned)
    out = {k: (v.double() - scale * bv[k]).to(v.dtype) if k in bv else v.clone()
           for k, v in merged.state_dict.items()}
    return MergeOutput(out, list(merged.adapters))
