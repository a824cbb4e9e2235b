"""Claim 1: relative transfer ASR of merged models exceeds 95% (Gangwal & Sharma, arXiv 2509.23689)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, cluster_values, holm_family
from analysis.claims.core import NEW_TASKS, Claim, Finding, finding, no_data, pct, peq, pp
from analysis.claims.power import EFFECTS, decide

F1 = Claim(
    "relative_asr_above_95",
    "Relative transfer ASR of merged models exceeds 95%",
    "Merging gives no robustness against transfer attacks: the relative transfer attack success rate "
    "(transfer ASR on the merged model ÷ white-box ASR on the surrogate) exceeds 95% "
    "(Gangwal & Sharma, arXiv 2509.23689).",
)


def relative_asr_above(long: pd.DataFrame, value: float = 0.95, alpha: float = 0.05) -> Finding:
    """Claim 1. ``long``: :func:`analysis.queries.transfer_long` of ``relative_asr`` for one surrogate.

    Overall: one value per task (the mean over its settings and the merging methods), a two-sided t-test
    of the task values against ``value``. Per method: the same over the method's task values, Holm over the
    methods. Cohen's d keeps its sign (> 0: above ``value``).
    """
    metric, effect = "relative_asr", EFFECTS[F1.key]
    unit = f"{TRANSFER_CLUSTER} (settings and methods averaged within a task)"
    test = (
        f"Two-sided one-sample t-test of relative ASR − {value:.0%} over tasks (each task's value = the mean "
        "over its settings and the merging methods, seeds averaged); signed Cohen's d; per method the same "
        "over the method's tasks, Holm over methods. Stated effect: "
        f"{pp(effect).lstrip('+')} above {value:.0%}."
    )
    if long.empty or metric not in long:
        return no_data(F1, test, "no transfer results; run `mergesec run --track transfer`")
    per_task = cluster_values(long, metric, TRANSFER_CLUSTER)
    r = cluster_test(per_task, value, alpha)
    if r["n_clusters"] < 2:
        return no_data(F1, test, f"{r['n_clusters']} task(s) with transfer results; a test needs 2 or more")
    verdict, remark = decide(r["p"], r["effect"], r["mdd"], effect, alpha)

    rows = []
    for m, g in long.groupby("method"):
        rows.append({"method": m, **cluster_test(cluster_values(g, metric, TRANSFER_CLUSTER), value, alpha)})
    per_method = holm_family(pd.DataFrame(rows), alpha)
    per_method["verdict"] = [
        decide(p, e, d, effect, alpha)[0]
        for p, e, d in zip(per_method.p_holm, per_method.effect, per_method.mdd, strict=True)
    ]
    per_method = per_method.sort_values("mean", ascending=False, ignore_index=True)
    n_sup = int((per_method.verdict == "supported").sum())
    result = (
        f"Mean relative ASR over {r['n_clusters']} tasks ({len(long)} method × setting values): "
        f"{pct(r['mean'])} (95% CI {pct(r['ci_low'])} to {pct(r['ci_high'])}); t({r['n_clusters'] - 1}) = "
        f"{r['t']:.2f}, {peq(r['p'])}, d = {r['cohen_d']:+.2f}; minimum detectable excess at 80% power "
        f"{pp(r['mdd']).lstrip('+')}. {n_sup} of {len(per_method)} methods are significantly above "
        f"{value:.0%} on their own (Holm)."
    )
    numbers = {"threshold": value, "n_methods_supported": n_sup, "n_methods": len(per_method), **r}
    return finding(F1, test, verdict, result, remark, numbers, {"per_method": per_method},
                   mdd=r["mdd"], effect=effect, unit=unit, population=NEW_TASKS)
