"""Claim 1: relative transfer ASR of merged models exceeds 95% (Gangwal & Sharma, arXiv 2509.23689)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, cluster_values, holm_family
from analysis.claims.core import NEW_TASKS, THESE_TASKS, Claim, Finding, finding, no_data, pct, peq, pp
from analysis.claims.image_design import (
    IMAGE_UNIT,
    TASK_UNIT,
    ImageSample,
    fallback_note,
    image_levels,
    t_summary,
    task_level,
)
from analysis.claims.power import EFFECTS, decide

F1 = Claim(
    "relative_asr_above_95",
    "Relative transfer ASR of merged models exceeds 95%",
    "Merging gives no robustness against transfer attacks: the relative transfer attack success rate "
    "(transfer ASR on the merged model ÷ white-box ASR on the surrogate) exceeds 95% "
    "(Gangwal & Sharma, arXiv 2509.23689).",
)


def relative_asr_above(
    long: pd.DataFrame, value: float = 0.95, alpha: float = 0.05, sample: ImageSample | None = None
) -> Finding:
    """Claim 1. ``long``: :func:`analysis.queries.transfer_long` of ``relative_asr`` for one surrogate;
    ``sample``: that surrogate's per-example rows of every merging method (no utility gate: the claim is
    about every merged model's own counted set).

    Verdict: the image design's level test (:func:`analysis.claims.image_design.image_levels`) of the mean
    per-target relative ASR over every (method, setting) against ``value``, two-sided; per method the same,
    Holm over the methods. Second view: one value per task (the mean over its settings and the methods), a
    t-test of the task values against ``value`` (signed Cohen's d, > 0: above), per method the same, Holm;
    it decides when ``sample`` cannot run.
    """
    metric, effect = "relative_asr", EFFECTS[F1.key]
    task_test = (
        f"two-sided one-sample t-test of relative ASR − {value:.0%} over tasks (each task's value = the mean "
        "over its settings and the merging methods, seeds averaged); signed Cohen's d; per method the same "
        "over the method's tasks, Holm over methods."
    )
    test = (
        f"Default view, this benchmark's tasks (decides the verdict): relative ASR − {value:.0%}, the mean of "
        "each merged model's relative ASR on its own counted set over every (method, setting), test images "
        "resampled within each task (tasks fixed, one draw per task shared by every method, attack, budget "
        "and seed; the report's resamples); Wald z with the bootstrap standard error; MDD at 80% power from "
        "it; per method the same, Holm over methods. Second view, new tasks: " + task_test
        + f" Stated effect: {pp(effect).lstrip('+')} above {value:.0%}."
    )
    if long.empty or metric not in long:
        return no_data(F1, test, "no transfer results; run `mergesec run --track transfer`")
    per_task = cluster_values(long, metric, TRANSFER_CLUSTER)
    r = cluster_test(per_task, value, alpha)
    if r["n_clusters"] < 2:
        return no_data(F1, test, f"{r['n_clusters']} task(s) with transfer results; a test needs 2 or more")
    rows = []
    for m, g in long.groupby("method"):
        rows.append({"method": m, **cluster_test(cluster_values(g, metric, TRANSFER_CLUSTER), value, alpha)})
    task_pm = holm_family(pd.DataFrame(rows), alpha)
    task_pm["verdict"] = [
        decide(p, e, d, effect, alpha)[0]
        for p, e, d in zip(task_pm.p_holm, task_pm.effect, task_pm.mdd, strict=True)
    ]
    task_pm = task_pm.sort_values("mean", ascending=False, ignore_index=True)
    task_sup = int((task_pm.verdict == "supported").sum())
    methods = sorted(set(long.method))
    overall, why = image_levels(sample, metric, value, {"all": methods}, alpha)
    per, _ = image_levels(sample, metric, value, {m: [m] for m in methods}, alpha) if overall is not None else (
        None, "")
    if overall is None or per is None:
        verdict, remark = decide(r["p"], r["effect"], r["mdd"], effect, alpha)
        result = (
            f"Mean relative ASR over {r['n_clusters']} tasks ({len(long)} method × setting values): "
            f"{pct(r['mean'])} {t_summary(r, pct, 'excess')} {task_sup} of {len(task_pm)} methods are "
            f"significantly above {value:.0%} on their own (Holm)."
        )
        numbers = {"threshold": value, "design": "task", "n_methods_supported": task_sup,
                   "n_methods": len(task_pm), **r, **task_level(r)}
        return finding(F1, test, verdict, result, remark, numbers, {"per_method": task_pm}, mdd=r["mdd"],
                       effect=effect, unit=TASK_UNIT, population=NEW_TASKS, notes=[fallback_note(why)])
    o = overall.iloc[0]
    verdict, remark = decide(o.p_unc, o["diff"], o.mdd_holm, effect, alpha)
    pm = pd.DataFrame({"method": per.A, "mean": per["mean"], "ci_low": per.ci_low + value,
                       "ci_high": per.ci_high + value, "effect": per["diff"], "se": per.se, "z": per.z,
                       "p": per.p_unc, "p_holm": per.p_corr, "mdd": per.mdd_holm, "n_common": per.n_common})
    pm["verdict"] = [decide(p, e, d, effect, alpha)[0] for p, e, d in zip(pm.p_holm, pm.effect, pm.mdd, strict=True)]
    pm = pm.sort_values("mean", ascending=False, ignore_index=True)
    n_sup = int((pm.verdict == "supported").sum())
    n = {"mean": float(o["mean"]), "effect": float(o["diff"]), "se": float(o.se), "ci_low": float(o.ci_low) + value,
         "ci_high": float(o.ci_high) + value, "z": float(o.z), "p": float(o.p_unc), "mdd": float(o.mdd_holm),
         "n_common": int(o.n_common)}
    result = (
        f"Mean relative ASR over {len(long)} method × setting values, each model on its own counted set "
        f"({n['n_common']} counted images summed over them): {pct(n['mean'])} (95% bootstrap CI "
        f"{pct(n['ci_low'])} to {pct(n['ci_high'])}), z = {n['z']:.2f}, {peq(n['p'])}; minimum detectable "
        f"excess at 80% power {pp(n['mdd']).lstrip('+')}." + (f" ({remark}.)" if remark else "")
        + f" {n_sup} of {len(pm)} methods are significantly above {value:.0%} on their own (Holm)."
        f" Second view, new tasks (t-test over {r['n_clusters']} task means, not the verdict): "
        f"{pct(r['mean'])} (95% CI {pct(r['ci_low'])} to {pct(r['ci_high'])}), t({r['n_clusters'] - 1}) = "
        f"{r['t']:.2f}, {peq(r['p'])}, d = {r['cohen_d']:+.2f}, minimum detectable excess "
        f"{pp(r['mdd']).lstrip('+')}; {task_sup} of {len(task_pm)} methods above {value:.0%} by that view."
    )
    numbers = {"threshold": value, "design": "image", "n_methods_supported": n_sup, "n_methods": len(pm), **n,
               **task_level(r)}
    return finding(F1, test, verdict, result, "", numbers, {"per_method": pm, "per_method_task_level": task_pm},
                   mdd=n["mdd"], effect=effect, unit=IMAGE_UNIT, population=THESE_TASKS)
