"""The rows a suite's `backdoor:` section defines (docs/backdoor.md): its configuration with defaults filled
and names checked (:func:`backdoor_config`), and the settings the backdoor track runs (:func:`settings`):
each attack entry, validated against the backdoor-attack registry, after the baseline rows it implies
(`role = 'baseline'`, every contributor benign: BadMerging's fixed-trigger clean rows and the Backdoor
Vectors paper's inherent-trigger rows). Pure functions of the suite: no model is built here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import MergesecError
from benchmark.hashing import content_hash

TRIGGER_ONLY_KEYS = ("scale", "seeds", "keep_ratio", "sign_consistent", "source")


class BackdoorTrackError(MergesecError):
    """A suite `backdoor:` section the track cannot run."""


@dataclass(frozen=True)
class Setting:
    """One attack row of the sweep: attack, variant and the attack's parameters (COMMON minus seed)."""

    attack: str
    variant: str
    params: dict[str, Any] = field(hash=False)
    trigger_of: tuple[str, str, str] | None = None  # clean rows: (attack, variant, params json) of the trigger

    @classmethod
    def of_unit(cls, description: dict[str, Any]) -> Setting:
        """The setting a backdoor unit's description runs."""
        trig = description["inputs"]["trigger_of"]
        return cls(description["attack"], description["variant"], description["hparams"]["attack"],
                   tuple(trig) if trig else None)

    @property
    def models_key(self) -> str:
        """Identity of the set of models merged (all clean rows share one)."""
        return "clean" if self.attack in BASELINES else content_hash([self.attack, self.variant, self.params])


def legacy_attacks(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The attack list implied by a compact backdoor section without `attacks:` (keys `target_class`,
    `patch_size`, `off_task_target`): BadNets and BadMerging on-task with `patch_size`, BadMerging off-task
    with a patch 1.5x the area (BadMerging's 1% / 1.5%), BV at λ = 1.5 and 3, SBV_SC at λ = 3."""
    if "target_class" not in raw:
        return []
    c, ps = int(raw["target_class"]), int(raw.get("patch_size", 3))
    out = [{"attack": "naive", "variant": "badnets", "target_class": c, "patch_size": ps},
           {"attack": "badmerging", "variant": "on_task", "target_class": c, "patch_size": ps}]
    if raw.get("off_task_target"):
        out.append({"attack": "badmerging", "variant": "off_task", "target_task": raw["off_task_target"],
                    "target_class": c, "patch_size": max(ps + 1, round(ps * 1.5**0.5))})
    bv = {"target_class": c, "source": "naive", "patch_size": ps}
    out += [{"attack": "bv", "variant": "lambda1.5", **bv, "scale": 1.5},
            {"attack": "bv", "variant": "lambda3", **bv, "scale": 3.0},
            {"attack": "sbv", "variant": "sign_consistent_lambda3", **bv, "scale": 3.0}]
    return out


def backdoor_config(suite) -> dict[str, Any]:
    """The suite's backdoor section with defaults filled and names checked. Without `defenses:`, every
    built-in defense runs with its defaults; without `methods:`, every merge method of the run."""
    from benchmark.defenses import get_defense, list_defenses

    raw = dict(suite.backdoor or {})
    attacks = list(raw.get("attacks") or legacy_attacks(raw))
    if not attacks:
        raise BackdoorTrackError(
            f"suite {suite.name!r} has no backdoor.attacks; add a list like "
            "[{attack: naive, variant: badnets, target_class: 1}] (see docs/backdoor.md)")
    adv = raw.get("adversary_task", suite.task_names[0])
    suite.task(adv)
    if "defenses" in raw:
        defenses = {k: dict(v or {}) for k, v in (raw.get("defenses") or {}).items()}
    else:
        defenses = {n: {} for n in list_defenses() if get_defense(n).source == "builtin"}
    return {
        "adversary_task": adv,
        "seeds": tuple(raw.get("seeds", [0])),
        "methods": list(raw.get("methods") or []),
        "defenses": defenses,
        "attacks": attacks,
        "clean_baseline": bool(raw.get("clean_baseline", True)),
    }


BASELINES = ("clean_fixed_trigger", "clean_inherent")
"""Baseline rows (role 'baseline'): every contributor benign, a trigger pasted on the benign merge.
`clean_fixed_trigger`: BadMerging's official clean rows, a fixed pattern (the BadNets checkerboard here, the
official code's `fixed_trigger.png` resized) at the attacks' patch size; `clean_inherent`: the Backdoor
Vectors paper's inherent-trigger measurement, each optimised patch of an attack on the benign merge."""
FIXED_TRIGGER_SOURCES = ("naive",)  # attacks whose trigger is the fixed pattern: no inherent row of their own


def role(attack: str) -> str:
    """'baseline' for the clean rows, 'attack' otherwise (no ranking or attack mean includes baselines)."""
    return "baseline" if attack in BASELINES else "attack"


def _baselines(name: str, variant: str, params: dict[str, Any], src: str) -> list[Setting]:
    """The baseline rows an attack entry implies: its fixed-trigger row (same target and patch size) and,
    for an optimised trigger, its inherent-trigger row."""
    trig_params = {k: v for k, v in params.items() if k not in TRIGGER_ONLY_KEYS}
    fixed = {k: trig_params[k] for k in ("adversary_task", "target_task", "target_class") if k in trig_params}
    fixed.update(patch_size=params.get("patch_size", 3), position=params.get("position", "bottom_right"))
    label = f"{fixed['target_task']}_{fixed['target_class']}_{fixed['patch_size']}px"
    out = [Setting("clean_fixed_trigger", label, fixed, ("naive", "badnets", json.dumps(fixed, sort_keys=True)))]
    if src not in FIXED_TRIGGER_SOURCES:
        label = f"{name}_{variant}" if src == name else f"{src}_{variant}"
        out.append(Setting("clean_inherent", label, trig_params, (src, variant, json.dumps(trig_params))))
    return out


def settings(suite) -> list[Setting]:
    """The attack rows (the suite's attacks, validated against the registry) after the baseline rows."""
    from benchmark.attacks.backdoor import get_backdoor_attack, resolve_params

    cfg = backdoor_config(suite)
    out: list[Setting] = []
    clean: dict[tuple, Setting] = {}
    for entry in cfg["attacks"]:
        entry = dict(entry)
        name = entry.pop("attack", None)
        if name is None:
            raise BackdoorTrackError(f"backdoor.attacks entry {entry} has no `attack:` name")
        variant = str(entry.pop("variant", name))
        attack = get_backdoor_attack(name)
        params = {"adversary_task": cfg["adversary_task"], "target_task": cfg["adversary_task"], **entry}
        suite.task(params["target_task"])
        if "target_class" not in params:
            raise BackdoorTrackError(f"backdoor.attacks entry {name}/{variant} needs target_class")
        resolve_params(attack, {**params, "seed": 0})  # validates names and types now, not mid-run
        if name == "badmerging":
            mode = "on_task" if params["target_task"] == params["adversary_task"] else "off_task"
            if variant != mode:
                raise BackdoorTrackError(
                    f"badmerging entry with target_task {params['target_task']!r} (adversary task "
                    f"{params['adversary_task']!r}) is the {mode} variant; set variant: {mode}")
        out.append(Setting(name, variant, params))
        src = params.get("source", name) if attack.passthrough else name
        for b in _baselines(name, variant, params, src):
            tkey = (b.attack, b.trigger_of[0], content_hash(
                resolve_params(get_backdoor_attack(b.trigger_of[0]), {**json.loads(b.trigger_of[2]), "seed": 0})))
            clean.setdefault(tkey, b)
    rows = sorted(clean.values(), key=lambda b: (BASELINES.index(b.attack), b.variant)) if cfg["clean_baseline"] else []
    return rows + out


