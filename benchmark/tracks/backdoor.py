"""The backdoor track: one malicious contributor uploads a backdoored fine-tuned encoder, the victim merges it
with the benign ones (optionally under a defense); clean accuracy and backdoor ASR (docs/backdoor.md).

Configuration: the suite's `backdoor:` section (adversary task, attack list, merge methods, defenses with
their hyperparameters, seeds). One unit = (attack, variant, method, defense, seed):

- attacks: each entry of `backdoor.attacks` (naive BadNets, BadMerging on-/off-task, BV, SBV), plus the
  baselines (`role = 'baseline'`, every contributor benign): `clean_fixed_trigger` per (target, patch size),
  a fixed pattern on the benign merge (BadMerging's clean rows), and `clean_inherent` per optimised patch
  (the Backdoor Vectors paper's inherent trigger);
- methods: the run's merge methods restricted to `backdoor.methods` (when the suite lists them);
- defenses: `none`, each defense in `backdoor.defenses`, and every registered non-built-in defense (a plugin
  or submission) with its default hyperparameters.

A unit of seed s merges the benign contributors' fine-tunes of seed s's zoo (`Zoo.for_seed`: under
`recipe.finetune_seed: run`, the fine-tunes trained with seed s; the pretrained encoder and the heads every
attack starts from are the same for every seed).

Backdoored models, triggers, shadow heads and IBVS vectors are built once and cached (content-addressed, like
the zoo). Within a run, merges are memoised per (models, method, seed) so defenses and the baseline rows that
share a merge do not merge again, and one clean pass per merged model gives clean accuracy and every row's
ASR floor. Rows go to `backdoor_settings`, `backdoor_task_acc`, `backdoor_outcomes`.
"""

from __future__ import annotations

import json
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmark import trace
from benchmark.cache import ByteLRU
from benchmark.errors import MergesecError
from benchmark.hashing import content_hash
from benchmark.tracks.base import Track, Unit, register_track

if TYPE_CHECKING:
    from benchmark.attacks.backdoor import Backdoor, BackdoorEnv
    from benchmark.context import RunContext
    from benchmark.merging import MergeOutput

ATTACK_ORDER = ("clean_fixed_trigger", "clean_inherent", "naive", "badmerging", "bv", "sbv")
TRIGGER_ONLY_KEYS = ("scale", "seeds", "keep_ratio", "sign_consistent", "source")
MERGE_MEMO = 2  # merges kept in memory (units run model-set-major, then method and seed, then defense)
MEMO_BYTES = {"backdoors": 1 << 30, "defense": 1 << 30}  # per process: 3 ViT-B/32 uploads, 1 IBVS vector


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


# -- per-run state ---------------------------------------------------------------------------------------


@dataclass
class _State:
    env: BackdoorEnv
    backdoors: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["backdoors"]))
    merges: OrderedDict = field(default_factory=OrderedDict)
    defended: OrderedDict = field(default_factory=OrderedDict)
    preds: OrderedDict = field(default_factory=OrderedDict)
    defense_memo: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["defense"]))
    classifiers: Any = None


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(ctx: RunContext) -> _State:
    if ctx not in _STATES:
        from benchmark.attacks.backdoor import BackdoorEnv

        _STATES[ctx] = _State(BackdoorEnv(ctx.zoo, ctx.data, ctx.cache, ctx.progress))
    return _STATES[ctx]


def backdoor_for(ctx: RunContext, s: Setting, seed: int) -> Backdoor:
    """The attack instance of setting `s` (cached artefacts; memoised for the run)."""
    from benchmark.attacks.backdoor import make_backdoor

    st = _state(ctx)
    key = (s.attack, s.variant, json.dumps(s.params, sort_keys=True), seed)
    if key not in st.backdoors:
        if s.attack in BASELINES:
            src, variant, params = s.trigger_of
            bd = make_backdoor(st.env, src, variant, {**json.loads(params), "seed": seed}, clean=True)
            bd.attack, bd.variant = s.attack, s.variant
        else:
            bd = make_backdoor(st.env, s.attack, s.variant, {**s.params, "seed": seed})
        st.backdoors[key] = bd
    return st.backdoors[key]


def _remember(memo: OrderedDict, key: Any, value: Any, size: int) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > size:
        memo.popitem(last=False)


def defended_model(ctx: RunContext, s: Setting, bd: Backdoor, method: str, mh: dict, defense: str, dh: dict,
                   seed: int) -> tuple[str, MergeOutput]:
    """(key, merged model) of the models of setting `s` merged with `method` under `defense`."""
    from benchmark.defenses import as_output, defended_merge
    from benchmark.merging import MergeContext, merge

    st = _state(ctx)
    zoo, tasks = ctx.zoo.for_seed(seed), ctx.suite.task_names  # the benign contributors: seed `seed`'s fine-tunes
    models = [bd.state_dict if bd.state_dict is not None and t == bd.adversary_task else zoo.finetuned[t]
              for t in tasks]
    mkey = content_hash([s.models_key, seed, method, mh])
    dkey = content_hash([mkey, defense, dh])
    if dkey in st.defended:
        return dkey, st.defended[dkey]
    pre, memo = zoo.pretrained, st.merges  # the closure below holds only these, never the zoo or the attack
    mctx = MergeContext(
        pretrained=pre, finetuned=models, tasks=tasks, classifier_factory=_classifiers(ctx),
        dev_data=[ctx.data(t).dev for t in tasks], seed=seed)

    def merge_fn(pretrained, finetuned):
        same = pretrained is pre and len(finetuned) == len(models) and all(
            a is b for a, b in zip(finetuned, models, strict=True))
        if same and mkey in memo:
            return memo[mkey]
        trace.record("merge", track="backdoor", method=method, seed=int(seed), models=mkey if same else "defense")
        out = as_output(merge(method, pretrained, finetuned, context=mctx, **mh), len(tasks))
        if same:
            _remember(memo, mkey, out, MERGE_MEMO)
        return out

    out = defended_merge(defense, method, zoo.pretrained, models, mctx, mh, dh, ctx.suite.recipe["finetune"],
                         ctx.cache, merge_fn=merge_fn, memo=st.defense_memo)
    _remember(st.defended, dkey, out, MERGE_MEMO)
    return dkey, out


def _check_inject_tasks(suite, defenses: dict[str, dict], rows: list[Setting]) -> None:
    """A defense that injects its own backdoor (`inject_task`, IBVS) must not inject into an off-task
    attack's target task: the defender's backdoor would then share the head the attack's ASR is read with."""
    targets = {s.params["target_task"] for s in rows if s.params["target_task"] != s.params["adversary_task"]}
    names = suite.task_names
    for name, hp in defenses.items():
        i = hp.get("inject_task")
        if isinstance(i, int) and 0 <= i < len(names) and names[i] in targets:
            raise BackdoorTrackError(
                f"defense {name!r} injects into task {names[i]!r}, the target task of an off-task attack; set "
                f"backdoor.defenses.{name}.inject_task to another task index")


def _classifiers(ctx: RunContext):
    """The run's `TaskClassifiers` (backbone + the merged tasks' heads: what the victim and a defender hold)."""
    from benchmark.defenses.api import TaskClassifiers

    st = _state(ctx)
    if st.classifiers is None:
        st.classifiers = TaskClassifiers(ctx.suite.backbone, tuple(ctx.zoo.heads[t] for t in ctx.suite.task_names))
    return st.classifiers


def _defense_code(name: str) -> str:
    from benchmark import __version__
    from benchmark.defenses import get_defense

    if name == "none":
        return "none"
    return getattr(get_defense(name), "code_hash", None) or f"builtin-{__version__}"


@register_track
class BackdoorTrack(Track):
    """Backdoor: clean accuracy and backdoor ASR of each attack x merge method x defense (docs/backdoor.md)."""

    name = "backdoor"

    def plan(self, ctx, methods):
        from benchmark.attacks.backdoor.base import CODE_VERSION
        from benchmark.defenses import check_defense_hparams, get_defense, list_defenses

        cfg = backdoor_config(ctx.suite)
        if cfg["methods"]:
            methods = [m for m in methods if m in cfg["methods"]]
        defenses = {"none": {}}
        for name, hp in cfg["defenses"].items():
            defenses[name] = check_defense_hparams(get_defense(name), hp)
        for name in list_defenses():  # plugins and submissions join the sweep with their defaults
            d = get_defense(name)
            if d.source != "builtin" and name not in defenses:
                defenses[name] = dict(d.hparams)
        rows = settings(ctx.suite)
        _check_inject_tasks(ctx.suite, defenses, rows)
        groups: dict[str, list[Setting]] = {}
        for s in rows:  # rows that merge the same models run together (shared merges)
            groups.setdefault(s.models_key, []).append(s)
        units = []
        for group in groups.values():  # seed outside defense: every defense of a merge runs while it is memoised
            for method, seed in ((m, seed) for m in methods for seed in cfg["seeds"]):
                mh = ctx.method_hparams(method)
                for defense, dh in defenses.items():
                    for s in group:
                        units.append(Unit(self.name, {
                            "suite_hash": ctx.suite.hash, "attack": s.attack, "variant": s.variant,
                            "method": method, "defense": defense, "seed": seed,
                            "hparams": {"attack": s.params, "method": mh, "defense": dh},
                            "inputs": {"trigger_of": list(s.trigger_of) if s.trigger_of else None},
                            "code": {"method": ctx.method_code(method), "defense": _defense_code(defense),
                                     "attack": CODE_VERSION},
                        }))
        return units

    def setting(self, description):
        """The attack's parameters name the setting too (two entries may differ only in them); the method's
        and defense's hyperparameters and every code version do not."""
        return {**super().setting(description), "attack_params": description.get("hparams", {}).get("attack")}

    def affinity(self, description):
        """The merged model a unit evaluates (set of models, method, seed): its defenses and the settings that
        merge the same models reuse that merge (and its clean pass) in one worker."""
        return (Setting.of_unit(description).models_key, description["method"], description["seed"])

    def run_unit(self, unit, ctx):
        from benchmark.metrics.backdoor import backdoor_asr, clean_predictions, mean_clean_accuracy

        d = unit.description
        hp = d["hparams"]
        s = Setting.of_unit(d)
        seed = d["seed"]
        bd = backdoor_for(ctx, s, seed)
        key, merged = defended_model(ctx, s, bd, d["method"], hp["method"], d["defense"], hp["defense"], seed)
        tasks = ctx.suite.task_names
        st = _state(ctx)
        bs = ctx.batch_sizes["eval"]
        if key not in st.preds:  # one clean pass per merged model: clean accuracy and every row's ASR floor
            st.preds[key] = {
                t: clean_predictions(ctx.zoo.classifier(merged.state_dict, t, merged.adapters[i]), ctx.data(t).test,
                                     bs)
                for i, t in enumerate(tasks)}
        preds = st.preds[key]
        accs = {t: int((p == y).sum()) / len(y) for t, (p, y) in preds.items()}
        i = tasks.index(bd.target_task)
        target_model = ctx.zoo.classifier(merged.state_dict, bd.target_task, merged.adapters[i])
        r = backdoor_asr(target_model, ctx.data(bd.target_task).test, bd.target_class, bd.trigger.apply,
                         clean_pred=preds[bd.target_task][0], batch_size=bs)
        ident = {"suite_hash": ctx.suite.hash, "attack": d["attack"], "variant": d["variant"],
                 "method": d["method"], "defense": d["defense"], "seed": seed}
        settings_df = pd.DataFrame([{
            "suite": ctx.suite.name, **ident, "adversary_task": bd.adversary_task, "target_task": bd.target_task,
            "target_class": bd.target_class, "clean_acc": mean_clean_accuracy(accs), "backdoor_asr": r.asr,
            "n_asr": r.n, "asr_floor": r.floor, "role": role(d["attack"])}])
        task_df = pd.DataFrame([{**ident, "task": t, "clean_acc": a} for t, a in accs.items()])
        outcomes = pd.DataFrame({
            **{k: [v] * r.n for k, v in ident.items()},
            "example_id": r.example_id.tolist(), "label": r.label.tolist(),
            "triggered_pred": r.triggered_pred.tolist(), "hit": r.hit.tolist(),
            "clean_pred": r.clean_pred.tolist()})
        return {"backdoor_settings": settings_df, "backdoor_task_acc": task_df, "backdoor_outcomes": outcomes}


# -- the summary table -----------------------------------------------------------------------------------


SUMMARY_VALUES = {"acc": "clean_acc", "asr": "backdoor_asr", "floor": "asr_floor", "asr-floor": "asr_minus_floor"}
"""Column prefix of the summary table -> `backdoor_metrics` column (means over seeds)."""


def summary_table(df: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """One row per (role, attack, variant, target, method), baselines first; per defense the clean accuracy
    `acc[<defense>]`, backdoor ASR `asr[<defense>]`, its untriggered floor `floor[<defense>]` and
    `asr-floor[<defense>]` (means over seeds; `none` first), and `seeds` (how many were averaged). Input:
    rows of `backdoor_metrics`."""
    if df.empty:
        return df
    df = df.copy()
    if "role" not in df:
        df["role"] = df.attack.map(role)
    keys = ["role", "attack", "variant", "target_task", "target_class", "method"]
    values = list(SUMMARY_VALUES.values())
    g = df.groupby([*keys, "defense"], as_index=False).agg(
        **{v: (v, "mean") for v in values}, seeds=("seed", "nunique"))
    defenses = ["none", *sorted(set(g.defense) - {"none"})]
    wide = g.pivot_table(index=keys, columns="defense", values=[*values, "seeds"])
    cols = {}
    for dname in defenses:
        if ("clean_acc", dname) in wide.columns:
            for prefix, v in SUMMARY_VALUES.items():
                cols[f"{prefix}[{dname}]"] = wide[(v, dname)]
    out = pd.DataFrame(cols)
    out["seeds"] = wide["seeds"].min(axis=1).astype(int)
    out = out.reset_index()
    out["target"] = out.target_task + ":" + out.target_class.astype(str)
    order = {a: i for i, a in enumerate(ATTACK_ORDER)}
    morder = {m: i for i, m in enumerate(methods or sorted(set(out.method)))}
    out["_r"] = out.role.map(lambda r: 0 if r == "baseline" else 1)
    out["_a"] = out.attack.map(lambda a: order.get(a, len(order)))
    out["_m"] = out.method.map(lambda m: morder.get(m, len(morder)))
    out = out.sort_values(["_r", "_a", "variant", "_m"]).drop(columns=["_r", "_a", "_m", "target_task", "target_class"])
    return out[["role", "attack", "variant", "target", "method", *cols, "seeds"]].reset_index(drop=True)
