"""Markdown for the report's tables and claim sections; every table also goes to ``tables/*.csv`` in full."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import claims as C

P_COLUMNS = ("p", "p_holm", "p_val", "p_unc", "p_corr", "p_wilcoxon", "p_ttest", "friedman_p")
DIFF_MARKERS = ("diff", "reduction", "cost", "effect", "mdd", "headroom", "acc_gap")
RATE_MARKERS = ("asr", "acc", "mean", "ci_low", "ci_high", "median")
HIDDEN = ("alternative", "sd", "t", "effect", "p_opposite", "p_opposite_holm")
"""Columns left to the CSV: the estimate minus its null (``effect``), the other-direction p of a one-sided
test, and the statistic's ingredients."""


def fmt_table(df: pd.DataFrame, pct_cols=(), pp_cols=(), p_cols=(), max_rows: int | None = 40) -> str:
    """A DataFrame as a markdown table: rates in %, differences in pp, p-values as text, others 3 decimals."""
    if df is None or df.empty:
        return "_(empty)_"
    shown = df.head(max_rows).copy() if max_rows else df.copy()
    for c in shown.columns:
        if c in pct_cols:
            shown[c] = [C.pct(v) for v in shown[c]]
        elif c in pp_cols:  # a detectable difference is a size, not a direction: unsigned
            shown[c] = [C.pp(v).lstrip("+") if c == "mdd" else C.pp(v) for v in shown[c]]
        elif c in p_cols:
            shown[c] = [C.fmt_p(v) for v in shown[c]]
        elif pd.api.types.is_bool_dtype(shown[c]):
            shown[c] = np.where(shown[c], "yes", "")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = [("–" if pd.isna(v) else f"{v:.3f}") for v in shown[c]]
    text = shown.to_markdown(index=False, disable_numparse=True)
    if max_rows and len(df) > max_rows:
        text += f"\n\n_… {len(df) - max_rows} more rows in the CSV._"
    return text


def default_view(df: pd.DataFrame) -> str:
    """A table with its columns formatted by name: a table holding ``mean_diff`` is of differences, so its
    CI bounds are in pp; rates in %; p-values as text."""
    floats = [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]
    differences = "mean_diff" in df
    pp_cols = [c for c in floats if any(k in c for k in DIFF_MARKERS) or (differences and c.startswith("ci_"))]
    pct_cols = [c for c in floats if c not in pp_cols and c not in P_COLUMNS and any(k in c for k in RATE_MARKERS)]
    shown = df.drop(columns=[c for c in HIDDEN if c in df])
    return fmt_table(shown, pct_cols=pct_cols, pp_cols=pp_cols, p_cols=[c for c in df if c in P_COLUMNS])


def claim2_views(f: C.Finding, metric: str) -> dict[str, str]:
    """Compact views of claim 2's larger tables (the CSVs hold everything)."""
    t = f.tables
    if "pairs" not in t or t["pairs"].empty:
        return {}
    sig = t["pairs"][t["pairs"].p_holm < 0.05]
    cases = t["cases"].pivot_table(
        index=["stronger", "weaker"], columns="outcome", values="diff", aggfunc="count", fill_value=0
    )
    return {
        "pairs": (
            "Significant pairs only (Holm):\n\n" + default_view(
                sig[["stronger", "weaker", "acc_gap", "mean_diff", "p_holm", "cohen_d", "mdd", "direction"]])
            if not sig.empty else "No pair differs significantly after Holm correction."
        ),
        "cases": fmt_table(cases.reset_index(), max_rows=30),
        "per_method": fmt_table(t["per_method"], pct_cols=["clean_acc", f"mean_{metric}"]),
    }


def section(f: C.Finding, number: str, views: dict[str, str], csv_dir: Path) -> str:
    """One claim's section: verdict with its power, claim, test, result, notes, figures, collapsed tables."""
    power = (
        f" (minimum detectable at 80% power: {effect_text(f.key, f.mdd)}; stated effect: "
        f"{effect_text(f.key, f.effect)}; unit: {f.unit})" if f.mdd is not None or f.effect is not None else ""
    )
    lines = [f"## {number}. {f.title}", "", f"**Verdict: {f.verdict}**{power}", "", f"**Claim.** {f.claim}", "",
             f"**Test.** {f.test}", "", f"**Result.** {f.result}", ""]
    for note in f.notes:
        lines += [f"> {note}", ""]
    for fig in f.figures:
        lines += [f"![{fig}]({fig})", ""]
    for name, df in f.tables.items():
        if df is None or df.empty:
            continue
        path = csv_dir / f"{f.key}__{name}.csv"
        df.to_csv(path, index=False)
        lines += [
            f"<details><summary>{name.replace('_', ' ')} ({len(df)} rows; full table: "
            f"<code>{path.relative_to(csv_dir.parent)}</code>)</summary>",
            "", views.get(name) or default_view(df), "", "</details>", "",
        ]
    return "\n".join(lines)


def effect_text(key: str, v: float | None) -> str:
    """A stated or detectable effect in the claim's units: a correlation for claim 2, else pp."""
    if v is None or pd.isna(v):
        return "–"
    return f"r = ±{v:.2f}" if key == C.F2.key else C.pp(v).lstrip("+")  # no "|": it splits table cells


def backdoor_floor_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Backdoor ASR, its untriggered floor and ASR − floor per (role, attack, variant, target, defense),
    means over merge methods and seeds; baselines (``role = 'baseline'``) first. ``rows``:
    :func:`analysis.queries.backdoor_rows` with ``baselines=True``."""
    if rows.empty:
        return rows
    df = rows.assign(target=rows.target_task + ":" + rows.target_class.astype(str))
    keys = ["role", "attack", "variant", "target", "defense"]
    out = df.groupby(keys, as_index=False).agg(
        methods=("method", "nunique"), seeds=("seed", "nunique"), backdoor_asr=("backdoor_asr", "mean"),
        asr_floor=("asr_floor", "mean"), asr_minus_floor=("asr_minus_floor", "mean"))
    out["_d"] = out.defense != "none"
    out = out.sort_values(["role", "attack", "variant", "_d", "defense"], ascending=[False, True, True, True, True])
    return out.drop(columns="_d").reset_index(drop=True)
