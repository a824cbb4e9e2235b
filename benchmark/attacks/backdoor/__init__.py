"""Backdoor attacks on model merging (docs/backdoor.md).

Registered attacks (`list_backdoor_attacks()`):
- `naive`: BadNets data poisoning (Gu et al. 2017), the baseline BadMerging shows is diluted by merging;
- `badmerging`: BadMerging on-task and off-task (Zhang et al., CCS 2024);
- `bv`, `sbv`: Backdoor Vector and Sparse Backdoor Vector injection (Pawlak et al., arXiv 2510.08016).

`make_backdoor(env, attack, variant, params)` runs one (cached) and returns a `Backdoor`: the adversary's
uploaded encoder, the trigger and the target (task, class).
"""

from benchmark.attacks.backdoor import backdoor_vectors, badmerging, naive  # noqa: F401  (register)
from benchmark.attacks.backdoor.backdoor_vectors import (
    backdoor_vector,
    inject,
    sparse_backdoor_vector,
)
from benchmark.attacks.backdoor.badmerging import FeatureInterpolationLoss, badmerging_trigger, shadow_head
from benchmark.attacks.backdoor.base import (
    BACKDOOR_ATTACKS,
    COMMON,
    Backdoor,
    BackdoorAttack,
    BackdoorConfigError,
    BackdoorEnv,
    get_backdoor_attack,
    list_backdoor_attacks,
    make_backdoor,
    register_backdoor_attack,
    resolve_params,
)
from benchmark.attacks.backdoor.naive import poison
from benchmark.attacks.backdoor.triggers import Trigger, checkerboard, optimise_universal_patch, paste, white_square

__all__ = [
    "BACKDOOR_ATTACKS",
    "COMMON",
    "Backdoor",
    "BackdoorAttack",
    "BackdoorConfigError",
    "BackdoorEnv",
    "FeatureInterpolationLoss",
    "Trigger",
    "backdoor_vector",
    "badmerging_trigger",
    "checkerboard",
    "get_backdoor_attack",
    "inject",
    "list_backdoor_attacks",
    "make_backdoor",
    "optimise_universal_patch",
    "paste",
    "poison",
    "register_backdoor_attack",
    "resolve_params",
    "shadow_head",
    "sparse_backdoor_vector",
    "white_square",
]
