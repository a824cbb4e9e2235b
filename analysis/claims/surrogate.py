"""Claim 5: a pretrained surrogate transfers less than a fine-tuned one (seeds/000, result 3)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, holm_family, paired_cluster_diff
from analysis.claims.core import NEW_TASKS, THESE_TASKS, Claim, Finding, finding, no_data, peq, pp
from analysis.claims.image_design import (
    IMAGE_UNIT,
    TASK_UNIT,
    ImageSample,
    fallback_note,
    gate_notes,
    image_pairs,
    image_test,
    one_pair,
    task_level,
    task_level_text,
)
from analysis.claims.power import EFFECTS, decide

FINETUNED, PRETRAINED = "finetuned", "pretrained"
_KEY = ["method", "task", "attack", "eps"]

F5 = Claim(
    "pretrained_surrogate_transfers_less",
    "A pretrained surrogate transfers less than a fine-tuned one",
    "Adversarial examples crafted on the pretrained model transfer less to the merged model than those "
    "crafted on a fine-tuned model (seeds/000, result 3).",
)


def _test(long: pd.DataFrame, metric: str, alpha: float) -> dict:
    diff = paired_cluster_diff(long, metric, FINETUNED, PRETRAINED, _KEY, TRANSFER_CLUSTER, by="surrogate")
    return cluster_test(diff, 0.0, alpha)


def surrogate_arms(rows: pd.DataFrame) -> pd.DataFrame:
    """Per-example rows of both surrogates recast as :func:`analysis.common_set.common_set`'s compared arms:
    ``method`` = the surrogate, each merged method × attack its own setting (``attack`` = ``attack|method``),
    and an image counted only where both surrogates and that merged model classify it correctly (``t_ok``
    = the surrogate's and the target's clean correctness), so the two surrogates are compared on the same
    images of the same merged model, with one image draw per task shared by both."""
    ex = rows[rows.surrogate.isin([FINETUNED, PRETRAINED])]
    return ex.assign(method=ex.surrogate, attack=ex.attack + "|" + ex.method, surrogate="both",
                     t_ok=ex.t_ok.astype(bool) & ex.s_ok.astype(bool), s_ok=True)


def pretrained_surrogate_transfers_less(
    longs: dict[str, pd.DataFrame], alpha: float = 0.05, sample: ImageSample | None = None
) -> Finding:
    """Claim 5. ``longs``: metric → transfer settings of both surrogates (the first metric decides);
    ``sample``: the per-example rows of both surrogates (the utility gate applied).

    Verdict (transfer ASR): the image design (:mod:`analysis.claims.image_design`) of fine-tuned −
    pretrained surrogate on :func:`surrogate_arms`, i.e. the mean over (method, attack, eps) settings of the
    difference on each setting's images both surrogates and the merged model classify correctly, two-sided.
    Second view: per task the mean over (method, attack, eps) of fine-tuned − pretrained, a t-test over
    tasks; it decides when ``sample`` cannot run. Per method: the task-level test, Holm over methods
    (descriptive). Stated effect 5 pp."""
    metrics, effect = list(longs), EFFECTS[F5.key]
    task_test = (
        f"two-sided paired t-test over tasks of {metrics[0]} with a fine-tuned − a pretrained surrogate (each "
        "task's value = the mean over merging methods, attacks and budgets, seeds averaged); per method the "
        "same, Holm over methods."
    )
    test = image_test(
        f"{metrics[0]} with a fine-tuned − a pretrained surrogate, each merged method × attack × budget a "
        "setting whose common examples are the images both surrogates and that merged model classify "
        "correctly, averaged over the settings", sample, "", task_test,
    ) + f" Stated effect {pp(effect).lstrip('+')}." + (
        f" Secondary metric: {', '.join(metrics[1:])} (task-level)." if len(metrics) > 1 else "")
    overall = []
    for metric, long in longs.items():
        if long.empty or not {FINETUNED, PRETRAINED} <= set(long.surrogate):
            continue
        overall.append({"metric": metric, **_test(long, metric, alpha)})
    if not overall or overall[0]["metric"] != metrics[0] or overall[0]["n_clusters"] < 2:
        return no_data(F5, test, "transfer results with both a `finetuned` and a `pretrained` surrogate on 2 "
                       "or more tasks are needed")
    primary = metrics[0]
    long = longs[primary]
    pm = pd.DataFrame([{"method": m, **_test(g, primary, alpha)} for m, g in long.groupby("method")])
    pm = holm_family(pm[pm.n_clusters >= 2], alpha).rename(columns={"mean": "mean_diff"}) if not pm.empty else pm
    r = overall[0]
    if primary != "asr_transfer":
        img, why = None, f"the image design tests transfer ASR, not {primary}"
    else:
        arms = None if sample is None else ImageSample(surrogate_arms(sample.rows), sample.settings,
                                                       sample.n_boot, sample.seed)
        img, why = image_pairs(arms, primary, [FINETUNED, PRETRAINED], [(FINETUNED, PRETRAINED)], alpha)
    per_method = ""
    if not pm.empty:
        n_sig = int(((pm.p_holm < alpha) & (pm.mean_diff > 0)).sum())
        per_method = (f" Per method (task-level, Holm), the fine-tuned surrogate transfers significantly more "
                      f"for {n_sig} of {len(pm)}.")
    secondary = "".join(f" Secondary ({o['metric']}, task-level): {pp(o['mean'])}, {peq(o['p'])}."
                        for o in overall[1:])
    notes = []
    if primary == "asr_transfer":
        notes.append("Absolute transfer ASR decides: relative ASR divides by each surrogate's own white-box "
                     "ASR, so it compares transfer *efficiency*, not how often the merged model is fooled.")
    tables = {"overall": pd.DataFrame(overall).rename(columns={"mean": "mean_diff"}), "per_method": pm}
    if img is not None:
        verdict, result, n = one_pair(img, f"{primary} on the images both surrogates and the merged model "
                                      "classify correctly", "fine-tuned − pretrained surrogate", effect, alpha)
        result += " " + task_level_text(r, "fine-tuned − pretrained") + per_method + secondary
        return finding(F5, test, verdict, result, "", {"metric": primary, **n, **task_level(r)}, tables,
                       mdd=n["mdd"], effect=effect, unit=IMAGE_UNIT, population=THESE_TASKS,
                       notes=[*notes, *gate_notes(sample)])
    verdict, remark = decide(r["p"], r["effect"], r["mdd"], effect, alpha)
    result = (
        f"{primary} over {r['n_clusters']} tasks: fine-tuned − pretrained surrogate = {pp(r['mean'])} (95% CI "
        f"{pp(r['ci_low'])} to {pp(r['ci_high'])}); t({r['n_clusters'] - 1}) = {r['t']:.2f}, {peq(r['p'])}, "
        f"d = {r['cohen_d']:+.2f}; minimum detectable difference {pp(r['mdd']).lstrip('+')}."
        + per_method + secondary
    )
    return finding(F5, test, verdict, result, remark, {"metric": primary, "design": "task", **r, **task_level(r)},
                   tables, mdd=r["mdd"], effect=effect, unit=TASK_UNIT, population=NEW_TASKS,
                   notes=[*notes, fallback_note(why)])
