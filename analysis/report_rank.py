"""`mergesec rank`: the leaderboard's ranking (analysis.ranking_view.ranking) with its Friedman test, the
task-level view and, optionally, the pairwise decisions behind the ranks, rendered as text, CSV, JSON or
markdown.

Direction: on a security leaderboard *better* means *less vulnerable*, so attack-success metrics
(``relative_asr``, ``asr_transfer``, ``aasr``, ``backdoor_asr``) rank **lower first** and accuracy metrics
(``clean_acc``, ``normalized_acc``) **higher first**; rank 1 is always the best. The direction comes from
:data:`analysis.ranking_view.METRICS`, which the leaderboard uses too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from analysis import queries as Q
from analysis.ranking_view import PER_TARGET_ONLY
from benchmark.errors import UnknownNameError
from benchmark.store import Store

FORMATS = ("table", "csv", "json", "markdown")
DESIGN_ATTRS = ("surrogate", "definition", "n_common", "n_common_min", "n_settings", "resampling", "mdd",
                "mdd_holm", "separable", "not_ranked")
PAIRWISE_NOTE = ("Pairwise decisions (z-test of the mean difference with its bootstrap SE, Holm over all pairs; "
                 "the ranks and letters above):")
RANK_NOTE = ("rank = 1 + number of methods significantly better (ties share a rank); methods sharing a letter "
             "do not differ (same pairwise decisions); CI = paired bootstrap 95%.")
TASK_NOTE = ("New tasks (tasks, then images within them, resampled; p_rank1 = share of resamples ranking the "
             "method first by mean):")
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
    friedman: pd.DataFrame | None
    pairwise: pd.DataFrame | None
    filters_ignored: list[str]
    task_view: pd.DataFrame | None = None


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
    """:func:`analysis.ranking_view.ranking` plus the Friedman test on the same per-setting values (and its
    pairwise decisions); raises ``StatisticsError`` (a MergesecError) when too few."""
    from analysis.ranking_view import metric_spec, ranking
    from analysis.stats import friedman_test

    ref = suite if isinstance(suite, Q.SuiteRef) else Q.resolve_suite(store, suite)
    spec = metric_spec(track, metric)
    filters = dict(filters or {})
    rk = ranking(store, ref.hash, track, spec.name, filters, n_boot=n_boot, seed=seed, alpha=alpha, task_level=True)
    settings = rk.table.attrs["settings"]
    fr = friedman_test(rk.long, spec.name, settings) if rk.table.n_settings.iat[0] >= 2 else None
    if rk.table.attrs.get("surrogate"):
        filters["surrogate"] = [rk.table.attrs["surrogate"]]
    task_view = rk.task_view.merge(rk.stability[["method", "p_rank1"]], on="method")
    return RankResult(
        ref,
        track,
        spec.name,
        spec.label,
        spec.higher_is_better,
        list(settings),
        filters,
        rk.table,
        fr,
        rk.pairs if pairwise else None,
        list(rk.table.attrs.get("filters_ignored", [])),
        task_view,
    )


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def friedman_line(r: RankResult) -> str:
    if r.friedman is None:
        return "Friedman test: not computed (it needs 2 or more complete settings; the CIs resample images)."
    fr = r.friedman.iloc[0]
    p = "p < 0.001" if fr.p_unc < 0.001 else f"p = {fr.p_unc:.3f}"
    dropped = f" ({int(fr.n_settings_dropped)} incomplete dropped)" if fr.n_settings_dropped else ""
    verdict = "the methods differ" if fr.p_unc < 0.05 else "no significant difference between the methods"
    return (
        f"Friedman test: chi2({int(fr.ddof1)}) = {fr.Q:.2f}, {p}, Kendall's W = {fr.W:.2f} over "
        f"{int(fr.n_settings)} complete settings{dropped}: {verdict} (alpha 0.05; settings of one task are "
        "not independent, so read it as descriptive)."
    )


def design_lines(r: RankResult) -> str:
    """What was compared and resampled, and what the design can detect."""
    a = r.ranking.attrs
    lines = [] if a.get("definition") != PER_TARGET_ONLY else [f"compared on: {PER_TARGET_ONLY}"]
    if a.get("n_common") is not None:
        lines.append(f"compared on: {a['definition']}; {a['n_common']} (setting, image) pairs over "
                     f"{a['n_settings']} settings (smallest setting {a['n_common_min']})"
                     + ("; per_target = each model on its own counted set (secondary)"
                        if "per_target" in r.ranking else ""))
    for method, why in (a.get("not_ranked") or {}).items():
        lines.append(f"not ranked: {method}: {why} (utility gate: a merge at chance would empty the common set)")
    lines.append(f"CI resamples: {a['resampling']}")
    lines.append(f"minimum detectable difference (80% power, alpha 0.05): {100 * a['mdd']:.1f} pp "
                 f"(median over pairs; {100 * a['mdd_holm']:.1f} pp at Holm's first step)"
                 + ("" if a["separable"] else "; no pair of methods is separable with these data"))
    return "\n".join(lines)


def header(r: RankResult) -> str:
    direction = "higher is better" if r.higher_is_better else "lower is better (less vulnerable)"
    filt = ", ".join(f"{k}={','.join(map(str, v))}" for k, v in r.filters.items()) or "none"
    ign = f" (not applicable, ignored: {', '.join(r.filters_ignored)})" if r.filters_ignored else ""
    return (
        f"suite {r.suite.name} ({r.suite.hash}) | track {r.track} | metric {r.metric}: {r.label}, {direction}"
        f"\nsettings: {' x '.join(r.settings)} (seeds averaged) | filters: {filt}{ign}"
        + (f"\nsurrogate: {r.ranking.attrs['surrogate']} (surrogates are ranked separately, never pooled)"
           if r.ranking.attrs.get("surrogate") else "")
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
            "friedman": _records(r.friedman)[0] if r.friedman is not None else None,
            "design": {k: r.ranking.attrs.get(k) for k in DESIGN_ATTRS},
            "task_view": _records(r.task_view) if r.task_view is not None else None,
        }
        if r.pairwise is not None:
            doc["pairwise"] = _records(r.pairwise)
        return json.dumps(doc, indent=1), ""
    if fmt == "csv":
        text = r.ranking.to_csv(index=False)
        if r.pairwise is not None:
            text += "\n" + r.pairwise.to_csv(index=False)
        return text, header(r) + "\n" + design_lines(r) + "\n" + friedman_line(r) + "\n"
    ranking = r.ranking
    if fmt == "markdown":
        parts = [
            "  \n".join(f"**{line}**" for line in header(r).splitlines()),
            "",
            ranking.to_markdown(index=False, floatfmt=".4f"),
            "",
            RANK_NOTE,
            "  \n".join(design_lines(r).splitlines()),
            "",
            friedman_line(r),
            "",
            TASK_NOTE,
            "",
            r.task_view.to_markdown(index=False, floatfmt=".4f"),
        ]
        if r.pairwise is not None:
            parts += ["", PAIRWISE_NOTE, "", r.pairwise.to_markdown(index=False, floatfmt=".4g")]
        return "\n".join(parts) + "\n", ""
    with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_columns", 50):
        parts = [
            header(r),
            "",
            ranking.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            "",
            RANK_NOTE,
            design_lines(r),
            friedman_line(r),
            "",
            TASK_NOTE,
            r.task_view.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        ]
        if r.pairwise is not None:
            parts += ["", PAIRWISE_NOTE, r.pairwise.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
    return "\n".join(parts) + "\n", ""
