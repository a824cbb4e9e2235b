"""Claim 2: stronger merging methods are more vulnerable (Gangwal & Sharma, insight 1; the poster seeds/000
reported the opposite)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from analysis.claims.clustered import TRANSFER_CLUSTER, TRANSFER_SETTING, cluster_test, holm_family
from analysis.claims.core import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    OTHER_METHODS,
    SUPPORTED,
    UNDERPOWERED,
    Claim,
    Finding,
    finding,
    fmt_ci,
    no_data,
    peq,
    pp,
)
from analysis.claims.power import EFFECTS, min_detectable_correlation

F2 = Claim(
    "stronger_more_vulnerable",
    "Stronger merging methods are more vulnerable",
    "Merging methods with higher clean merged accuracy are more vulnerable to transfer attacks "
    "(Gangwal & Sharma, insight 1). The earlier poster (seeds/000) reported the opposite: the ASR decreased "
    "or stayed in 15 of 24 cases when a stronger merging method was used.",
)


def _correlation_verdict(corr: pd.DataFrame, alpha: float, min_r: float, stated: float) -> tuple[str, str]:
    sig = [(c.p_val < alpha, c.r > 0) for c in corr.itertuples()]
    if all(s and pos for s, pos in sig):
        return SUPPORTED, ""
    if all(s and not pos for s, pos in sig):
        return NOT_SUPPORTED, "both correlations are significantly negative (the opposite trend)"
    if any(s for s, _ in sig):
        return INCONCLUSIVE, "Spearman and Kendall disagree"
    if not np.isfinite(min_r) or min_r > stated:
        return UNDERPOWERED, (
            f"neither correlation is significant, but with {corr.n.iat[0]} methods only |r| ≥ {min_r:.2f} is "
            f"detectable at 80% power (stated effect {stated:.2f})"
        )
    return NOT_SUPPORTED, f"neither correlation is significant at α = {alpha} (detectable: |r| ≥ {min_r:.2f})"


def _pairs(wide: pd.DataFrame, acc: pd.Series, methods: list[str], alpha: float) -> pd.DataFrame:
    """Every pair of methods with different accuracy, stronger first: the task-clustered test of
    stronger − weaker, Holm over the pairs."""
    rows = []
    for a, b in itertools.combinations(methods, 2):
        if acc[a] == acc[b]:
            continue
        s, w = (a, b) if acc[a] > acc[b] else (b, a)
        diff = (wide[s] - wide[w]).groupby(level=TRANSFER_CLUSTER).mean()
        rows.append({"stronger": s, "weaker": w, "acc_gap": acc[s] - acc[w], **cluster_test(diff, 0, alpha)})
    if not rows:
        return pd.DataFrame()
    pairs = holm_family(pd.DataFrame(rows), alpha).rename(columns={"mean": "mean_diff"})
    pairs["direction"] = np.where(
        ~(pairs.p_holm < alpha),
        "no significant difference",
        np.where(pairs.mean_diff > 0, "stronger more vulnerable", "stronger less vulnerable"),
    )
    return pairs.sort_values(["stronger", "weaker"], ignore_index=True)


def _cases(pairs: pd.DataFrame, by_task: pd.DataFrame, tol: float) -> pd.DataFrame:
    """One case per (stronger/weaker pair, task): increased / stayed (|Δ| ≤ tol) / decreased."""
    cases = [
        {"stronger": pr.stronger, "weaker": pr.weaker, "task": task, "diff": (d := row[pr.stronger] - row[pr.weaker]),
         "outcome": "increased" if d > tol else ("stayed" if d >= -tol else "decreased")}
        for pr in pairs.itertuples()
        for task, row in by_task.iterrows()
    ]
    return pd.DataFrame(cases, columns=["stronger", "weaker", "task", "diff", "outcome"])


def stronger_more_vulnerable(
    long: pd.DataFrame, accuracy: pd.DataFrame, metric: str, alpha: float = 0.05, tol: float = 0.01
) -> Finding:
    """Claim 2. ``long``: transfer settings of ``metric`` (one surrogate); ``accuracy``: ``method,
    clean_acc``. Methods are the units of the correlation: Spearman ρ and Kendall τ-b of clean accuracy vs
    the mean over tasks of each method's task means (complete settings). The stated effect is |r| = 0.5."""
    from analysis.stats import StatisticsError, correlation, paired_table

    stated = EFFECTS[F2.key]
    unit = "merging method (each method's mean over tasks)"
    test = (
        f"Spearman ρ and Kendall τ-b (two-sided) across methods between clean merged accuracy and the mean "
        f"{metric} over tasks (complete settings); stated effect |r| = {stated}, detectable |r| at 80% power "
        "by Fisher's z. Pairs: task-clustered paired t-test of stronger vs weaker, Holm over pairs; case count "
        "per (method pair, task) with a sign test."
    )
    if long.empty or accuracy.empty:
        what = ("no transfer results; run `mergesec run --track transfer`" if long.empty
                else "no clean accuracy; run `mergesec run --track merge`")
        return no_data(F2, test, what)
    try:
        wide = paired_table(long, metric, TRANSFER_SETTING)
    except StatisticsError as e:
        return no_data(F2, test, str(e))
    acc = accuracy.set_index("method")["clean_acc"]
    methods = [m for m in wide.columns if m in acc.index and pd.notna(acc[m])]
    if len(methods) < 2:
        return no_data(F2, test, "fewer than 2 methods have both clean accuracy and transfer results")
    wide = wide[methods]
    by_task = wide.groupby(level=TRANSFER_CLUSTER).mean()
    per_method = pd.DataFrame(
        {"method": methods, "clean_acc": acc[methods].to_numpy(), f"mean_{metric}": by_task.mean().to_numpy()}
    ).sort_values("clean_acc", ascending=False, ignore_index=True)
    n = len(methods)
    corr = (correlation(per_method.clean_acc, per_method[f"mean_{metric}"]) if n >= 3
            else pd.DataFrame(columns=["test", "n", "r", "CI95", "p_val"]))
    pairs = _pairs(wide, acc, methods, alpha)
    cases = _cases(pairs, by_task, tol)
    n_inc, n_dec = int((cases.outcome == "increased").sum()), int((cases.outcome == "decreased").sum())
    n_stay = len(cases) - n_inc - n_dec
    sign_p = binomtest(n_inc, n_inc + n_dec, 0.5).pvalue if n_inc + n_dec else float("nan")
    min_r = min_detectable_correlation(n, alpha)
    if corr.empty:
        verdict, remark = UNDERPOWERED, f"with {n} methods no correlation can be tested"
    else:
        verdict, remark = _correlation_verdict(corr, alpha, min_r, stated)
    more = int((pairs.get("direction") == "stronger more vulnerable").sum()) if not pairs.empty else 0
    less = int((pairs.get("direction") == "stronger less vulnerable").sum()) if not pairs.empty else 0
    numbers: dict = {
        "n_methods": n, "n_tasks": len(by_task), "n_settings": len(wide), "n_pairs": len(pairs),
        "n_cases": len(cases), "n_decreased_or_stayed": n_dec + n_stay, "n_increased": n_inc,
        "n_stayed": n_stay, "sign_test_p": sign_p, "tol": tol, "min_detectable_r": min_r,
        "accuracy_source": accuracy.get("source", pd.Series(["?"])).iat[0],
        "pairs_stronger_more_vulnerable": more, "pairs_stronger_less_vulnerable": less,
    }
    for c in corr.itertuples():
        numbers[f"{c.test}_r"], numbers[f"{c.test}_p"] = float(c.r), float(c.p_val)
    corr_txt = "; ".join(
        f"{c.test.capitalize()} r = {c.r:.2f} (95% CI {fmt_ci(c.CI95)}), {peq(c.p_val)}" for c in corr.itertuples()
    )
    result = (
        f"Across {n} methods (accuracy from {numbers['accuracy_source']}; {metric} over {len(by_task)} tasks, "
        f"{len(wide)} complete settings): {corr_txt or 'too few methods for a correlation'}; detectable "
        f"|r| at 80% power: {min_r:.2f}. Pairwise (task-clustered, Holm): {more} of {len(pairs)} stronger/weaker "
        f"pairs significantly more vulnerable, {less} significantly less. {metric} decreased or stayed "
        f"(|Δ| ≤ {pp(tol).lstrip('+')}) in {n_dec + n_stay} of {len(cases)} (stronger/weaker method pair × task) "
        f"cases ({n_dec} decreased, {n_stay} stayed, {n_inc} increased; sign test over the {n_inc + n_dec} "
        f"that moved: {peq(sign_p)}; the poster's count was 15 of 24)."
    )
    notes = ["Cases share methods and tasks, so they are not independent; the sign test over them is "
             "descriptive. The correlation across methods is the test of the claim."]
    corr_table = corr.drop(columns="CI95").assign(
        ci95_low=[float(c[0]) for c in corr.CI95], ci95_high=[float(c[1]) for c in corr.CI95]
    )
    tables = {"per_method": per_method, "correlation": corr_table, "pairs": pairs, "cases": cases}
    return finding(F2, test, verdict, result, remark, numbers, tables, mdd=min_r, effect=stated, unit=unit,
                   population=OTHER_METHODS,
                   notes=notes)
