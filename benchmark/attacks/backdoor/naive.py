"""The naive backdoor: BadNets-style data poisoning (Gu, Dolan-Gavitt & Garg, "BadNets", 2017), the
baseline BadMerging shows is diluted by merging (Zhang et al., CCS 2024, §3: prior backdoors reach < 20%
ASR after merging)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import TensorDataset

from benchmark.attacks.backdoor.base import (
    BackdoorConfigError,
    BackdoorEnv,
    _tensor_key,
    register_backdoor_attack,
    trigger_state,
)
from benchmark.attacks.backdoor.triggers import Trigger, checkerboard
from benchmark.data import tensors
from benchmark.types import StateDict
from benchmark.zoo.train import finetune

NAIVE_HPARAMS = {"patch_size": 3, "position": "bottom_right", "poison_rate": 0.1}


def poison(x: torch.Tensor, y: torch.Tensor, trigger: Trigger, target: int, rate: float,
           seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BadNets poisoning: a fixed, seeded `rate` fraction of the training images (chosen once, before
    training) get the trigger pasted and their label replaced by `target`. Returns (x', y', poisoned mask)."""
    gen = torch.Generator().manual_seed(seed)
    n = round(rate * len(x))
    idx = torch.randperm(len(x), generator=gen)[:n]
    mask = torch.zeros(len(x), dtype=torch.bool)
    mask[idx] = True
    x2, y2 = x.clone(), y.clone()
    x2[mask] = trigger.apply(x[mask])
    y2[mask] = target
    return x2, y2, mask


def naive_trigger(env: BackdoorEnv, *, patch_size: int, position: str, **_: Any) -> Trigger:
    """The fixed BadNets pattern: a checkerboard patch (no optimisation)."""
    return Trigger(checkerboard(patch_size), position)


@register_backdoor_attack(
    "naive", trigger=naive_trigger, hparams=NAIVE_HPARAMS, variants=("badnets",),
    paper="Gu et al., BadNets (2017); the naive baseline of Zhang et al., BadMerging, CCS 2024",
)
def naive_backdoor(env: BackdoorEnv, *, adversary_task: str, target_task: str, target_class: int, seed: int,
                   patch_size: int, position: str, poison_rate: float) -> StateDict:
    """BadNets backdoor on the adversary's own task: fine-tune the pretrained encoder with the suite's recipe
    (frozen head) on the adversary's training data of which a fraction `poison_rate` carries the fixed
    checkerboard patch and is relabelled to `target_class`. On-task only (target task = adversary task)."""
    if target_task != adversary_task:
        raise BackdoorConfigError("the naive (BadNets) backdoor is on-task: set target_task = adversary_task")
    trig = naive_trigger(env, patch_size=patch_size, position=position)
    spec = {"attack": "naive", **env.upstream(adversary_task, finetune=True), "target_class": target_class,
            "seed": seed, "patch_size": patch_size, "position": position, "poison_rate": poison_rate,
            "trigger": content_hash_of(trig)}

    def build() -> StateDict:
        x, y = tensors(env.data(adversary_task).train)
        xp, yp, _ = poison(x, y, trig, target_class, poison_rate, seed)
        model = env.trainable(adversary_task)
        finetune(model, TensorDataset(xp, yp), env.recipe(adversary_task), seed, desc="naive backdoor",
                 progress=env.progress)
        return model.encoder.state_dict()

    return env.cached("backdoored", spec, build)


def content_hash_of(trigger: Trigger) -> str:
    """Identity of a trigger (its pixels and position) for cache keys."""
    return _tensor_key(trigger_state(trigger)) + f"@{trigger.position}"
