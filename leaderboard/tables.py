"""Derived tables the pages show: pure functions of query results (no Streamlit, no SQL)."""

import re
from urllib.parse import urlencode

import pandas as pd

BACKDOOR_PAIR_KEYS = ["attack", "variant", "method", "adversary_task", "target_task", "target_class", "seed"]
NO_DEFENSE = "none"


def fmt_eps(eps: float) -> str:
    """A perturbation budget as k/255 (the unit the papers use): 0.0314 -> "8/255", 0.01 -> "2.55/255"."""
    k = eps * 255
    return f"{round(k):d}/255" if abs(k - round(k)) < 0.01 else f"{k:.3g}/255"


def fmt_value(v: float, percent: bool) -> str:
    if v is None or pd.isna(v):
        return "–"
    return f"{100 * v:.1f}%" if percent else f"{v:.3f}"


def fmt_pp(d: float, percent: bool = True) -> str:
    """A difference of two rates in percentage points (signed), or a signed plain number."""
    if d is None or pd.isna(d):
        return "–"
    return f"{100 * d:+.1f} pp" if percent else f"{d:+.3f}"


def fmt_p(p: float) -> str:
    """A p-value: ``< 0.0001``, four decimals below 0.01, else three."""
    if p is None or pd.isna(p):
        return "–"
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def p_text(p: float) -> str:
    """``p = 0.012`` or ``p < 0.0001``."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def fmt_ci(lo: float, hi: float, percent: bool) -> str:
    return f"[{fmt_value(lo, percent)}, {fmt_value(hi, percent)}]"


def method_link(name: str, suite_hash: str | None = None) -> str:
    """The method page's relative URL (what a ranking's method column links to)."""
    query = {"method": name} | ({"suite": suite_hash} if suite_hash else {})
    return f"method?{urlencode(query)}"


def badge(meta: dict | None, verdicts: pd.DataFrame) -> str:
    """A method's standing as one word or two: ``built-in`` (mergesec's own code), else the latest
    `reproduce` verdict reached on its current code hash (a verdict on older code does not count); a
    "reproduced" verdict counts only while the rows it checked are stored unchanged (their digest), else it
    reads "reproduction not verified"."""
    if not meta:
        return "unregistered"
    if str(meta.get("source", "")) == "builtin":
        return "built-in"
    from benchmark.store.digest import current_verdicts

    mine = current_verdicts(verdicts, meta.get("code_hash"))
    if mine.empty:
        return "not reproduced since its code changed" if len(verdicts) else "not reproduced yet"
    verdict = mine.verdict.iat[0]
    return "reproduced" if verdict == "reproduced" else f"reproduction {verdict}"


PAPER_URL = re.compile(r"https?://[^\s)]+")


def paper_url(paper: str | None) -> str | None:
    """The first http(s) URL in a method's paper field (built-ins store a URL, submissions "title (url)")."""
    hit = PAPER_URL.search(paper or "")
    return hit.group(0) if hit else None


def ranking_display(res: pd.DataFrame, percent: bool, suite_hash: str | None = None,
                    meta: pd.DataFrame | None = None, badges: dict[str, str] | None = None) -> pd.DataFrame:
    """The ranking as shown, as Markdown cell text: CI-aware rank, method (a link to its page), badge, mean,
    95% CI, settings, paper and code links (columns without any link dropped). ``rank`` is
    :func:`analysis.ranking_view.ranked_table`'s: 1 + the number of methods significantly better, ties share."""
    from leaderboard import markdown

    meta = meta.set_index("name") if meta is not None and len(meta) else None
    names = res["method"].tolist()

    def field(col: str) -> list:
        if meta is None or col not in meta.columns:
            return [None] * len(names)
        return [meta[col].get(n) if n in meta.index else None for n in names]

    papers = [paper_url(p) for p in field("paper")]
    codes = [c if isinstance(c, str) and c.startswith("http") else None for c in field("code_url")]
    out = pd.DataFrame({
        "rank": res["rank"].astype(int).to_numpy(),
        "method": [markdown.link(n, method_link(n, suite_hash)) for n in names],
        "badge": [markdown.badge((badges or {}).get(n, "")) for n in names],
        "mean": [fmt_value(v, percent) for v in res["mean"]],
        "95% CI": [fmt_ci(lo, hi, percent) for lo, hi in zip(res.ci_low, res.ci_high, strict=True)],
        "settings": res["n_settings"].to_numpy(),
        "paper": [markdown.link("paper", u) for u in papers],
        "code": [markdown.link("code", u) for u in codes],
    })
    return out.drop(columns=[c for c, urls in (("paper", papers), ("code", codes)) if not any(urls)])


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
    better = "higher" if spec.higher_is_better else "lower"
    p_better = s.CLES if spec.higher_is_better else 1 - s.CLES
    rows = [
        (f"mean {spec.label}: {a}", fmt_value(s[means[0]], pct)),
        (f"mean {spec.label}: {b}", fmt_value(s[means[1]], pct)),
        (f"difference {a} − {b} [95% CI]", f"{fmt_pp(s.mean_diff, pct)} [{fmt_pp(s.diff_ci_low, pct)}, "
                                          f"{fmt_pp(s.diff_ci_high, pct)}]"),
        (f"settings where {a} is better ({better}) / tied / worse", f"{s.a_better} / {s.ties} / {s.a_worse}"),
        ("Wilcoxon W", f"{s.W_val:.1f}"),
        ("p (two-sided)", fmt_p(s.p_val)),
        ("rank-biserial r", f"{s.RBC:+.2f}"),
        (f"probability {a} is better ({better}) in a random pair of settings", f"{p_better:.2f}"),
    ]
    return pd.DataFrame(rows, columns=["statistic", "value"])


def is_baseline(rows: pd.DataFrame) -> pd.Series:
    """Backdoor rows that measure no attack (the trigger on an honest merge): ``role == 'baseline'`` where
    the store has roles (backdoor 2.0), else an attack named ``clean*``."""
    by_name = rows["attack"].astype(str).str.startswith("clean")
    if "role" in rows.columns:
        return rows["role"].eq("baseline").fillna(False) | by_name
    return by_name


def floor_columns(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per method (in ``order``): mean untriggered ASR floor and ASR − floor, where ``asr_floor`` is stored."""
    if "asr_floor" not in rows.columns or rows["asr_floor"].isna().all():
        return pd.DataFrame(index=order)
    g = rows.assign(excess=rows.backdoor_asr - rows.asr_floor).groupby("method")[["asr_floor", "excess"]].mean()
    return g.reindex(order)


def effects_display(effects: pd.DataFrame, suite_hash: str | None = None) -> pd.DataFrame:
    """:func:`defense_effects` as shown (Markdown cell text): attack, defense (a link to its page), ASR
    reduction and accuracy cost in percentage points with their 95% CIs, pairs."""
    from leaderboard import markdown

    def ci(lo: pd.Series, hi: pd.Series) -> list[str]:
        return [f"[{fmt_pp(a)}, {fmt_pp(b)}]" for a, b in zip(lo, hi, strict=True)]

    return pd.DataFrame({
        "attack": effects.attack,
        "defense": [markdown.link(d, method_link(d, suite_hash)) for d in effects.defense],
        "ASR reduction": effects.asr_reduction.map(fmt_pp),
        "ASR reduction 95% CI": ci(effects.asr_reduction_ci_low, effects.asr_reduction_ci_high),
        "accuracy cost": effects.acc_cost.map(fmt_pp),
        "accuracy cost 95% CI": ci(effects.acc_cost_ci_low, effects.acc_cost_ci_high),
        "pairs": effects.n_pairs,
    })
