"""Claim 3: Representation Surgery increases vulnerability (Gangwal & Sharma, insight 2)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, paired_cluster_diff
from analysis.claims.core import Claim, Finding, finding, no_data, peq, pp
from analysis.claims.power import EFFECTS, decide

SURGERY, TASK_ARITHMETIC = "surgery_task_arithmetic", "task_arithmetic"

F3 = Claim(
    "surgery_more_vulnerable",
    "Representation Surgery increases vulnerability",
    "Mitigating representation bias increases vulnerability to transfer attacks: Task Arithmetic with "
    "Representation Surgery is more vulnerable than Task Arithmetic (Gangwal & Sharma, insight 2).",
)


def surgery_more_vulnerable(
    long: pd.DataFrame, metric: str, alpha: float = 0.05, treated: str = SURGERY, base: str = TASK_ARITHMETIC
) -> Finding:
    """Claim 3: task-clustered paired t-test of ``treated`` − ``base`` (each task's mean difference over the
    settings both have), two-sided; stated effect 5 pp."""
    effect = EFFECTS[F3.key]
    test = (
        f"Two-sided paired t-test of {metric} of {treated} − {base} over tasks (each task's value = the mean "
        f"difference over its settings both methods have, seeds averaged); stated effect "
        f"{pp(effect).lstrip('+')}."
    )
    present = set(long.method) if not long.empty else set()
    missing = [m for m in (treated, base) if m not in present]
    if missing:
        return no_data(F3, test, f"no transfer results for {', '.join(missing)}; run "
                       f"`mergesec run --track transfer --methods {treated},{base}`")
    diff = paired_cluster_diff(long, metric, treated, base)
    if len(diff) < 2:
        return no_data(F3, test, f"{len(diff)} task(s) where both methods have results; a test needs 2")
    r = cluster_test(diff, 0.0, alpha)
    verdict, remark = decide(r["p"], r["effect"], r["mdd"], effect, alpha)
    result = (
        f"Over {r['n_clusters']} tasks: {treated} − {base} = {pp(r['mean'])} (95% CI {pp(r['ci_low'])} to "
        f"{pp(r['ci_high'])}); higher in {int((diff > 0).sum())} of {len(diff)} tasks. t({r['n_clusters'] - 1}) "
        f"= {r['t']:.2f}, {peq(r['p'])}, d = {r['cohen_d']:+.2f}; minimum detectable difference at 80% power "
        f"{pp(r['mdd']).lstrip('+')}."
    )
    per_task = diff.rename("diff").reset_index()
    return finding(F3, test, verdict, result, remark, {"metric": metric, **r}, {"per_task": per_task},
                   mdd=r["mdd"], effect=effect, unit=f"{TRANSFER_CLUSTER} (settings averaged within a task)")
