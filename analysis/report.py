"""`mergesec analyze`: test the published claims on whatever the database holds and write a report.

:func:`build_report` reads the suite's results (analysis.queries), runs every finding (analysis.findings),
draws the figures (analysis.figures) and writes, into one folder:

- ``report.md``: summary of verdicts, the transfer ranking, one section per claim (claim, test, numbers,
  verdict, tables, figure), and notes on reading it;
- ``findings.json``: the same verdicts and numbers, machine-readable;
- ``*.png``: the figures; ``tables/*.csv``: every table in full.

A section whose data is absent says so ("No data: ...") instead of failing. docs/analysis.md explains it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import findings as F
from analysis import queries as Q
from benchmark.errors import MergesecError
from benchmark.store import Store

ASR_METRICS = ("relative_asr", "asr_transfer", "aasr")
FIGURES = {
    "heatmap": "transfer_heatmap.png",
    "cd": "cd_diagram.png",
    "scatter": "accuracy_vs_vulnerability.png",
    "backdoor": "backdoor_asr.png",
}


@dataclass
class Report:
    """What :func:`build_report` wrote: the folder, the findings, the figure files and the markdown."""

    out_dir: Path
    suite: Q.SuiteRef
    findings: list[F.Finding]
    figures: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""
    notes: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, str]:
        return {f.key: f.verdict for f in self.findings}

    def finding(self, key: str) -> F.Finding:
        return next(f for f in self.findings if f.key == key)


# -- markdown helpers --------------------------------------------------------------------------------


def _fmt_table(df: pd.DataFrame, pct_cols=(), pp_cols=(), p_cols=(), max_rows: int | None = 40) -> str:
    """A DataFrame as a markdown table: rates in %, differences in pp, p-values as text, others 3 decimals."""
    if df is None or df.empty:
        return "_(empty)_"
    shown = df.head(max_rows).copy() if max_rows else df.copy()
    for c in shown.columns:
        if c in pct_cols:
            shown[c] = [F.pct(v) for v in shown[c]]
        elif c in pp_cols:
            shown[c] = [F.pp(v) for v in shown[c]]
        elif c in p_cols:
            shown[c] = [F.fmt_p(v) for v in shown[c]]
        elif pd.api.types.is_bool_dtype(shown[c]):
            shown[c] = np.where(shown[c], "yes", "")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = [("–" if pd.isna(v) else f"{v:.3f}") for v in shown[c]]
    text = shown.to_markdown(index=False, disable_numparse=True)
    if max_rows and len(df) > max_rows:
        text += f"\n\n_… {len(df) - max_rows} more rows in the CSV._"
    return text


_P = (
    "p_val",
    "p_unc",
    "p_corr",
    "p_holm",
    "p_wilcoxon",
    "p_ttest",
    "asr_p",
    "asr_p_holm",
    "acc_p",
    "acc_p_holm",
    "friedman_p",
)


def _section(f: F.Finding, number: str, views: dict[str, str], csv_dir: Path) -> str:
    lines = [
        f"## {number}. {f.title}",
        "",
        f"**Verdict: {f.verdict}**",
        "",
        f"**Claim.** {f.claim}",
        "",
        f"**Test.** {f.test}",
        "",
        f"**Result.** {f.result}",
        "",
    ]
    for note in f.notes:
        lines += [f"> {note}", ""]
    for fig in f.figures:
        lines += [f"![{fig}]({fig})", ""]
    for name, df in f.tables.items():
        if df is None or df.empty:
            continue
        path = csv_dir / f"{f.key}__{name}.csv"
        df.to_csv(path, index=False)
        rel = path.relative_to(csv_dir.parent)
        lines += [
            f"<details><summary>{name.replace('_', ' ')} ({len(df)} rows; full table: "
            f"<code>{rel}</code>)</summary>",
            "",
            views.get(name) or _default_view(df),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def _default_view(df: pd.DataFrame) -> str:
    rate_like = [
        c
        for c in df.columns
        if any(k in c for k in ("asr", "acc", "mean", "ci_low", "ci_high", "median"))
        and pd.api.types.is_float_dtype(df[c])
        and not c.startswith(("asr_W", "acc_W", "asr_RBC", "acc_RBC", "asr_p", "acc_p"))
    ]
    diff_like = [
        c
        for c in df.columns
        if ("diff" in c or "reduction" in c or "cost" in c or c == "acc_gap")
        and pd.api.types.is_float_dtype(df[c])
    ]
    return _fmt_table(
        df.drop(columns=[c for c in ("alternative",) if c in df]),
        pct_cols=[c for c in rate_like if c not in diff_like],
        pp_cols=diff_like,
        p_cols=[c for c in df.columns if c in _P],
    )


# -- the report --------------------------------------------------------------------------------


def _task_order(ref: Q.SuiteRef) -> list[str] | None:
    try:
        from benchmark.suites import load_suite

        s = load_suite(ref.name)
        return list(s.task_names) if s.hash == ref.hash else None
    except MergesecError:
        return None


def backdoor_bar_table(rows: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean backdoor ASR with a bootstrap 95% CI per (attack/variant, method, defense), seeds averaged."""
    setting = ["attack", "variant", "method", "defense", "adversary_task", "target_task", "target_class"]
    avg = rows.groupby(setting, as_index=False).backdoor_asr.mean()
    avg["attack_variant"] = avg.attack + "/" + avg.variant
    out = []
    for (av, m, d), g in avg.groupby(["attack_variant", "method", "defense"]):
        lo, hi = F._boot_ci(g.backdoor_asr.to_numpy(), n_boot, seed)
        out.append(
            {
                "attack_variant": av,
                "method": m,
                "defense": d,
                "n": len(g),
                "backdoor_asr": g.backdoor_asr.mean(),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(out)


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


def _safe(spec: tuple[str, str, str], fn, *args) -> F.Finding:
    """Run one finding; data it cannot handle gives an "inconclusive (analysis error)" section, no crash."""
    try:
        return fn(*args)
    except Exception as e:  # one odd table must not take the whole report down
        key, title, claim = spec
        msg = f"{type(e).__name__}: {e}"
        return F.Finding(
            key,
            title,
            claim,
            "(not run)",
            "inconclusive (analysis error)",
            result=f"The analysis failed on these data: {msg}",
            notes=[msg],
        )


def build_report(
    store: Store,
    suite: str | Q.SuiteRef,
    out_dir: Path | str,
    *,
    metric: str = "relative_asr",
    surrogate: str | None = F.FINETUNED,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    tol: float = 0.01,
    figures: bool = True,
) -> Report:
    """Run every finding on ``suite``'s results in ``store`` and write the report into ``out_dir``.

    ``metric`` (an ASR metric of the transfer track) is the vulnerability measure of claims 2–4 and the
    figures; claim 1 always uses relative ASR, claim 5 transfer ASR. ``surrogate`` filters the transfer
    settings of claims 1–4 (``None`` or ``"all"``: every surrogate; absent from the data: every surrogate,
    with a note). ``tol``: the "stayed" band of claim 2's case count. ``figures=False`` skips the PNGs.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from analysis import figures as G
    from analysis.ranking_view import metric_spec, ranked_table
    from analysis.stats import StatisticsError, friedman_test, nemenyi_critical_difference

    if metric not in ASR_METRICS:
        raise MergesecError(
            f"--metric {metric!r} is not a transfer ASR metric; use one of {', '.join(ASR_METRICS)}"
        )
    ref = suite if isinstance(suite, Q.SuiteRef) else Q.resolve_suite(store, suite)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in FIGURES.values():
        (out / name).unlink(missing_ok=True)  # never leave a stale figure from an earlier run
    csv_dir = out / "tables"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir()
    label = metric_spec("transfer", metric).label
    notes: list[str] = []
    rows = {
        v: Q.count_rows(store, v, ref.hash) for v in ("merge_eval", "transfer_metrics", "backdoor_metrics")
    }
    if ref.note:
        notes.append(ref.note[0].upper() + ref.note[1:] + ".")
    if ref.other_hashes:
        notes.append(
            f"The database also holds results of {len(ref.other_hashes)} other version(s) of suite "
            f"`{ref.name}` ({', '.join(ref.other_hashes)}); they are not used."
        )

    present = Q.surrogates(store, ref.hash)
    sur = None if surrogate in (None, "all") else surrogate
    if sur and present and sur not in present:
        notes.append(
            f"No transfer results with surrogate `{sur}` (present: {', '.join(present)}); claims 1–4 "
            "use every surrogate."
        )
        sur = None
    sur_text = f"surrogate `{sur}`" if sur else "every surrogate (a setting column)"
    long = Q.transfer_long(store, ref.hash, metric, sur)
    long_rel = long if metric == "relative_asr" else Q.transfer_long(store, ref.hash, "relative_asr", sur)
    accuracy = Q.merge_accuracy(store, ref.hash)
    both = {m: Q.transfer_long(store, ref.hash, m) for m in ("asr_transfer", "relative_asr")}
    bd = Q.backdoor_rows(store, ref.hash)

    draw = figures
    figures: dict[str, Path] = {}
    fs = [
        _safe(F.F1, F.relative_asr_above, long_rel, 0.95, alpha, n_boot, seed),
        _safe(F.F2, F.stronger_more_vulnerable, long, accuracy, metric, alpha, tol),
        _safe(F.F3, F.surgery_more_vulnerable, long, metric, alpha, n_boot, seed),
        _safe(F.F4, F.weight_averaging_most_vulnerable, long, metric, alpha, n_boot, seed),
        _safe(F.F5, F.pretrained_surrogate_transfers_less, both, alpha, n_boot, seed),
        _safe(F.F6, F.backdoor_asr_after_merging, bd, alpha, n_boot, seed),
        _safe(F.F7, F.defense_effects, bd, alpha, n_boot, seed),
    ]
    by_key = {f.key: f for f in fs}

    # transfer ranking: the leaderboard's table (ranked_table), its Friedman test and CD diagram
    ranking_md = "No data: no transfer results; run `mergesec run --track transfer`."
    filters = {"surrogate": [sur]} if sur else None
    if not long.empty:
        try:
            ranked = ranked_table(
                store, ref.hash, "transfer", metric, filters, n_boot=n_boot, seed=seed, alpha=alpha
            )
            fr = friedman_test(long, metric, F.TRANSFER_SETTING).iloc[0]
            cmd = f"mergesec rank --suite {ref.name} --track transfer --metric {metric}" + (
                f" --surrogate {sur}" if sur else ""
            )
            ranking_md = "\n".join(
                [
                    f"Methods ranked by mean {label} over {int(ranked.n_settings.iat[0])} complete settings "
                    f"({sur_text}, seeds averaged); **rank 1 = least vulnerable** (lower ASR is better on a "
                    f"security leaderboard). `top_group` = not significantly more vulnerable than the best; "
                    f"methods sharing a "
                    f"letter do not differ (Wilcoxon, Holm). Same table as `{cmd}` and the leaderboard.",
                    "",
                    _fmt_table(ranked, pct_cols=["mean", "ci_low", "ci_high"]),
                    "",
                    f"Friedman test: χ²({int(fr.ddof1)}) = {fr.Q:.2f}, {F.peq(fr.p_unc)}, Kendall's W = "
                    f"{fr.W:.2f} over {int(fr.n_settings)} settings"
                    + (f" ({int(fr.n_settings_dropped)} incomplete dropped)" if fr.n_settings_dropped else "")
                    + ".",
                ]
            )
            ranked.to_csv(csv_dir / "transfer_ranking.csv", index=False)
            ranks = nemenyi_critical_difference(
                long, metric, F.TRANSFER_SETTING, higher_is_better=False, alpha=alpha
            )
            cd_text = (
                f"Nemenyi critical difference: CD = {ranks.cd.iat[0]:.2f} average ranks "
                "(average ranks in tables/transfer_nemenyi.csv)."
            )
            ranks.to_csv(csv_dir / "transfer_nemenyi.csv", index=False)
            if draw:
                fig = G.cd(ranks, f"{label}: average rank (1 = least vulnerable)")
                figures["cd"] = G.save(fig, out / FIGURES["cd"])
                cd_text = (
                    f"![critical-difference diagram]({FIGURES['cd']})\n\nCritical-difference diagram "
                    f"(Nemenyi, CD = {ranks.cd.iat[0]:.2f}): least vulnerable on the left; methods joined "
                    "by a bar do not differ significantly. Read it only when the Friedman test rejects."
                )
            ranking_md += "\n\n" + cd_text
        except StatisticsError as e:
            ranking_md = f"No ranking: {e}"

        if draw:
            figures["heatmap"] = G.save(
                G.heatmap(long, metric, label, _task_order(ref)), out / FIGURES["heatmap"]
            )
            by_key[F.F3[0]].figures.append(FIGURES["heatmap"])
    f2 = by_key[F.F2[0]]
    if draw and f2.verdict != F.NO_DATA and len(f2.tables["per_method"]) >= 2:
        fig = G.accuracy_vs_vulnerability(f2.tables["per_method"], metric, label, f2.tables["correlation"])
        figures["scatter"] = G.save(fig, out / FIGURES["scatter"])
        f2.figures.append(FIGURES["scatter"])
    if draw and not bd.empty:
        figures["backdoor"] = G.save(
            G.backdoor_bars(backdoor_bar_table(bd, n_boot, seed)), out / FIGURES["backdoor"]
        )
        by_key[F.F6[0]].figures.append(FIGURES["backdoor"])

    floor = backdoor_floor_table(Q.backdoor_rows(store, ref.hash, baselines=True))
    if not floor.empty:
        floor.to_csv(csv_dir / "backdoor_floor.csv", index=False)
    backdoor_md = _fmt_table(floor, pct_cols=["backdoor_asr", "asr_floor"], pp_cols=["asr_minus_floor"],
                             max_rows=None)
    settings = _Settings(metric, label, sur_text, alpha, n_boot, seed, tol)
    md = _markdown(ref, store, fs, ranking_md, rows, notes, settings, csv_dir, "heatmap" in figures, backdoor_md)
    (out / "report.md").write_text(md)
    (out / "findings.json").write_text(
        json.dumps(
            {
                "suite": ref.name,
                "suite_hash": ref.hash,
                "metric": metric,
                "surrogate": sur,
                "alpha": alpha,
                "n_boot": n_boot,
                "seed": seed,
                "rows": rows,
                "notes": notes,
                "findings": [f.as_dict() for f in fs],
                "figures": {k: v.name for k, v in figures.items()},
            },
            indent=1,
            default=str,
        )
    )
    return Report(out, ref, fs, figures, md, notes)


NUMBERS = {
    "relative_asr_above_95": "1",
    "stronger_more_vulnerable": "2",
    "surgery_more_vulnerable": "3",
    "weight_averaging_most_vulnerable": "4",
    "pretrained_surrogate_transfers_less": "5",
    "backdoor_survives_merging": "6a",
    "defenses_reduce_asr": "6b",
}


def _views(f: F.Finding, metric: str) -> dict[str, str]:
    """Compact markdown views of the larger tables (the CSVs hold everything)."""
    t = f.tables
    views = {}
    if f.key == "stronger_more_vulnerable" and "pairs" in t and not t["pairs"].empty:
        sig = t["pairs"][t["pairs"].p_holm < 0.05]
        views["pairs"] = (
            "Significant pairs only (Holm):\n\n"
            + _fmt_table(
                sig[["stronger", "weaker", "acc_gap", "mean_diff", "W_val", "p_holm", "RBC", "direction"]],
                pp_cols=["acc_gap", "mean_diff"],
                p_cols=["p_holm"],
            )
            if not sig.empty
            else "No pair differs significantly after Holm correction."
        )
        views["cases"] = _fmt_table(
            t["cases"]
            .pivot_table(
                index=["stronger", "weaker"], columns="outcome", values="diff", aggfunc="count", fill_value=0
            )
            .reset_index(),
            max_rows=30,
        )
        views["per_method"] = _fmt_table(t["per_method"], pct_cols=["clean_acc", f"mean_{metric}"])
    if f.key == "surgery_more_vulnerable" and "per_setting" in t:
        views["per_setting"] = _fmt_table(
            t["per_setting"], pct_cols=list(t["per_setting"].columns[-3:-1]), pp_cols=["diff"], max_rows=20
        )
    return views


@dataclass(frozen=True)
class _Settings:
    """The analysis settings the report states: the vulnerability metric (and its label), the surrogates
    used, α, the bootstrap's resamples and seed, and claim 2's "stayed" band."""

    metric: str
    label: str
    surrogate_text: str
    alpha: float
    n_boot: int
    seed: int
    tol: float


def _markdown(ref, store, fs, ranking_md, rows, notes, s: _Settings, csv_dir: Path, has_heatmap: bool,
              backdoor_md: str = "") -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = pd.DataFrame(
        [{"#": NUMBERS.get(f.key, "?"), "claim": f.title, "verdict": f"**{f.verdict}**"} for f in fs]
    )
    head = [
        f"# mergesec findings: suite `{ref.name}` ({ref.hash})",
        "",
        f"Generated {when} from `{store.path}` by `mergesec analyze`. Significance level α = {s.alpha}; "
        f"bootstrap "
        f"{s.n_boot} resamples (seed {s.seed}). Transfer vulnerability measure for claims 2–4: **{s.label}** "
        f"(`{s.metric}`), {s.surrogate_text}. A transfer setting is (task, attack) with seeds averaged. "
        "Definitions, case "
        "counts and how to read this report: docs/analysis.md.",
        "",
        f"Rows stored: merge {rows['merge_eval']}, transfer {rows['transfer_metrics']}, backdoor "
        f"{rows['backdoor_metrics']}.",
        "",
    ]
    head += [f"> {n}" for n in notes] + ([""] if notes else [])
    head += [
        "## Summary",
        "",
        summary.to_markdown(index=False),
        "",
        "Verdicts: **supported** = the test rejects at α in the claimed direction; **not supported** = it "
        "could have but did not (or rejected the other way); **inconclusive (n too small)** = with this many "
        "observations no outcome could reach p < α; **no data** = the results the claim needs are not "
        "stored.",
        "",
        "## Transfer ranking",
        "",
        ranking_md,
        "",
    ]
    if has_heatmap:
        head += [
            f"![{s.label} heatmap]({FIGURES['heatmap']})",
            "",
            f"{s.label} per merging method and task (mean over attacks), most vulnerable method on top.",
            "",
        ]
    if backdoor_md != "_(empty)_":
        head += [
            "## Backdoor ASR against its floor",
            "",
            "`asr_floor`: the target-class rate on the same images without the trigger; `asr_minus_floor` is "
            "what the trigger adds. Means over merge methods and seeds; `baseline` rows (every contributor "
            "benign) are no attack and enter no claim (docs/backdoor.md). CSV: `tables/backdoor_floor.csv`.",
            "",
            backdoor_md,
            "",
        ]
    body = [_section(f, NUMBERS.get(f.key, "?"), _views(f, s.metric), csv_dir) for f in fs]
    tail = [
        "## Reading this report",
        "",
        "- Every p-value is two-sided unless the test says otherwise (claim 1 is one-sided: above 95%).",
        "- Effect sizes: RBC (matched-pairs rank-biserial, −1 to 1), CLES (P(A > B)), Cohen's d, "
        "Kendall's W, "
        "Spearman ρ / Kendall τ.",
        "- Settings share models and adversarial examples, so p-values describe these settings, not a "
        "population of tasks; see docs/statistics.md.",
        f"- Claim 2's case count: one case per (stronger/weaker method pair, task), the task's {s.metric} "
        f"averaged over attacks; 'stayed' = |Δ| ≤ {100 * s.tol:.1f} percentage points.",
        "",
    ]
    return "\n".join(head + body + tail)
