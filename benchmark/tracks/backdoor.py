"""The backdoor track: one malicious contributor uploads a backdoored fine-tuned encoder, the victim merges it
with the benign ones (optionally under a defense); clean accuracy and backdoor ASR (docs/backdoor.md).

Configuration: the suite's `backdoor:` section (adversary task, attack list, merge methods, defenses with
their hyperparameters, seeds), read and checked by `benchmark.tracks.backdoor_settings`. One unit = (attack,
variant, method, defense, seed):

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
from benchmark.hashing import content_hash
from benchmark.tracks.backdoor_settings import (
    BASELINES,
    BackdoorTrackError,
    Setting,
    backdoor_config,
    role,
    settings,
)
from benchmark.tracks.base import Track, Unit, register_track

if TYPE_CHECKING:
    from benchmark.attacks.backdoor import Backdoor, BackdoorEnv
    from benchmark.context import RunContext
    from benchmark.merging import MergeOutput

ATTACK_ORDER = ("clean_fixed_trigger", "clean_inherent", "naive", "badmerging", "bv", "sbv")
MERGE_MEMO = 2  # merges kept in memory (units run model-set-major, then method and seed, then defense)
MEMO_BYTES = {"backdoors": 1 << 30, "defense": 1 << 30}  # per process: 3 ViT-B/32 uploads, 1 IBVS vector


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
