"""What a backdoor attack sees (`BackdoorEnv`), what it produces (`Backdoor`), and the attack registry.

The threat model of BadMerging (Zhang et al., CCS 2024) and Backdoor Vectors (Pawlak et al., 2025): one
contributor (the adversary) owns one task (`adversary_task`), knows the public pretrained encoder, has its
own task's training data and frozen head, and uploads one fine-tuned encoder. It does not see the other
contributors' models, the merge method or the victim's data. Off-task attacks also hold a few images of the
target class of another contributor's task (`target_task`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.attacks.backdoor.triggers import Trigger
from benchmark.cache import ByteLRU, Cache
from benchmark.data import TaskData
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.hashing import content_hash
from benchmark.merging.validate import _type_ok
from benchmark.registry import NAME
from benchmark.types import StateDict
from benchmark.zoo import ImageClassifier, Zoo

CODE_VERSION = "backdoor-2"
"""Bumped whenever an attack's algorithm changes, so cached backdoored models are rebuilt."""

COMMON = ("adversary_task", "target_task", "target_class", "seed")
"""Parameters every attack receives from the track (besides its own hyperparameters)."""


class BackdoorConfigError(MergesecError):
    """A backdoor attack or its parameters that cannot be used (unknown key, wrong type, bad task)."""


MEMO_BYTES = {"artefacts": 1 << 30}  # per process: the attacks' artefacts (3 ViT-B/32 uploads), reloaded if dropped


@dataclass
class BackdoorEnv:
    """The adversary's world: the zoo (only `pretrained`, the heads and, for Backdoor Vectors, its own clean
    fine-tuned model of the attack's seed, `Zoo.for_seed`, are used), task data, the suite's fine-tuning
    recipe and the artefact cache."""

    zoo: Zoo
    data: Callable[[str], TaskData]
    cache: Cache | None = None
    progress: bool = False
    _memo: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["artefacts"]), repr=False)

    def recipe(self, task: str) -> dict[str, Any]:
        """The suite's fine-tuning recipe for `task` (the adversary trains as every contributor does)."""
        from benchmark.zoo.zoo import finetune_recipe

        return finetune_recipe(self.zoo.suite, task)

    def pretrained_classifier(self, task: str) -> ImageClassifier:
        """The pretrained encoder with `task`'s frozen head (eval mode, no grad)."""
        return self.zoo.classifier(self.zoo.pretrained, task)

    def trainable(self, task: str) -> ImageClassifier:
        """A fresh copy of the pretrained encoder with `task`'s frozen head, encoder trainable."""
        model = self.zoo.classifier(self.zoo.pretrained, task)
        model.encoder.requires_grad_(True)
        return model

    def upstream(self, *tasks: str, finetune: bool = False) -> dict[str, Any]:
        """What an artefact built from the pretrained encoder and these tasks' heads and data depends on."""
        keys = self.zoo.keys
        spec: dict[str, Any] = {
            "code": CODE_VERSION,
            "pretrained": keys.get("pretrained") or _tensor_key(self.zoo.pretrained),
            "data": self.zoo.suite.data,
            "tasks": {t: {"head": keys.get(f"head/{t}"), **self.zoo.suite.task(t).options} for t in sorted(set(tasks))},
        }
        if finetune:
            spec["recipe"] = self.zoo.suite.recipe["finetune"]
        return spec

    def cached(self, kind: str, spec: Any, build: Callable[[], StateDict]) -> StateDict:
        """`build()` through the artefact cache (and an in-process memo), keyed by `spec`."""
        key = f"{kind}/{content_hash(spec)}"
        if key not in self._memo:
            self._memo[key] = self.cache.get_or_build(kind, spec, build) if self.cache is not None else build()
        return self._memo[key]


def _tensor_key(sd: StateDict) -> str:
    import hashlib

    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Backdoor:
    """One attack instance: the adversary's uploaded encoder (None for the clean baseline: every contributor
    benign), the trigger pasted at test time, and the target (task, class) the ASR is measured on."""

    attack: str
    variant: str
    adversary_task: str
    target_task: str
    target_class: int
    trigger: Trigger
    state_dict: StateDict | None


@dataclass(frozen=True)
class BackdoorAttack:
    """A registered backdoor attack.

    `trigger(env, **params) -> Trigger` and `build(env, **params) -> StateDict` (the uploaded encoder);
    `params` are the attack's `hparams` (defaults, overridden by the suite) plus `COMMON`.
    `passthrough=True` lets extra parameters through to a source attack (Backdoor Vectors).
    """

    name: str
    trigger: Callable[..., Trigger]
    build: Callable[..., StateDict]
    hparams: Mapping[str, Any] = field(default_factory=dict)
    variants: tuple[str, ...] = ()
    paper: str = ""
    citation: str = ""
    passthrough: bool = False


BACKDOOR_ATTACKS: dict[str, BackdoorAttack] = {}


def register_backdoor_attack(
    name: str,
    *,
    trigger: Callable[..., Trigger],
    hparams: Mapping[str, Any] | None = None,
    variants: tuple[str, ...] = (),
    paper: str = "",
    passthrough: bool = False,
) -> Callable[[Callable[..., StateDict]], Callable[..., StateDict]]:
    """Decorator registering `build` as backdoor attack `name` (with its `trigger` function)."""

    def decorate(build: Callable[..., StateDict]) -> Callable[..., StateDict]:
        if not NAME.match(name):
            raise BackdoorConfigError(f"cannot register backdoor attack {name!r}: invalid name")
        if name in BACKDOOR_ATTACKS:
            raise BackdoorConfigError(f"backdoor attack {name!r} is already registered; pick another name")
        BACKDOOR_ATTACKS[name] = BackdoorAttack(
            name, trigger, build, dict(hparams or {}), tuple(variants), paper,
            inspect.cleandoc(build.__doc__ or ""), passthrough)
        return build

    return decorate


def get_backdoor_attack(name: str) -> BackdoorAttack:
    if name not in BACKDOOR_ATTACKS:
        raise UnknownNameError("backdoor attack", name, list(BACKDOOR_ATTACKS))
    return BACKDOOR_ATTACKS[name]


def list_backdoor_attacks() -> list[dict[str, Any]]:
    """One row per registered backdoor attack (for `mergesec list` and the leaderboard)."""
    return [{"attack": a.name, "variants": ", ".join(a.variants) or "-", "hparams": dict(a.hparams),
             "paper": a.paper} for a in BACKDOOR_ATTACKS.values()]


def resolve_params(attack: BackdoorAttack, given: Mapping[str, Any]) -> dict[str, Any]:
    """The attack's defaults updated with `given` (which must hold `COMMON`); unknown keys and wrong types
    are errors naming the fix."""
    missing = [k for k in COMMON if k not in given]
    if missing:
        raise BackdoorConfigError(f"backdoor attack {attack.name!r} needs {missing}")
    own = {k: v for k, v in given.items() if k not in COMMON}
    unknown = sorted(set(own) - set(attack.hparams))
    if unknown and not attack.passthrough:
        raise BackdoorConfigError(
            f"backdoor attack {attack.name!r} has no parameter(s) {unknown}; valid: {sorted(attack.hparams)}")
    for k, v in own.items():
        if k in attack.hparams and not _type_ok(v, attack.hparams[k]):
            raise BackdoorConfigError(
                f"parameter {k!r} of backdoor attack {attack.name!r} must be a "
                f"{type(attack.hparams[k]).__name__} (default {attack.hparams[k]!r}); got {v!r}")
    return {**attack.hparams, **own, **{k: given[k] for k in COMMON}}


def make_backdoor(env: BackdoorEnv, attack: str, variant: str, params: Mapping[str, Any],
                  clean: bool = False) -> Backdoor:
    """Run attack `attack` with `params` (COMMON included): its trigger and, unless `clean`, its upload."""
    a = get_backdoor_attack(attack)
    p = resolve_params(a, params)
    for t in (p["adversary_task"], p["target_task"]):
        env.zoo.suite.task(t)
    n_classes = env.zoo.suite.task(p["target_task"]).n_classes
    if not 0 <= p["target_class"] < n_classes:
        raise BackdoorConfigError(
            f"target_class {p['target_class']} is not a class of task {p['target_task']!r} (0..{n_classes - 1})")
    trig = a.trigger(env, **p)
    sd = None if clean else a.build(env, **p)
    return Backdoor(attack, variant, p["adversary_task"], p["target_task"], int(p["target_class"]), trig, sd)


def trigger_state(trigger: Trigger) -> StateDict:
    return {"pattern": trigger.pattern.detach().clone().contiguous()}

