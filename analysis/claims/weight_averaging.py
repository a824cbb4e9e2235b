"""Claim 4: weight averaging is the most vulnerable method (Gangwal & Sharma, insight 3), tested against
every other method."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, holm_family, paired_cluster_diff
from analysis.claims.core import NEW_TASKS, THESE_TASKS, Claim, Finding, combine, finding, no_data, pct, pp
from analysis.claims.image_design import (
    IMAGE_UNIT,
    TASK_UNIT,
    ImagePairs,
    ImageSample,
    fallback_note,
    gate_notes,
    image_pairs,
    image_test,
)
from analysis.claims.power import EFFECTS, decide

WEIGHT_AVERAGING = "weight_averaging"

F4 = Claim(
    "weight_averaging_most_vulnerable",
    "Weight averaging is the most vulnerable method",
    "Weight averaging, despite being the weakest merging method, is the most vulnerable to transfer "
    "attacks (Gangwal & Sharma, insight 3).",
)


def _task_level(long: pd.DataFrame, metric: str, method: str, alpha: float) -> pd.DataFrame:
    """The second view: per other method the task-clustered paired t-test of ``method`` − other, Holm over
    them, with each one's verdict; empty when no other method shares 2 tasks with ``method``."""
    others = sorted(set(long.method) - {method})
    rows = [{"other": o, **cluster_test(paired_cluster_diff(long, metric, method, o), 0.0, alpha)} for o in others]
    vs = pd.DataFrame(rows)
    vs = vs[vs.n_clusters >= 2] if rows else vs
    return holm_family(vs, alpha).rename(columns={"mean": "mean_diff"}) if not vs.empty else vs


def _image_table(img: ImagePairs) -> pd.DataFrame:
    """The image design's comparisons as the claim's table: one row per other method."""
    p = img.pairs
    return pd.DataFrame({"other": p.B, "other_mean": p.B.map(img.means).to_numpy(), "mean_diff": p["diff"],
                         "se": p.se, "ci_low": p.ci_low, "ci_high": p.ci_high, "z": p.z, "p": p.p_unc,
                         "p_holm": p.p_corr, "mdd": p.mdd_holm})


def _decide_all(vs: pd.DataFrame, effect: float, alpha: float) -> tuple[str, list[str], list[str], str]:
    """(verdict, the methods significantly less vulnerable, those more, remark) of a family of comparisons
    (columns ``other, p_holm, mean_diff, mdd``); adds each row's ``verdict``."""
    vs["verdict"] = [decide(p, e, d, effect, alpha)[0]
                     for p, e, d in zip(vs.p_holm, vs.mean_diff, vs.mdd, strict=True)]
    verdict = combine(vs.verdict.tolist())
    more_than = vs[(vs.p_holm < alpha) & (vs.mean_diff > 0)].other.tolist()
    less_than = vs[(vs.p_holm < alpha) & (vs.mean_diff < 0)].other.tolist()
    remark = {
        "not supported": f"{', '.join(less_than)} significantly more vulnerable" if less_than
        else "a test that could detect the stated effect did not reject",
        "underpowered": "some comparisons could not have detected the stated effect",
    }.get(verdict, "")
    return verdict, more_than, less_than, remark


def weight_averaging_most_vulnerable(
    long: pd.DataFrame, metric: str, alpha: float = 0.05, method: str = WEIGHT_AVERAGING,
    sample: ImageSample | None = None,
) -> Finding:
    """Claim 4: ``method`` − each other method (two-sided), Holm over those k − 1 tests. Supported when
    ``method`` is significantly more vulnerable than every other; not supported when another is
    significantly more vulnerable, or a test that could detect 5 pp did not reject; otherwise underpowered.

    Verdict: the image design (:mod:`analysis.claims.image_design`) with every method of ``sample`` on one
    common set, the ranking's, so each comparison is the ranking's pair (the claim is about that ranking's
    order); MDD at Holm's first step. Second view: the task-clustered t-tests over ``long``'s task means;
    they decide only when ``sample`` cannot run, and the result says so."""
    effect = EFFECTS[F4.key]
    task_test = (f"for every other method, a two-sided paired t-test of {method} − that method over tasks (task "
                 "means over the settings both have), Holm over the k − 1 tests, MDD at Holm's first step.")
    test = image_test(
        f"{metric} of {method} − each other method, all on one common set (the ranking's: every method the "
        "utility gate keeps)", sample, "the k − 1 comparisons", task_test,
    ) + f" Stated effect {pp(effect).lstrip('+')}."
    if long.empty or method not in set(long.method):
        return no_data(F4, test, f"no transfer results for {method}")
    task_vs = _task_level(long, metric, method, alpha)
    others = sorted(set(sample.rows.method) - {method}) if sample is not None and not sample.rows.empty else []
    img, why = image_pairs(sample, metric, [method, *others], [(method, o) for o in others], alpha)
    second, second_text = {}, ""
    if not task_vs.empty:
        t_verdict, t_more, t_less, _ = _decide_all(task_vs, effect, alpha)
        second = {"task_level_verdict": t_verdict, "task_level_n_significantly_more_vulnerable_than": len(t_more),
                  "task_level_n_significantly_less_vulnerable_than": len(t_less),
                  "task_level_mdd": float(task_vs.mdd.max()), "n_tasks": int(task_vs.n_clusters.max())}
        second_text = (
            f" Second view, new tasks (t-tests over {second['n_tasks']} task means, Holm; not the verdict): "
            f"significantly more vulnerable than {len(t_more)} of {len(task_vs)} and less than {len(t_less)}, "
            f"largest minimum detectable difference {pp(second['task_level_mdd']).lstrip('+')} "
            f"({t_verdict} by that view)."
        )
    if img is not None:
        vs, means, design, unit, population = _image_table(img), img.means, "image", IMAGE_UNIT, THESE_TASKS
        where = f"on the common examples of the {len(means)} compared methods ({img.describe()})"
        how = "image bootstrap"
        tables = {"vs_weight_averaging": vs, "vs_weight_averaging_task_level": task_vs}
        notes = gate_notes(sample)
    elif task_vs.empty:
        return no_data(F4, test, f"{why}, and no other method shares 2 or more tasks with {method}")
    else:
        vs, design, unit, how, population = task_vs, "task", TASK_UNIT, "task-clustered", NEW_TASKS
        means = long.groupby(["method", TRANSFER_CLUSTER])[metric].mean().groupby("method").mean()
        means = means.sort_values(ascending=False)
        where, tables, notes = "over tasks", {"vs_weight_averaging": vs}, [fallback_note(why)]
        second, second_text = {}, ""
    verdict, more_than, less_than, remark = _decide_all(vs, effect, alpha)
    rank = int(list(means.index).index(method)) + 1
    result = (
        f"{method} ranks {rank} of {len(means)} from the most vulnerable by mean {metric} {where} "
        f"({pct(means[method])}; most vulnerable: {means.index[0]} {pct(means.iat[0])}). It is "
        f"significantly more vulnerable than {len(more_than)} of {len(vs)} methods and significantly less "
        f"vulnerable than {len(less_than)} ({how}, Holm); the largest minimum detectable difference is "
        f"{pp(vs.mdd.max()).lstrip('+')}."
        + (f" ({remark}.)" if remark else "") + second_text
    )
    numbers = {
        "metric": metric, "design": design, "rank": rank, "k": len(means), "mean": means[method],
        "n_significantly_more_vulnerable_than": len(more_than),
        "n_significantly_less_vulnerable_than": len(less_than), "mdd": float(vs.mdd.max()),
        **({"n_common": img.common.n_common} if img is not None else {"n_tasks": int(vs.n_clusters.max())}),
        **second,
    }
    return finding(F4, test, verdict, result, "", numbers, tables, mdd=float(vs.mdd.max()), effect=effect,
                   unit=unit, population=population, notes=notes)
