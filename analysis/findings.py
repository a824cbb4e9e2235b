"""The findings: each published claim about merging security, tested on the stored results.

Every function here is pure (DataFrames in, a :class:`Finding` out), never raises on missing or thin data,
and states the claim, the test, the numbers (statistic, p-value, effect size) and a verdict:

- ``supported``: the test rejects its null hypothesis at ``alpha`` in the claimed direction;
- ``not supported``: the test could have rejected at ``alpha`` with this many observations, but did not
  (or rejected in the opposite direction, which the text says);
- ``inconclusive (...)``: the reason in brackets, usually ``n too small`` — with n observations the
  smallest p-value the test can produce is not below ``alpha``, so no data could have supported the claim;
- ``no data``: what the claim needs is not in the database (the text says what to run).

Case definitions and how to read the report: docs/analysis.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive (n too small)"
NO_DATA = "no data"

SURGERY, TASK_ARITHMETIC, WEIGHT_AVERAGING = "surgery_task_arithmetic", "task_arithmetic", "weight_averaging"
FINETUNED, PRETRAINED = "finetuned", "pretrained"
BADMERGING, NAIVE = "badmerging", "naive"
TRANSFER_SETTING = ["task", "attack", "surrogate", "eps"]
"""A transfer setting (seeds averaged, as in analysis.ranking_view); one surrogate: a constant column."""

STATS_NOTE = (
    "(Wilcoxon signed-rank; RBC = matched-pairs rank-biserial correlation, > 0 when the first "
    "sample tends to be larger)"
)


class Claim(NamedTuple):
    """A published claim: the key of its finding, a short title and the claim's text."""

    key: str
    title: str
    text: str


@dataclass
class Finding:
    """One tested claim: what it says, how it was tested, the numbers and the verdict."""

    key: str
    title: str
    claim: str
    test: str
    verdict: str
    result: str = ""
    numbers: dict[str, float | int | str | None] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-able summary (tables as lists of records)."""
        return {
            "key": self.key,
            "title": self.title,
            "claim": self.claim,
            "test": self.test,
            "verdict": self.verdict,
            "result": self.result,
            "numbers": _jsonable(self.numbers),
            "notes": self.notes,
            "figures": self.figures,
            "tables": {k: _jsonable(v.to_dict(orient="records")) for k, v in self.tables.items()},
        }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- formatting and small statistics helpers ---------------------------------------------------------------


def fmt_p(p: float | None) -> str:
    if p is None or pd.isna(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def peq(p: float | None, name: str = "p") -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    text = fmt_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def fmt_ci(ci) -> str:
    """pingouin's CI95 array as ``[lo, hi]``."""
    lo, hi = (float(v) for v in ci)
    return f"[{lo:.2f}, {hi:.2f}]"


def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or pd.isna(v) else f"{100 * v:.{digits}f}%"


def pp(v: float | None, digits: int = 1) -> str:
    """A difference of rates in percentage points, signed."""
    return "–" if v is None or pd.isna(v) else f"{100 * v:+.{digits}f} pp"


def min_p_wilcoxon(n_nonzero: int, two_sided: bool = True) -> float:
    """Smallest p-value an exact Wilcoxon signed-rank test gives with ``n_nonzero`` non-zero differences."""
    return min(1.0, (2.0 if two_sided else 1.0) / 2.0**n_nonzero)


def min_p_rank_correlation(n: int) -> float:
    """Smallest two-sided p-value of an exact permutation test of a rank correlation over ``n`` pairs."""
    return min(1.0, 2.0 / math.factorial(n)) if n >= 1 else 1.0


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (NaN kept as NaN)."""
    import pingouin as pg

    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = pg.multicomp(p[ok], method="holm")[1]
    return out


def _paired(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> dict:
    """Two-sided Wilcoxon of a vs b plus the mean difference a − b with a bootstrap 95% CI and win counts."""
    from analysis.stats import bootstrap_ci, paired_test

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    t = paired_test(a, b).iloc[0]
    ci = bootstrap_ci(pd.Series(d, name="diff"), n_boot=n_boot, seed=seed).iloc[0]
    nonzero = int((d != 0).sum())
    return {
        "n": len(d),
        "mean_a": a.mean(),
        "mean_b": b.mean(),
        "mean_diff": ci["mean"],
        "diff_ci_low": ci["ci_low"],
        "diff_ci_high": ci["ci_high"],
        "median_diff": float(np.median(d)),
        "a_higher": int((d > 0).sum()),
        "ties": int((d == 0).sum()),
        "a_lower": int((d < 0).sum()),
        "W_val": float(t.W_val),
        "p_val": float(t.p_val),
        "RBC": float(t.RBC),
        "CLES": float(t.CLES),
        "min_p": min_p_wilcoxon(nonzero),
    }


def _directional_verdict(p: float, effect: float, min_p: float, alpha: float) -> tuple[str, str]:
    """(verdict, remark) for a two-sided test of a claim that predicts ``effect > 0``."""
    if min_p >= alpha:
        return INCONCLUSIVE, f"the smallest p-value attainable with this n is {fmt_p(min_p)} ≥ α = {alpha}"
    if p < alpha and effect > 0:
        return SUPPORTED, ""
    if p < alpha and effect < 0:
        return NOT_SUPPORTED, "the test rejects in the opposite direction"
    return NOT_SUPPORTED, f"no significant difference at α = {alpha}"


def _no_data(claim: Claim, test: str, what: str) -> Finding:
    """The "no data" finding of ``claim``; ``what`` says what is missing and what to run."""
    return Finding(*claim, test, NO_DATA, result=f"No data: {what}", notes=[what])


def _finding(
    claim: Claim, test: str, verdict: str, result: str, remark: str, numbers: dict,
    tables: dict[str, pd.DataFrame], notes: Sequence[str] = (),
) -> Finding:
    """The finding of ``claim``; a non-empty ``remark`` is appended to ``result`` as `` (remark.)``."""
    if remark:
        result += f" ({remark}.)"
    return Finding(*claim, test, verdict, result, numbers, tables, list(notes))


# -- 1. relative transfer ASR above 95% --------------------------------------------------------------------

F1 = Claim(
    "relative_asr_above_95",
    "Relative transfer ASR of merged models exceeds 95%",
    "Merging gives no robustness against transfer attacks: the relative transfer attack success rate "
    "(transfer ASR on the merged model ÷ white-box ASR on the surrogate) exceeds 95% "
    "(Gangwal & Sharma, arXiv 2509.23689).",
)


def relative_asr_above(
    long: pd.DataFrame, value: float = 0.95, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> Finding:
    """Claim 1. ``long``: :func:`analysis.queries.transfer_long` with metric ``relative_asr``.

    Overall: one value per setting (task × attack × surrogate × eps), the mean over the merging methods
    present in it, tested against ``value`` (one-sided, greater). Per method: one-sample tests over the
    method's settings, Holm-corrected over the methods.
    """
    from analysis.stats import bootstrap_ci, one_sample_vs

    test = (
        f"One-sample Wilcoxon signed-rank test of relative ASR − {value} (H1: greater; effect size RBC) "
        "and one-sample t-test (Cohen's d), over settings (task × attack, seeds averaged; the value of a "
        "setting is the mean over the merging methods). Per method: the same tests over the method's "
        "settings, Holm-corrected over methods."
    )
    metric = "relative_asr"
    if long.empty or metric not in long:
        return _no_data(F1, test, "no transfer results; run `mergesec run --track transfer`")
    per_setting = long.groupby(TRANSFER_SETTING, as_index=False)[metric].mean().assign(scope="all methods")
    if len(per_setting) < 2:
        return _no_data(F1, test, f"{len(per_setting)} transfer setting(s); a test needs 2 or more")
    overall = one_sample_vs(per_setting, metric, value, by="scope", alternative="greater").iloc[0]
    ci = bootstrap_ci(per_setting[metric], n_boot=n_boot, seed=seed).iloc[0]
    nonzero = int((per_setting[metric] != value).sum())
    min_p = min_p_wilcoxon(nonzero, two_sided=False)

    counts = long.groupby("method")[metric].count()
    testable = long[long.method.isin(counts[counts >= 2].index)]
    per_method = pd.DataFrame()
    if not testable.empty:
        per_method = one_sample_vs(testable, metric, value, by="method", alternative="greater")
        per_method["p_holm"] = holm(per_method.p_wilcoxon)
        n_methods = len(per_method)
        per_method["verdict"] = [
            INCONCLUSIVE
            if min_p_wilcoxon(
                int((testable.loc[testable.method == m, metric] != value).sum()), two_sided=False
            )
            * n_methods
            >= alpha
            else SUPPORTED
            if (p < alpha and mu > value)
            else NOT_SUPPORTED
            for m, p, mu in zip(per_method.method, per_method.p_holm, per_method["mean"], strict=True)
        ]
        per_method = per_method.sort_values("mean", ascending=False, ignore_index=True)

    if min_p >= alpha:
        verdict, remark = INCONCLUSIVE, f"with {nonzero} settings the smallest attainable p is {fmt_p(min_p)}"
    elif overall.p_wilcoxon < alpha and overall["mean"] > value:
        verdict, remark = SUPPORTED, ""
    else:
        verdict = NOT_SUPPORTED
        remark = (
            "the mean is not above the threshold"
            if overall["mean"] <= value
            else f"the excess over {value:.0%} is not significant at α = {alpha}"
        )
    n_sup = int((per_method.get("verdict", pd.Series(dtype=str)) == SUPPORTED).sum())
    result = (
        f"Mean relative ASR over {int(overall.n)} settings: {pct(overall['mean'])} (95% CI "
        f"{pct(ci.ci_low)} to {pct(ci.ci_high)}; median {pct(overall['median'])}). Wilcoxon W = "
        f"{overall.W_val:.1f}, {peq(overall.p_wilcoxon)}, RBC = {overall.RBC:.2f}; t({overall.dof:.0f}) = "
        f"{overall['T']:.2f}, {peq(overall.p_ttest)}, d = {overall.cohen_d:.2f}. "
        f"{n_sup} of {len(per_method)} methods are significantly above {value:.0%} on their own (Holm)."
    )
    notes = []
    if (overall.p_wilcoxon < alpha) != (overall.p_ttest < alpha):
        notes.append(
            "The Wilcoxon and t-tests disagree; the verdict follows the Wilcoxon test (no normality "
            "assumption)."
        )
    numbers = {
        "n_settings": int(overall.n),
        "mean": overall["mean"],
        "ci_low": ci.ci_low,
        "ci_high": ci.ci_high,
        "W_val": overall.W_val,
        "p_wilcoxon": overall.p_wilcoxon,
        "RBC": overall.RBC,
        "T": overall["T"],
        "p_ttest": overall.p_ttest,
        "cohen_d": overall.cohen_d,
        "n_methods_supported": n_sup,
        "n_methods": len(per_method),
        "threshold": value,
    }
    return _finding(F1, test, verdict, result, remark, numbers, {"per_method": per_method}, notes)


# -- 2. stronger methods are more vulnerable --------------------------------------------------------------

F2 = Claim(
    "stronger_more_vulnerable",
    "Stronger merging methods are more vulnerable",
    "Merging methods with higher clean merged accuracy are more vulnerable to transfer attacks "
    "(Gangwal & Sharma, insight 1). The earlier poster (seeds/000) reported the opposite: the ASR decreased "
    "or stayed in 15 of 24 cases when a stronger merging method was used.",
)


def stronger_more_vulnerable(
    long: pd.DataFrame, accuracy: pd.DataFrame, metric: str, alpha: float = 0.05, tol: float = 0.01
) -> Finding:
    """Claim 2. ``long``: transfer settings of ``metric``; ``accuracy``: ``method, clean_acc``.

    Across methods: Spearman ρ and Kendall τ-b of clean accuracy vs the mean ``metric`` over the complete
    settings. Pairs: for every two methods with different accuracy, the stronger (higher accuracy) vs the
    weaker, two-sided Wilcoxon over the complete settings, Holm-corrected over pairs. Cases: one per
    (stronger/weaker pair, task), the task's ``metric`` averaged over attacks; "decreased or stayed" when
    stronger − weaker ≤ ``tol`` (default 1 percentage point); sign test over the cases that moved.
    """
    from scipy.stats import binomtest

    from analysis.stats import StatisticsError, correlation, paired_table

    test = (
        f"Spearman ρ and Kendall τ-b (two-sided) between each method's clean merged accuracy and its mean "
        f"{metric} over the complete settings; Wilcoxon signed-rank (two-sided, Holm over pairs) of "
        f"stronger vs weaker method for every pair; case count per (method pair, task) with a sign test."
    )
    if long.empty or accuracy.empty:
        what = (
            "no transfer results; run `mergesec run --track transfer`"
            if long.empty
            else "no clean accuracy; run `mergesec run --track merge`"
        )
        return _no_data(F2, test, what)
    try:
        wide = paired_table(long, metric, TRANSFER_SETTING)
    except StatisticsError as e:
        return _no_data(F2, test, str(e))
    acc = accuracy.set_index("method")["clean_acc"]
    methods = [m for m in wide.columns if m in acc.index and pd.notna(acc[m])]
    if len(methods) < 2:
        return _no_data(F2, test, "fewer than 2 methods have both clean accuracy and transfer results")
    wide = wide[methods]
    per_method = pd.DataFrame(
        {"method": methods, "clean_acc": acc[methods].to_numpy(), f"mean_{metric}": wide.mean().to_numpy()}
    )
    per_method = per_method.sort_values("clean_acc", ascending=False, ignore_index=True)
    n = len(methods)
    corr = (
        correlation(per_method.clean_acc, per_method[f"mean_{metric}"])
        if n >= 3
        else pd.DataFrame(columns=["test", "n", "r", "CI95", "p_val"])
    )

    # every pair, stronger first
    rows = []
    for a, b in itertools.combinations(methods, 2):
        if acc[a] == acc[b]:
            continue
        s, w = (a, b) if acc[a] > acc[b] else (b, a)
        r = _paired(wide[s].to_numpy(), wide[w].to_numpy(), n_boot=200, seed=0)
        rows.append(
            {
                "stronger": s,
                "weaker": w,
                "acc_gap": acc[s] - acc[w],
                "n_settings": r["n"],
                "mean_diff": r["mean_diff"],
                "W_val": r["W_val"],
                "p_unc": r["p_val"],
                "RBC": r["RBC"],
                "CLES": r["CLES"],
            }
        )
    pairs = pd.DataFrame(rows)
    if not pairs.empty:
        pairs["p_holm"] = holm(pairs.p_unc)
        pairs["direction"] = np.where(
            pairs.p_holm >= alpha,
            "no significant difference",
            np.where(pairs.mean_diff > 0, "stronger more vulnerable", "stronger less vulnerable"),
        )
        pairs = pairs.sort_values(["stronger", "weaker"], ignore_index=True)

    # cases: (pair, task), metric averaged over the task's other setting columns
    by_task = wide.groupby(level="task").mean()
    cases = []
    for _, pr in pairs.iterrows():
        for task, row in by_task.iterrows():
            d = row[pr.stronger] - row[pr.weaker]
            cases.append(
                {
                    "stronger": pr.stronger,
                    "weaker": pr.weaker,
                    "task": task,
                    "diff": d,
                    "outcome": "increased" if d > tol else ("stayed" if d >= -tol else "decreased"),
                }
            )
    cases = pd.DataFrame(cases, columns=["stronger", "weaker", "task", "diff", "outcome"])
    n_cases = len(cases)
    n_inc = int((cases.outcome == "increased").sum())
    n_dec = int((cases.outcome == "decreased").sum())
    n_stay = n_cases - n_inc - n_dec
    sign_p = binomtest(n_inc, n_inc + n_dec, 0.5).pvalue if n_inc + n_dec else float("nan")

    numbers: dict = {
        "n_methods": n,
        "n_settings": len(wide),
        "n_pairs": len(pairs),
        "n_cases": n_cases,
        "n_decreased_or_stayed": n_dec + n_stay,
        "n_increased": n_inc,
        "n_stayed": n_stay,
        "sign_test_p": sign_p,
        "tol": tol,
        "accuracy_source": accuracy.get("source", pd.Series(["?"])).iat[0],
    }
    for _, c in corr.iterrows():
        numbers[f"{c.test}_r"], numbers[f"{c.test}_p"] = float(c.r), float(c.p_val)
    if not pairs.empty:
        numbers["pairs_stronger_more_vulnerable"] = int((pairs.direction == "stronger more vulnerable").sum())
        numbers["pairs_stronger_less_vulnerable"] = int((pairs.direction == "stronger less vulnerable").sum())

    min_p = min_p_rank_correlation(n)
    if n < 3 or min_p >= alpha:
        verdict = INCONCLUSIVE
        remark = f"with {n} methods an exact rank correlation cannot reach p < {alpha}"
    else:
        sig = [(c.p_val < alpha, c.r > 0) for c in corr.itertuples()]
        if all(s and pos for s, pos in sig):
            verdict, remark = SUPPORTED, ""
        elif all(s and not pos for s, pos in sig):
            verdict, remark = (
                NOT_SUPPORTED,
                "both correlations are significantly negative (the opposite trend)",
            )
        elif all(not s for s, _ in sig):
            verdict, remark = NOT_SUPPORTED, f"neither correlation is significant at α = {alpha}"
        else:
            verdict, remark = "inconclusive (Spearman and Kendall disagree)", ""
    corr_txt = "; ".join(
        f"{c.test.capitalize()} r = {c.r:.2f} (95% CI {fmt_ci(c.CI95)}), {peq(c.p_val)}"
        for c in corr.itertuples()
    )
    result = (
        f"Across {n} methods (accuracy from {numbers['accuracy_source']}; {metric} over {len(wide)} "
        f"complete settings): {corr_txt or 'too few methods for a correlation'}. Pairwise: "
        f"{numbers.get('pairs_stronger_more_vulnerable', 0)} of {len(pairs)} stronger/weaker pairs are "
        f"significantly more vulnerable, {numbers.get('pairs_stronger_less_vulnerable', 0)} significantly "
        f"less (Holm). {metric} decreased or stayed (|Δ| ≤ {pp(tol).lstrip('+')}) in "
        f"{n_dec + n_stay} of {n_cases} (stronger/weaker method pair × task) cases ({n_dec} decreased, "
        f"{n_stay} stayed, {n_inc} increased; sign test over the {n_inc + n_dec} that moved: "
        f"{peq(sign_p)}; the poster's count was 15 of 24)."
    )
    notes = [
        "Cases share methods and tasks, so they are not independent; the sign test over them is "
        "descriptive. The correlation across methods is the test of the claim."
    ]
    corr_table = corr.drop(columns="CI95").assign(
        ci95_low=[float(c[0]) for c in corr.CI95], ci95_high=[float(c[1]) for c in corr.CI95]
    )
    tables = {"per_method": per_method, "correlation": corr_table, "pairs": pairs, "cases": cases}
    return _finding(F2, test, verdict, result, remark, numbers, tables, notes)


# -- 3. representation surgery increases vulnerability -------------------------------------------------------

F3 = Claim(
    "surgery_more_vulnerable",
    "Representation Surgery increases vulnerability",
    "Mitigating representation bias increases vulnerability to transfer attacks: Task Arithmetic with "
    "Representation Surgery is more vulnerable than Task Arithmetic (Gangwal & Sharma, insight 2).",
)


def surgery_more_vulnerable(
    long: pd.DataFrame, metric: str, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
    treated: str = SURGERY, base: str = TASK_ARITHMETIC,
) -> Finding:
    """Claim 3: two-sided Wilcoxon of ``treated`` vs ``base`` over the settings both have."""
    from analysis.stats import StatisticsError, paired_table

    test = (
        f"Wilcoxon signed-rank test (two-sided) of {metric} of {treated} vs {base} over the settings both "
        f"have (task × attack, seeds averaged); mean difference with a paired bootstrap 95% CI."
    )
    present = set(long.method) if not long.empty else set()
    missing = [m for m in (treated, base) if m not in present]
    if missing:
        return _no_data(
            F3,
            test,
            f"no transfer results for {', '.join(missing)}; run "
            f"`mergesec run --track transfer --methods {treated},{base}`",
        )
    try:
        wide = paired_table(long[long.method.isin([treated, base])], metric, TRANSFER_SETTING)
    except StatisticsError as e:
        return _no_data(F3, test, str(e))
    r = _paired(wide[treated].to_numpy(), wide[base].to_numpy(), n_boot, seed)
    verdict, remark = _directional_verdict(r["p_val"], r["mean_diff"], r["min_p"], alpha)
    result = (
        f"Over {r['n']} settings: {treated} {pct(r['mean_a'])} vs {base} {pct(r['mean_b'])}; difference "
        f"{pp(r['mean_diff'])} (95% CI {pp(r['diff_ci_low'])} to {pp(r['diff_ci_high'])}); {treated} "
        f"higher in {r['a_higher']}, lower in {r['a_lower']}, tied in {r['ties']} settings. Wilcoxon "
        f"W = {r['W_val']:.1f}, {peq(r['p_val'])}, RBC = {r['RBC']:.2f}, CLES = {r['CLES']:.2f}."
    )
    per_setting = wide[[treated, base]].assign(diff=wide[treated] - wide[base]).reset_index()
    return _finding(F3, test, verdict, result, remark, {"metric": metric, **r}, {"per_setting": per_setting})


# -- 4. weight averaging is the most vulnerable --------------------------------------------------------------

F4 = Claim(
    "weight_averaging_most_vulnerable",
    "Weight averaging is the most vulnerable method",
    "Weight averaging, despite being the weakest merging method, is the most vulnerable to transfer "
    "attacks (Gangwal & Sharma, insight 3).",
)


def weight_averaging_most_vulnerable(
    long: pd.DataFrame, metric: str, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
    method: str = WEIGHT_AVERAGING,
) -> Finding:
    """Claim 4: the vulnerability ranking (``rank_methods`` with higher = more vulnerable = rank 1) and the
    most-vulnerable group (methods not significantly less vulnerable than the most vulnerable one)."""
    from analysis.stats import StatisticsError, friedman_test, pairwise_wilcoxon, rank_methods

    test = (
        f"Methods ranked by mean {metric} (1 = most vulnerable) with paired bootstrap CIs; Friedman test "
        "(Kendall's W) that the methods differ; the most-vulnerable group = methods whose Holm-corrected "
        "Wilcoxon test against the most vulnerable method does not reject (analysis.stats.rank_methods)."
    )
    if long.empty or method not in set(long.method):
        return _no_data(F4, test, f"no transfer results for {method}")
    try:
        vuln = rank_methods(
            long, metric, TRANSFER_SETTING, higher_is_better=True, n_boot=n_boot, seed=seed, alpha=alpha
        )
        fr = friedman_test(long, metric, TRANSFER_SETTING).iloc[0]
        pairs = pairwise_wilcoxon(long, metric, TRANSFER_SETTING)
    except StatisticsError as e:
        return _no_data(F4, test, str(e))
    vuln = vuln.assign(top_group=vuln["rank"].eq(1))  # CI-aware rank 1: nothing significantly more vulnerable
    vuln = vuln.rename(columns={"rank": "vulnerability_rank", "top_group": "most_vulnerable_group"})
    row = vuln.set_index("method").loc[method]
    k, n = len(vuln), int(vuln.n_settings.iat[0])
    group = vuln[vuln.most_vulnerable_group].method.tolist()
    vs = pairs[(method == pairs.A) | (method == pairs.B)].copy()
    vs["other"] = np.where(method == vs.A, vs.B, vs.A)
    vs["RBC_wa_minus_other"] = np.where(method == vs.A, vs.RBC, -vs.RBC)  # > 0: WA more vulnerable
    vs["CLES_wa_gt_other"] = np.where(method == vs.A, vs.CLES, 1 - vs.CLES)
    sig_less = vs[(vs.p_corr < alpha) & (vs.RBC_wa_minus_other > 0)].other.tolist()
    sig_more = vs[(vs.p_corr < alpha) & (vs.RBC_wa_minus_other < 0)].other.tolist()
    min_p = min_p_wilcoxon(n) * (k * (k - 1) // 2)
    if min_p >= alpha:
        verdict, remark = (
            INCONCLUSIVE,
            (
                f"with {n} settings and {k * (k - 1) // 2} Holm-corrected pairs no "
                "pair can differ significantly"
            ),
        )
    elif int(row.vulnerability_rank) == 1 and group == [method]:
        verdict, remark = SUPPORTED, ""
    elif row.most_vulnerable_group:
        verdict = "inconclusive (shares the most-vulnerable group)"
        remark = (
            f"{method} is not significantly more vulnerable than {', '.join(m for m in group if m != method)}"
        )
    else:
        verdict, remark = (
            NOT_SUPPORTED,
            (
                f"{method} is significantly less vulnerable than "
                f"{', '.join(sig_more) or 'the most vulnerable method'}"
            ),
        )
    result = (
        f"{method} ranks {int(row.vulnerability_rank)} of {k} by mean {metric} ({pct(row['mean'])}, 95% CI "
        f"{pct(row.ci_low)} to {pct(row.ci_high)}; most vulnerable: {vuln.method.iat[0]} "
        f"{pct(vuln['mean'].iat[0])}) over {n} settings. Most-vulnerable group: {', '.join(group)}. "
        f"{method} is significantly more vulnerable than {len(sig_less)} of {k - 1} methods and "
        f"significantly less vulnerable than {len(sig_more)} (Wilcoxon, Holm). Friedman χ²"
        f"({int(fr.ddof1)}) = {fr.Q:.2f}, {peq(fr.p_unc)}, Kendall's W = {fr.W:.2f}."
    )
    numbers = {
        "metric": metric,
        "rank": int(row.vulnerability_rank),
        "k": k,
        "n_settings": n,
        "mean": row["mean"],
        "in_most_vulnerable_group": bool(row.most_vulnerable_group),
        "most_vulnerable_group": ", ".join(group),
        "n_significantly_more_vulnerable_than": len(sig_less),
        "n_significantly_less_vulnerable_than": len(sig_more),
        "friedman_Q": fr.Q,
        "friedman_p": fr.p_unc,
        "kendall_W": fr.W,
    }
    vs = vs[["other", "n_settings", "W_val", "p_unc", "p_corr", "RBC_wa_minus_other", "CLES_wa_gt_other"]]
    tables = {"vulnerability_ranking": vuln, "vs_weight_averaging": vs.reset_index(drop=True)}
    return _finding(F4, test, verdict, result, remark, numbers, tables)


# -- 5. pretrained surrogate transfers less ------------------------------------------------------------------

F5 = Claim(
    "pretrained_surrogate_transfers_less",
    "A pretrained surrogate transfers less than a fine-tuned one",
    "Adversarial examples crafted on the pretrained model transfer less to the merged model than those "
    "crafted on a fine-tuned model (seeds/000, result 3).",
)


_SURROGATE_COLUMNS = {
    "mean_a": "mean_finetuned",
    "mean_b": "mean_pretrained",
    "a_higher": "finetuned_higher",
    "a_lower": "finetuned_lower",
}
"""`_paired`'s columns renamed for claim 5 (a = the fine-tuned surrogate, b = the pretrained one)."""


def pretrained_surrogate_transfers_less(
    longs: dict[str, pd.DataFrame], alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> Finding:
    """Claim 5. ``longs``: metric → transfer settings of both surrogates (the first metric decides).

    Primary test per metric: one pair per (task, attack, eps), each surrogate's value averaged over the
    merging methods (both surrogates' adversarial examples are shared by every method, so methods are not
    independent replicates); two-sided Wilcoxon fine-tuned vs pretrained. Per method: the same over the
    method's (task, attack) pairs, Holm-corrected over methods.
    """
    metrics = list(longs)
    test = (
        f"Wilcoxon signed-rank test (two-sided) of {metrics[0]} with a fine-tuned vs a pretrained surrogate, "
        "paired on (task, attack), each value the mean over merging methods (seeds averaged); mean "
        "difference with a paired bootstrap 95% CI; per-method tests Holm-corrected. "
        + (f"Secondary metric: {', '.join(metrics[1:])}." if len(metrics) > 1 else "")
    )
    overall, per_method = [], []
    for metric, long in longs.items():
        if long.empty or not {FINETUNED, PRETRAINED} <= set(long.surrogate):
            continue
        keys = ["task", "attack", "eps"]
        # (method, task, attack, eps) rows with both surrogates; the overall pair averages over those methods
        bym = long.pivot_table(index=["method", *keys], columns="surrogate", values=metric)
        bym = bym[[FINETUNED, PRETRAINED]].dropna()
        both = bym.groupby(level=keys).mean()
        if len(both) < 2:
            continue
        overall.append(
            {
                "metric": metric,
                **_paired(both[FINETUNED].to_numpy(), both[PRETRAINED].to_numpy(), n_boot, seed),
            }
        )
        for m, g in bym.groupby(level="method"):
            if len(g) >= 2:
                r = _paired(g[FINETUNED].to_numpy(), g[PRETRAINED].to_numpy(), n_boot, seed)
                per_method.append({"metric": metric, "method": m, **r})
    if not overall or overall[0]["metric"] != metrics[0]:
        return _no_data(
            F5,
            test,
            "transfer results with both a `finetuned` and a `pretrained` "
            "surrogate on 2 or more (task, attack) settings are needed",
        )
    overall_df = pd.DataFrame(overall).rename(columns=_SURROGATE_COLUMNS)
    pm = pd.DataFrame(per_method).rename(columns=_SURROGATE_COLUMNS)
    if not pm.empty:
        pm["p_holm"] = pm.groupby("metric").p_val.transform(lambda p: holm(p.to_numpy()))
        pm = pm.drop(columns=["min_p"])
    r = overall[0]
    verdict, remark = _directional_verdict(r["p_val"], r["mean_diff"], r["min_p"], alpha)
    primary = metrics[0]
    n_all = pm[pm.metric == primary] if not pm.empty else pm
    result = (
        f"{primary} over {r['n']} (task, attack) pairs: fine-tuned surrogate {pct(r['mean_a'])} vs "
        f"pretrained {pct(r['mean_b'])}; difference {pp(r['mean_diff'])} (95% CI {pp(r['diff_ci_low'])} "
        f"to {pp(r['diff_ci_high'])}); fine-tuned higher in {r['a_higher']} of {r['n']}. Wilcoxon "
        f"W = {r['W_val']:.1f}, {peq(r['p_val'])}, RBC = {r['RBC']:.2f}."
    )
    if not n_all.empty:
        result += (
            f" Per method, the fine-tuned surrogate transfers significantly more for "
            f"{int(((n_all.p_holm < alpha) & (n_all.mean_diff > 0)).sum())} of {len(n_all)} methods "
            "(Holm)."
        )
    for o in overall[1:]:
        result += (
            f" Secondary ({o['metric']}): difference {pp(o['mean_diff'])}, W = {o['W_val']:.1f}, "
            f"{peq(o['p_val'])}, RBC = {o['RBC']:.2f}."
        )
    notes = []
    if primary == "asr_transfer":
        notes.append(
            "Absolute transfer ASR decides: relative ASR divides by each surrogate's own white-box "
            "ASR, so it compares transfer *efficiency*, not how often the merged model is fooled."
        )
    tables = {"overall": overall_df.drop(columns=["min_p"]), "per_method": pm}
    return _finding(F5, test, verdict, result, remark, {"metric": primary, **r}, tables, notes)


# -- 6. backdoors ------------------------------------------------------------------------------------------

F6 = Claim(
    "backdoor_survives_merging",
    "BadMerging survives merging; a naive backdoor does not",
    "BadMerging keeps a high attack success rate after merging, while prior (naive BadNets-style) backdoors "
    "are diluted to below 20% ASR (Zhang et al., CCS 2024).",
)


def _boot_ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    from analysis.stats import bootstrap_ci

    if len(values) < 2:
        return float("nan"), float("nan")
    ci = bootstrap_ci(pd.Series(values, name="v"), n_boot=n_boot, seed=seed).iloc[0]
    return float(ci.ci_low), float(ci.ci_high)


def backdoor_asr_after_merging(
    rows: pd.DataFrame, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0, threshold: float = 0.20,
    defense: str = "none",
) -> Finding:
    """Claim 6a. ``rows``: :func:`analysis.queries.backdoor_rows`. Without a defense: per (attack, variant,
    method) mean ASR with a bootstrap CI; per (attack, variant) a two-sided one-sample Wilcoxon of ASR −
    ``threshold`` over the (method, setting) rows (seeds averaged), Holm over (attack, variant)."""
    from analysis.stats import one_sample_vs

    test = (
        f"Per attack: one-sample Wilcoxon signed-rank test (two-sided; RBC) and t-test (Cohen's d) of "
        f"backdoor ASR − {threshold:.0%} over the merged models (method × target setting, seeds averaged, "
        f"defense `{defense}`), Holm over attacks; per method: mean ASR with a bootstrap 95% CI."
    )
    base = rows[rows.defense == defense] if not rows.empty else rows
    if base.empty:
        return _no_data(
            F6,
            test,
            f"no backdoor results without a defense (`{defense}`); run `mergesec run --track backdoor`",
        )
    setting = ["attack", "variant", "method", "adversary_task", "target_task", "target_class"]
    avg = base.groupby(setting, as_index=False)[["backdoor_asr", "clean_acc"]].mean()
    per_method = []
    for (a, v, m), g in avg.groupby(["attack", "variant", "method"]):
        lo, hi = _boot_ci(g.backdoor_asr.to_numpy(), n_boot, seed)
        per_method.append(
            {
                "attack": a,
                "variant": v,
                "method": m,
                "n": len(g),
                "backdoor_asr": g.backdoor_asr.mean(),
                "ci_low": lo,
                "ci_high": hi,
                "clean_acc": g.clean_acc.mean(),
            }
        )
    per_method = pd.DataFrame(per_method)
    avg["attack_variant"] = avg.attack + "/" + avg.variant
    counts = avg.groupby("attack_variant").backdoor_asr.count()
    testable = avg[avg.attack_variant.isin(counts[counts >= 2].index)]
    per_attack = pd.DataFrame()
    if not testable.empty:
        per_attack = one_sample_vs(
            testable, "backdoor_asr", threshold, by="attack_variant", alternative="two-sided"
        )
        per_attack["p_holm"] = holm(per_attack.p_wilcoxon)
        mins = [
            min_p_wilcoxon(
                int((testable.loc[testable.attack_variant == av, "backdoor_asr"] != threshold).sum())
            )
            * len(per_attack)
            for av in per_attack.attack_variant
        ]
        per_attack["direction"] = [
            "n too small"
            if mp >= alpha
            else f"above {threshold:.0%}"
            if (p < alpha and mu > threshold)
            else f"below {threshold:.0%}"
            if p < alpha
            else "not distinguishable"
            for mp, p, mu in zip(mins, per_attack.p_holm, per_attack["mean"], strict=True)
        ]
    verdict_parts, judged = [], []
    for av in per_attack.get("attack_variant", []):
        row = per_attack.set_index("attack_variant").loc[av]
        attack = av.split("/")[0]
        if attack == BADMERGING:
            judged.append(
                "n too small" if row.direction == "n too small" else row.direction == f"above {threshold:.0%}"
            )
        elif attack == NAIVE:
            judged.append(
                "n too small" if row.direction == "n too small" else row.direction == f"below {threshold:.0%}"
            )
        verdict_parts.append(
            f"{av}: mean {pct(row['mean'])}, W = {row.W_val:.1f}, "
            f"{peq(row.p_holm, 'p(Holm)')}, RBC = {row.RBC:.2f} → {row.direction}"
        )
    if not judged:
        verdict = NO_DATA
        extra = f" No `{BADMERGING}` or `{NAIVE}` results, so the claim itself is not tested."
    elif any(j == "n too small" for j in judged):
        verdict, extra = INCONCLUSIVE, ""
    else:
        verdict, extra = (SUPPORTED if all(judged) else NOT_SUPPORTED), ""
    result = (
        f"Backdoor ASR after merging (defense `{defense}`), per attack/variant against {threshold:.0%}: "
        + ("; ".join(verdict_parts) or "too few merged models per attack for a test")
        + "."
        + extra
    )
    numbers = {"threshold": threshold, "n_rows": len(avg)}
    for _, r in per_attack.iterrows():
        numbers[f"mean_asr[{r.attack_variant}]"] = r["mean"]
        numbers[f"p_holm[{r.attack_variant}]"] = r.p_holm
    return _finding(F6, test, verdict, result, "", numbers, {"per_attack": per_attack, "per_method": per_method})


F7 = Claim(
    "defenses_reduce_asr",
    "Defenses reduce backdoor ASR, at an accuracy cost",
    "Each defense lowers the backdoor ASR of the merged model (e.g. IBVS, Pawlak et al., arXiv 2510.08016), "
    "and its clean-accuracy cost is small.",
)


def defense_effects(
    rows: pd.DataFrame, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0, no_defense: str = "none"
) -> Finding:
    """Claim 6b: each defense vs ``no_defense``, paired on (attack, variant, method, tasks, class, seed).

    Per (attack, defense) and per defense pooled over attacks: ASR reduction (without − with) and accuracy
    cost (without − with), means with paired bootstrap 95% CIs, and two-sided Wilcoxon tests; Holm over rows.
    """
    from analysis.queries import BACKDOOR_PAIR_KEYS

    test = (
        "Wilcoxon signed-rank (two-sided; RBC) of backdoor ASR without vs with the defense, and of clean "
        "accuracy, paired on (attack, variant, method, adversary task, target task, target class, seed); "
        "mean ASR reduction and accuracy cost with paired bootstrap 95% CIs; Holm over the rows of each "
        "table."
    )
    if rows.empty or no_defense not in set(rows.defense) or set(rows.defense) == {no_defense}:
        return _no_data(
            F7,
            test,
            f"backdoor results both without (`{no_defense}`) and with a "
            "defense are needed; run the backdoor track with defenses",
        )
    base = rows[rows.defense == no_defense]
    out = []
    defended = rows[rows.defense != no_defense]
    for scope in ("attack", "all"):
        groups = (
            defended.groupby(["attack", "defense"])
            if scope == "attack"
            else defended.assign(scope_attack="(all)").groupby(["scope_attack", "defense"])
        )
        for (attack, defense), g in groups:
            pairs = g.merge(base, on=BACKDOOR_PAIR_KEYS, suffixes=("", "_base"))
            if len(pairs) < 2:
                continue
            asr = _paired(pairs.backdoor_asr_base.to_numpy(), pairs.backdoor_asr.to_numpy(), n_boot, seed)
            acc = _paired(pairs.clean_acc_base.to_numpy(), pairs.clean_acc.to_numpy(), n_boot, seed)
            out.append(
                {
                    "scope": scope,
                    "attack": attack,
                    "defense": defense,
                    "n_pairs": len(pairs),
                    "asr_without": asr["mean_a"],
                    "asr_with": asr["mean_b"],
                    "asr_reduction": asr["mean_diff"],
                    "asr_reduction_ci_low": asr["diff_ci_low"],
                    "asr_reduction_ci_high": asr["diff_ci_high"],
                    "asr_W": asr["W_val"],
                    "asr_p": asr["p_val"],
                    "asr_RBC": asr["RBC"],
                    "acc_cost": acc["mean_diff"],
                    "acc_cost_ci_low": acc["diff_ci_low"],
                    "acc_cost_ci_high": acc["diff_ci_high"],
                    "acc_W": acc["W_val"],
                    "acc_p": acc["p_val"],
                    "acc_RBC": acc["RBC"],
                    "min_p": asr["min_p"],
                }
            )
    effects = pd.DataFrame(out)
    if effects.empty:
        return _no_data(F7, test, "no defended setting has a matching undefended setting")
    for scope, idx in effects.groupby("scope").groups.items():
        effects.loc[idx, "asr_p_holm"] = holm(effects.loc[idx, "asr_p"].to_numpy())
        effects.loc[idx, "acc_p_holm"] = holm(effects.loc[idx, "acc_p"].to_numpy())
        m = len(idx)
        effects.loc[idx, "verdict"] = [
            INCONCLUSIVE if mp * m >= alpha else SUPPORTED if (p < alpha and d > 0) else NOT_SUPPORTED
            for mp, p, d in zip(
                effects.loc[idx, "min_p"],
                effects.loc[idx, "asr_p_holm"],
                effects.loc[idx, "asr_reduction"],
                strict=True,
            )
        ]
        del scope
    effects = effects.drop(columns=["min_p"])
    pooled = effects[effects.scope == "all"]
    verdicts = set(pooled.verdict)
    verdict = (
        SUPPORTED
        if verdicts == {SUPPORTED}
        else INCONCLUSIVE
        if verdicts <= {INCONCLUSIVE}
        else NOT_SUPPORTED
    )
    parts = [
        f"`{r.defense}`: ASR {pct(r.asr_without)} → {pct(r.asr_with)} (reduction {pp(r.asr_reduction)}, "
        f"95% CI {pp(r.asr_reduction_ci_low)} to {pp(r.asr_reduction_ci_high)}; W = {r.asr_W:.1f}, "
        f"{peq(r.asr_p_holm, 'p(Holm)')}, RBC = {r.asr_RBC:.2f}); accuracy cost {pp(r.acc_cost)} "
        f"(95% CI {pp(r.acc_cost_ci_low)} to {pp(r.acc_cost_ci_high)}, {peq(r.acc_p_holm)}) "
        f"over {r.n_pairs} pairs → {r.verdict}"
        for r in pooled.itertuples()
    ]
    result = "Pooled over attacks: " + "; ".join(parts) + "."
    remark = "Not every defense reduces the ASR significantly" if verdict == NOT_SUPPORTED else ""
    numbers = {}
    for r in pooled.itertuples():
        numbers[f"asr_reduction[{r.defense}]"] = r.asr_reduction
        numbers[f"asr_p_holm[{r.defense}]"] = r.asr_p_holm
        numbers[f"acc_cost[{r.defense}]"] = r.acc_cost
    return _finding(F7, test, verdict, result, remark, numbers, {"effects": effects})
