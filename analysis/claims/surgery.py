"""Claim 3: Representation Surgery increases vulnerability (Gangwal & Sharma, insight 2)."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import cluster_test, paired_cluster_diff
from analysis.claims.core import NEW_TASKS, THESE_TASKS, Claim, Finding, finding, no_data, pp
from analysis.claims.image_design import (
    IMAGE_UNIT,
    TASK_UNIT,
    ImageSample,
    fallback_note,
    image_pairs,
    image_test,
    one_pair,
    t_summary,
    task_level,
    task_level_text,
)
from analysis.claims.power import EFFECTS, decide

SURGERY, TASK_ARITHMETIC = "surgery_task_arithmetic", "task_arithmetic"

F3 = Claim(
    "surgery_more_vulnerable",
    "Representation Surgery increases vulnerability",
    "Mitigating representation bias increases vulnerability to transfer attacks: Task Arithmetic with "
    "Representation Surgery is more vulnerable than Task Arithmetic (Gangwal & Sharma, insight 2).",
)


def surgery_more_vulnerable(
    long: pd.DataFrame, metric: str, alpha: float = 0.05, treated: str = SURGERY, base: str = TASK_ARITHMETIC,
    sample: ImageSample | None = None,
) -> Finding:
    """Claim 3: ``treated`` − ``base``, two-sided; stated effect 5 pp.

    Verdict: the image design on the two methods' own common set (``sample``, :mod:`analysis.claims.image_design`).
    Second view: the task-clustered paired t-test over tasks of ``long`` (each task's mean difference over
    the settings both have); it decides only when ``sample`` cannot test the pair, and the result says so."""
    effect = EFFECTS[F3.key]
    task_test = (f"two-sided paired t-test of {treated} − {base} over tasks (each task's value = the mean "
                 "difference over its settings both methods have, seeds averaged).")
    test = image_test(f"{metric} of {treated} − {base}", sample, "", task_test) + (
        f" Stated effect {pp(effect).lstrip('+')}.")
    present = set(long.method) if not long.empty else set()
    missing = [m for m in (treated, base) if m not in present]
    if missing:
        return no_data(F3, test, f"no transfer results for {', '.join(missing)}; run "
                       f"`mergesec run --track transfer --methods {treated},{base}`")
    diff = paired_cluster_diff(long, metric, treated, base)
    r = cluster_test(diff, 0.0, alpha) if len(diff) else None
    img, why = image_pairs(sample, metric, [treated, base], [(treated, base)], alpha)
    per_task = diff.rename("diff").reset_index()
    second = task_level(r) if r else {}
    if img is not None:
        verdict, result, n = one_pair(img, "On the common examples of both methods", f"{treated} − {base}",
                                      effect, alpha)
        if r and r["n_clusters"] >= 2:
            result += " " + task_level_text(r, f"{treated} − {base}")
        return finding(F3, test, verdict, result, "", {"metric": metric, **n, **second}, {"per_task": per_task},
                       mdd=n["mdd"], effect=effect, unit=IMAGE_UNIT, population=THESE_TASKS)
    if r is None or r["n_clusters"] < 2:
        return no_data(F3, test, f"{why}, and {len(diff)} task(s) where both methods have results (a "
                       "task-level test needs 2)")
    verdict, remark = decide(r["p"], r["effect"], r["mdd"], effect, alpha)
    result = (f"Over {r['n_clusters']} tasks: {treated} − {base} = {pp(r['mean'])} {t_summary(r)} Higher in "
              f"{int((diff > 0).sum())} of {len(diff)} tasks.")
    return finding(F3, test, verdict, result, remark, {"metric": metric, "design": "task", **r, **second},
                   {"per_task": per_task}, mdd=r["mdd"], effect=effect, unit=TASK_UNIT, population=NEW_TASKS,
                   notes=[fallback_note(why)])
