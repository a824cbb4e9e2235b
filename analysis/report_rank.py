"""`mergesec rank`: the leaderboard's ranking (analysis.ranking_view.ranked_table) with its Friedman test and,
optionally, the Holm-corrected pairwise Wilcoxon table, rendered as text, CSV, JSON or markdown.

Direction: on a security leaderboard *better* means *less vulnerable*, so attack-success metrics
(``relative_asr``, ``asr_transfer``, ``aasr``, ``backdoor_asr``) rank **lower first** and accuracy metrics
(``clean_acc``, ``normalized_acc``) **higher first**; rank 1 is always the best. The direction comes from
:data:`analysis.ranking_view.METRICS`, which the leaderboard uses too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import queries as Q
from benchmark.errors import UnknownNameError
from benchmark.store import Store

FORMATS = ("table", "csv", "json", "markdown")
DEFAULT_DEFENSE = "none"
ALL = ("all", "any", "*")


@dataclass
class RankResult:
    """The ranking, its Friedman test, the optional pairwise table, and what was ranked."""

    suite: Q.SuiteRef
    track: str
    metric: str
    label: str
    higher_is_better: bool
    settings: list[str]
    filters: dict[str, list]
    ranking: pd.DataFrame
    friedman: pd.DataFrame
    pairwise: pd.DataFrame | None
    filters_ignored: list[str]


def parse_filters(track: str, options: Mapping[str, str | None]) -> dict[str, list]:
    """CLI filter options (comma-separated values; ``all`` = no filter) to ranking_view filters. The backdoor
    track filters ``defense`` to ``none`` unless told otherwise (a defended model is another leaderboard)."""
    out: dict[str, list] = {}
    for col, raw in options.items():
        if raw is None:
            continue
        values = [v.strip() for v in str(raw).split(",") if v.strip()]
        if any(v.lower() in ALL for v in values):
            out[col] = []
            continue
        out[col] = [
            int(v) if col in ("seed", "target_class") and v.lstrip("-").isdigit() else v for v in values
        ]
    if track == "backdoor" and "defense" not in out:
        out["defense"] = [DEFAULT_DEFENSE]
    return {k: v for k, v in out.items() if v}


def rank_summary(
    store: Store,
    suite: str | Q.SuiteRef,
    track: str,
    metric: str | None = None,
    filters: Mapping[str, Sequence] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    pairwise: bool = False,
) -> RankResult:
    """:func:`analysis.ranking_view.ranked_table` plus the Friedman test (and pairwise Wilcoxon tests) on the
    same seed-averaged complete settings; raises ``StatisticsError`` (a MergesecError) when too few."""
    from analysis.ranking_view import metric_spec, ranked_table, settings_table
    from analysis.stats import friedman_test, pairwise_wilcoxon

    ref = suite if isinstance(suite, Q.SuiteRef) else Q.resolve_suite(store, suite)
    spec = metric_spec(track, metric)
    filters = dict(filters or {})
    ranking = ranked_table(store, ref.hash, track, spec.name, filters, n_boot=n_boot, seed=seed, alpha=alpha)
    long = settings_table(store, ref.hash, track, spec.name, filters)
    settings = long.attrs["settings"]
    fr = friedman_test(long, spec.name, settings)
    pw = pairwise_wilcoxon(long, spec.name, settings) if pairwise else None
    return RankResult(
        ref,
        track,
        spec.name,
        spec.label,
        spec.higher_is_better,
        list(settings),
        filters,
        ranking,
        fr,
        pw,
        list(ranking.attrs.get("filters_ignored", [])),
    )


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def friedman_line(r: RankResult) -> str:
    fr = r.friedman.iloc[0]
    p = "p < 0.001" if fr.p_unc < 0.001 else f"p = {fr.p_unc:.3f}"
    dropped = f" ({int(fr.n_settings_dropped)} incomplete dropped)" if fr.n_settings_dropped else ""
    verdict = "the methods differ" if fr.p_unc < 0.05 else "no significant difference between the methods"
    return (
        f"Friedman test: chi2({int(fr.ddof1)}) = {fr.Q:.2f}, {p}, Kendall's W = {fr.W:.2f} over "
        f"{int(fr.n_settings)} complete settings{dropped}: {verdict} (alpha 0.05)."
    )


def header(r: RankResult) -> str:
    direction = "higher is better" if r.higher_is_better else "lower is better (less vulnerable)"
    filt = ", ".join(f"{k}={','.join(map(str, v))}" for k, v in r.filters.items()) or "none"
    ign = f" (not applicable, ignored: {', '.join(r.filters_ignored)})" if r.filters_ignored else ""
    return (
        f"suite {r.suite.name} ({r.suite.hash}) | track {r.track} | metric {r.metric}: {r.label}, {direction}"
        f"\nsettings: {' x '.join(r.settings)} (seeds averaged) | filters: {filt}{ign}"
        + (f"\nnote: {r.suite.note}" if r.suite.note else "")
    )


def render(r: RankResult, fmt: str) -> tuple[str, str]:
    """(stdout text, stderr text). JSON is one object; CSV is the ranking (then, after a blank line, the
    pairwise table) with the header and Friedman line on stderr so stdout stays machine-readable."""
    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, list(FORMATS))
    if fmt == "json":
        doc = {
            "suite": r.suite.name,
            "suite_hash": r.suite.hash,
            "note": r.suite.note,
            "track": r.track,
            "metric": r.metric,
            "label": r.label,
            "higher_is_better": r.higher_is_better,
            "settings": r.settings,
            "filters": r.filters,
            "filters_ignored": r.filters_ignored,
            "ranking": _records(r.ranking),
            "friedman": _records(r.friedman)[0],
        }
        if r.pairwise is not None:
            doc["pairwise"] = _records(r.pairwise)
        return json.dumps(doc, indent=1), ""
    if fmt == "csv":
        text = r.ranking.to_csv(index=False)
        if r.pairwise is not None:
            text += "\n" + r.pairwise.to_csv(index=False)
        return text, header(r) + "\n" + friedman_line(r) + "\n"
    ranking = r.ranking.assign(top_group=np.where(r.ranking.top_group, "*", ""))
    if fmt == "markdown":
        parts = [
            "  \n".join(f"**{line}**" for line in header(r).splitlines()),
            "",
            ranking.to_markdown(index=False, floatfmt=".4f"),
            "",
            friedman_line(r),
        ]
        if r.pairwise is not None:
            parts += [
                "",
                "Pairwise Wilcoxon signed-rank tests, Holm-corrected (RBC > 0: A tends to exceed B):",
                "",
                r.pairwise.to_markdown(index=False, floatfmt=".4g"),
            ]
        return "\n".join(parts) + "\n", ""
    with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_columns", 50):
        parts = [
            header(r),
            "",
            ranking.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            "",
            "rank 1 = best; top_group * = not significantly worse than the best; methods sharing a letter do "
            "not differ (Wilcoxon signed-rank, Holm); CI = paired bootstrap 95%.",
            friedman_line(r),
        ]
        if r.pairwise is not None:
            parts += [
                "",
                "Pairwise Wilcoxon signed-rank tests, Holm-corrected (RBC > 0: A tends to exceed B):",
                r.pairwise.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            ]
    return "\n".join(parts) + "\n", ""
