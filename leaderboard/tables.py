"""Derived tables the pages show: pure functions of query results (no Streamlit, no SQL)."""

from fractions import Fraction

import numpy as np
import pandas as pd

BACKDOOR_PAIR_KEYS = ["attack", "variant", "method", "adversary_task", "target_task", "target_class", "seed"]
NO_DEFENSE = "none"


def fmt_eps(eps: float) -> str:
    """8/255-style budgets as a fraction of 255, anything else as a decimal."""
    frac = Fraction(eps * 255).limit_denominator(8)
    if abs(float(frac) - eps * 255) < 1e-9:
        num = f"{frac.numerator}" if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
        return f"{num}/255"
    return f"{eps:g}"


def fmt_value(v: float, percent: bool) -> str:
    if v is None or pd.isna(v):
        return "–"
    return f"{100 * v:.1f}%" if percent else f"{v:.3f}"


def fmt_p(p: float) -> str:
    if p is None or pd.isna(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    return "p < 0.001" if p is not None and not pd.isna(p) and p < 0.001 else f"p = {fmt_p(p)}"


def ranking_display(res: pd.DataFrame, percent: bool) -> pd.DataFrame:
    """The ranking as shown: rank, method, mean, 95% CI text, top-group star, letters, settings."""
    ci = [f"[{fmt_value(lo, percent)}, {fmt_value(hi, percent)}]" for lo, hi in zip(res.ci_low, res.ci_high,
                                                                                   strict=True)]
    return pd.DataFrame({
        "rank": res["rank"].to_numpy(),
        "method": res["method"].to_numpy(),
        "mean": res["mean"].to_numpy(),
        "95% CI": ci,
        "top group": np.where(res["top_group"], "★", ""),
        "letters": res["letters"].to_numpy(),
        "settings": res["n_settings"].to_numpy(),
    })


def by_method_task(long: pd.DataFrame, metric: str, order: list[str] | None = None) -> pd.DataFrame:
    """Mean of ``metric`` per (method, task) over the other setting columns: ``method, task, value``."""
    out = long.groupby(["method", "task"], as_index=False)[metric].mean().rename(columns={metric: "value"})
    if order:
        rank = {m: i for i, m in enumerate(order)}
        out = out.sort_values(["method", "task"], key=lambda s: s.map(rank) if s.name == "method" else s)
    return out.reset_index(drop=True)


def method_means(long: pd.DataFrame, metric: str) -> pd.Series:
    return long.groupby("method")[metric].mean()


def defense_effects(rows: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each defense against no defense, paired on (attack, variant, method, tasks, class, seed).

    ``asr_reduction`` = ASR without − ASR with the defense (> 0: the defense helps); ``acc_cost`` = clean
    accuracy without − with (> 0: the defense costs accuracy). Means with paired percentile-bootstrap 95%
    CIs over the pairs (:func:`analysis.stats.bootstrap_ci`). One row per (attack, defense).
    """
    from analysis.stats import bootstrap_ci

    cols = ["attack", "defense", "n_pairs", "asr_reduction", "asr_reduction_ci_low", "asr_reduction_ci_high",
            "acc_cost", "acc_cost_ci_low", "acc_cost_ci_high"]
    if rows.empty or NO_DEFENSE not in set(rows.defense):
        return pd.DataFrame(columns=cols)
    base = rows[rows.defense == NO_DEFENSE]
    out = []
    for (attack, defense), g in rows[rows.defense != NO_DEFENSE].groupby(["attack", "defense"], sort=True):
        pairs = g.merge(base, on=BACKDOOR_PAIR_KEYS, suffixes=("", "_base"))
        if pairs.empty:
            continue
        diffs = pd.DataFrame({"asr_reduction": pairs.backdoor_asr_base - pairs.backdoor_asr,
                              "acc_cost": pairs.clean_acc_base - pairs.clean_acc})
        ci = bootstrap_ci(diffs, n_boot=n_boot, seed=seed).set_index("variable")
        row = {"attack": attack, "defense": defense, "n_pairs": len(pairs)}
        for c in ("asr_reduction", "acc_cost"):
            row |= {c: ci.at[c, "mean"], f"{c}_ci_low": ci.at[c, "ci_low"], f"{c}_ci_high": ci.at[c, "ci_high"]}
        out.append(row)
    return pd.DataFrame(out, columns=cols)


def head_to_head(long: pd.DataFrame, metric: str, settings: list[str], a: str, b: str,
                 higher_is_better: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired comparison of methods ``a`` and ``b`` over the settings both have.

    Returns (summary, per-setting): the summary is one row with ``n_settings``, both means, the mean
    difference a − b with a paired bootstrap 95% CI, wins/ties/losses of ``a`` (by ``higher_is_better``)
    and the Wilcoxon signed-rank test (``W_val, p_val, RBC, CLES``); per-setting has both values and
    their difference.
    """
    from analysis.stats import bootstrap_ci, paired_table, paired_test

    wide = paired_table(long[long.method.isin([a, b])], metric, settings)
    diff = wide[a] - wide[b]
    better = diff > 0 if higher_is_better else diff < 0
    worse = diff < 0 if higher_is_better else diff > 0
    test = paired_test(wide[a], wide[b]).iloc[0]
    ci = bootstrap_ci(diff.rename("diff")).iloc[0]
    summary = pd.DataFrame([{
        "method_a": a, "method_b": b, "n_settings": len(wide), f"mean_{metric}_a": wide[a].mean(),
        f"mean_{metric}_b": wide[b].mean(), "mean_diff": ci["mean"], "diff_ci_low": ci["ci_low"],
        "diff_ci_high": ci["ci_high"], "a_better": int(better.sum()), "ties": int((diff == 0).sum()),
        "a_worse": int(worse.sum()), "W_val": test.W_val, "p_val": test.p_val, "RBC": test.RBC,
        "CLES": test.CLES}])
    per_setting = wide[[a, b]].assign(diff=diff).reset_index()
    return summary, per_setting


def head_to_head_display(summary: pd.DataFrame, spec) -> pd.DataFrame:
    """:func:`head_to_head`'s summary as readable (statistic, value) rows."""
    s = summary.iloc[0]
    a, b, pct = s.method_a, s.method_b, spec.percent
    means = [c for c in summary.columns if c.startswith("mean_") and c != "mean_diff"]
    rows = [
        (f"mean {spec.label}: {a}", fmt_value(s[means[0]], pct)),
        (f"mean {spec.label}: {b}", fmt_value(s[means[1]], pct)),
        (f"difference {a} − {b} [95% CI]", f"{fmt_value(s.mean_diff, pct)} [{fmt_value(s.diff_ci_low, pct)}, "
                                          f"{fmt_value(s.diff_ci_high, pct)}]"),
        (f"settings where {a} is better / tied / worse", f"{s.a_better} / {s.ties} / {s.a_worse}"),
        ("Wilcoxon W", f"{s.W_val:.1f}"),
        ("p (two-sided)", fmt_p(s.p_val)),
        ("rank-biserial r", f"{s.RBC:+.2f}"),
        (f"common-language effect size P({a} > {b})", f"{s.CLES:.2f}"),
    ]
    return pd.DataFrame(rows, columns=["statistic", "value"])
