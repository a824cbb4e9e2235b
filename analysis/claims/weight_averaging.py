"""Claim 4: weight averaging is the most vulnerable method (Gangwal & Sharma, insight 3), tested against
every other method."""

from __future__ import annotations

import pandas as pd

from analysis.claims.clustered import TRANSFER_CLUSTER, cluster_test, holm_family, paired_cluster_diff
from analysis.claims.core import Claim, Finding, combine, finding, no_data, pct, pp
from analysis.claims.power import EFFECTS, decide

WEIGHT_AVERAGING = "weight_averaging"

F4 = Claim(
    "weight_averaging_most_vulnerable",
    "Weight averaging is the most vulnerable method",
    "Weight averaging, despite being the weakest merging method, is the most vulnerable to transfer "
    "attacks (Gangwal & Sharma, insight 3).",
)


def weight_averaging_most_vulnerable(
    long: pd.DataFrame, metric: str, alpha: float = 0.05, method: str = WEIGHT_AVERAGING
) -> Finding:
    """Claim 4: one task-clustered paired t-test of ``method`` − other per other method (two-sided), Holm
    over those k − 1 tests. Supported when ``method`` is significantly more vulnerable than every other;
    not supported when another is significantly more vulnerable, or a test that could detect 5 pp did not
    reject; otherwise underpowered."""
    effect = EFFECTS[F4.key]
    test = (
        f"For every other method: two-sided paired t-test of {metric} of {method} − that method over tasks "
        f"(task means over the settings both have), Holm over the k − 1 tests; stated effect "
        f"{pp(effect).lstrip('+')}; MDD at Holm's first step."
    )
    if long.empty or method not in set(long.method):
        return no_data(F4, test, f"no transfer results for {method}")
    others = sorted(set(long.method) - {method})
    rows = [{"other": o, **cluster_test(paired_cluster_diff(long, metric, method, o), 0.0, alpha)} for o in others]
    vs = pd.DataFrame(rows)
    vs = vs[vs.n_clusters >= 2]
    if vs.empty:
        return no_data(F4, test, f"no other method shares 2 or more tasks with {method}")
    vs = holm_family(vs, alpha).rename(columns={"mean": "mean_diff"})
    vs["verdict"] = [decide(p, e, d, effect, alpha)[0]
                     for p, e, d in zip(vs.p_holm, vs.mean_diff, vs.mdd, strict=True)]
    verdict = combine(vs.verdict.tolist())
    means = long.groupby(["method", TRANSFER_CLUSTER])[metric].mean().groupby("method").mean()
    means = means.sort_values(ascending=False)
    rank = int(list(means.index).index(method)) + 1
    more_than = vs[(vs.p_holm < alpha) & (vs.mean_diff > 0)].other.tolist()
    less_than = vs[(vs.p_holm < alpha) & (vs.mean_diff < 0)].other.tolist()
    remark = {
        "not supported": f"{', '.join(less_than)} significantly more vulnerable" if less_than
        else "a test that could detect the stated effect did not reject",
        "underpowered": "some comparisons could not have detected the stated effect",
    }.get(verdict, "")
    result = (
        f"{method} ranks {rank} of {len(means)} by mean {metric} over tasks ({pct(means[method])}; most "
        f"vulnerable: {means.index[0]} {pct(means.iat[0])}). It is significantly more vulnerable than "
        f"{len(more_than)} of {len(vs)} methods and significantly less vulnerable than {len(less_than)} "
        f"(task-clustered, Holm); the largest minimum detectable difference is {pp(vs.mdd.max()).lstrip('+')}."
    )
    numbers = {
        "metric": metric, "rank": rank, "k": len(means), "mean": means[method],
        "n_tasks": int(vs.n_clusters.max()), "n_significantly_more_vulnerable_than": len(more_than),
        "n_significantly_less_vulnerable_than": len(less_than), "mdd": float(vs.mdd.max()),
    }
    return finding(F4, test, verdict, result, remark, numbers, {"vs_weight_averaging": vs},
                   mdd=float(vs.mdd.max()), effect=effect, unit=f"{TRANSFER_CLUSTER} (settings averaged within a task)")
