"""The naive backdoor: BadNets-style data poisoning (Gu, Dolan-Gavitt & Garg, "BadNets", 2017), the
baseline BadMerging shows is diluted by merging (Zhang et al., CCS 2024, §3: prior backdoors reach < 20%
ASR after merging)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from benchmark.attacks.backdoor.base import (
    BackdoorConfigError,
    BackdoorEnv,
    _tensor_key,
    register_backdoor_attack,
    trigger_state,
)
from benchmark.attacks.backdoor.triggers import Trigger, checkerboard
from benchmark.types import StateDict
from benchmark.zoo.train import finetune

NAIVE_HPARAMS = {"patch_size": 3, "position": "bottom_right", "poison_rate": 0.1}


def poison_mask(n: int, rate: float, seed: int) -> torch.Tensor:
    """BadNets' poisoned subset: a fixed, seeded `rate` fraction of `n` training images, chosen once, before
    training. A bool mask of length `n`."""
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(rate * n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return mask


class PoisonedDataset(Dataset):
    """BadNets poisoning (Gu et al. 2017) of a split, applied lazily item by item: the images under `mask`
    get the trigger pasted and the label `target`, the others pass through unchanged. Nothing is held but
    the mask, so a split of any size streams through a DataLoader; the items equal those of poisoning the
    whole split in memory, bit for bit (pasting is elementwise)."""

    def __init__(self, base: Dataset, trigger: Trigger, target: int, mask: torch.Tensor):
        if len(mask) != len(base):
            raise ValueError(f"a poison mask of {len(mask)} items for a split of {len(base)}")
        self.base, self.trigger, self.target, self.mask = base, trigger, int(target), mask

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        if not self.mask[i]:
            return x, y
        return self.trigger.apply(x.unsqueeze(0))[0], torch.tensor(self.target, dtype=torch.as_tensor(y).dtype)


def poison(base: Dataset, trigger: Trigger, target: int, rate: float, seed: int) -> PoisonedDataset:
    """`base` with a seeded `rate` fraction poisoned (`poison_mask`), read lazily (`PoisonedDataset`)."""
    return PoisonedDataset(base, trigger, target, poison_mask(len(base), rate, seed))


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
        data = poison(env.data(adversary_task).train, trig, target_class, poison_rate, seed)
        model = env.trainable(adversary_task)
        finetune(model, data, env.recipe(adversary_task), seed, desc="naive backdoor", progress=env.progress)
        return model.encoder.state_dict()

    return env.cached("backdoored", spec, build)


def content_hash_of(trigger: Trigger) -> str:
    """Identity of a trigger (its pixels and position) for cache keys."""
    return _tensor_key(trigger_state(trigger)) + f"@{trigger.position}"
