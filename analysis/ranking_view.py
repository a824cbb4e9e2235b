"""The ranking both `mergesec rank` and the leaderboard show: one function, so the two can never disagree.

A metric names a column (or SQL expression) of one results view, whether higher is better, and the columns
that identify a setting. :func:`settings_table` reads one row per (method, setting) for a suite, with the
metric averaged over seeds (seeds are replicates of a setting, not extra settings), applying filters as
query parameters; :func:`ranked_table` feeds it to :func:`analysis.stats.rank_methods` (mean, paired
bootstrap 95% CI, rank, top group, compact letters). Metric definitions: docs/leaderboard.md.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmark.errors import MergesecError, UnknownNameError
from benchmark.store import Store


@dataclass(frozen=True)
class Metric:
    """A rankable metric: ``expr`` over ``source`` (a view of benchmark.store.schema), averaged over seeds."""

    name: str
    label: str
    source: str
    expr: str
    higher_is_better: bool
    settings: tuple[str, ...]
    percent: bool = True
    help: str = ""
    averaged: tuple[str, ...] = ()
    """Columns averaged over within a setting besides ``seed`` (filters on them still apply)."""


_TRANSFER_SETTINGS = ("task", "attack", "surrogate", "eps")
_MERGE_SETTINGS = ("task",)
_BACKDOOR_SETTINGS = ("attack", "variant", "defense", "adversary_task", "target_task", "target_class")

METRICS: dict[str, dict[str, Metric]] = {
    "transfer": {
        m.name: m
        for m in (
            Metric("relative_asr", "relative transfer ASR", "transfer_metrics", "relative_asr", False,
                   _TRANSFER_SETTINGS, help="transfer ASR on the merged model / white-box ASR on the surrogate"),
            Metric("asr_transfer", "transfer ASR (AASR)", "transfer_metrics", "asr_transfer", False,
                   _TRANSFER_SETTINGS,
                   help="share of the adversarial examples (crafted on the surrogate) that fool the merged model, "
                        "among samples both classify correctly; its mean over settings is the AASR"),
            Metric("aasr", "AASR (transfer ASR averaged over attacks)", "transfer_metrics", "asr_transfer", False,
                   ("task", "surrogate", "eps"), averaged=("attack",),
                   help="average attack success rate: transfer ASR averaged over the (selected) attacks, one "
                        "setting per task × surrogate × budget"),
            Metric("asr_transfer_all", "transfer ASR, all samples", "transfer_metrics", "asr_transfer_all", False,
                   _TRANSFER_SETTINGS, help="1 − the merged model's accuracy on all adversarial examples"),
            Metric("clean_acc", "clean accuracy", "merge_eval", "clean_acc", True, _MERGE_SETTINGS,
                   help="merged model's test accuracy per task (merge track)"),
            Metric("normalized_acc", "normalized accuracy", "merge_eval", "normalized_acc", True,
                   _MERGE_SETTINGS, help="merged accuracy / fine-tuned accuracy per task (merge track)"),
        )
    },
    "backdoor": {
        m.name: m
        for m in (
            Metric("backdoor_asr", "backdoor ASR", "backdoor_metrics", "backdoor_asr", False, _BACKDOOR_SETTINGS,
                   help="share of triggered non-target-class test images classified as the target class"),
            Metric("clean_acc", "clean accuracy", "backdoor_metrics", "clean_acc", True, _BACKDOOR_SETTINGS,
                   help="merged (backdoored) model's mean clean accuracy over the merged tasks"),
        )
    },
    "merge": {
        m.name: m
        for m in (
            Metric("clean_acc", "clean accuracy", "merge_eval", "clean_acc", True, _MERGE_SETTINGS),
            Metric("normalized_acc", "normalized accuracy", "merge_eval", "normalized_acc", True, _MERGE_SETTINGS),
        )
    },
}

DEFAULT_METRIC = {"transfer": "relative_asr", "backdoor": "backdoor_asr", "merge": "clean_acc"}

FILTERS: dict[str, tuple[str, ...]] = {
    "transfer": (*_TRANSFER_SETTINGS, "seed"),
    "backdoor": (*_BACKDOOR_SETTINGS, "seed"),
    "merge": ("task", "seed"),
}
"""Filterable columns per track. A filter the metric's view lacks (e.g. ``attack`` for clean accuracy) is
skipped and listed in the result's ``attrs["filters_ignored"]``."""

Filters = Mapping[str, Any]


def metric_spec(track: str, metric: str | None = None) -> Metric:
    """The :class:`Metric` called ``metric`` (default: the track's) of ``track``."""
    if track not in METRICS:
        raise UnknownNameError("track", track, list(METRICS))
    name = metric or DEFAULT_METRIC[track]
    if name not in METRICS[track]:
        raise UnknownNameError(f"{track} metric", name, list(METRICS[track]))
    return METRICS[track][name]


def _where(spec: Metric, track: str, suite_hash: str, filters: Filters | None) -> tuple[str, list, list[str]]:
    """WHERE clause and parameters: column names come from the FILTERS whitelist, values only as parameters."""
    clauses, params, ignored = ["suite_hash = ?"], [suite_hash], []
    if spec.source == "backdoor_metrics":
        clauses.append("role = 'attack'")  # the clean baselines are not attacks: never ranked (docs/schema.md)
    columns = set(spec.settings) | set(spec.averaged) | {"seed", "method"}
    for col, value in (filters or {}).items():
        if col not in FILTERS[track] and col != "method":
            raise MergesecError(
                f"cannot filter the {track} track by {col!r}; filter by one of {', '.join(FILTERS[track])}"
            )
        values = [value] if isinstance(value, str | int | float) else list(value or [])
        if not values:
            continue
        if col not in columns:
            ignored.append(col)
            continue
        clauses.append(f"list_contains(?, {col})")
        params.append(values)
    return " AND ".join(clauses), params, ignored


def settings_table(store: Store, suite_hash: str, track: str, metric: str | None = None,
                   filters: Filters | None = None) -> pd.DataFrame:
    """One row per (method, setting): ``method``, the setting columns, the metric (column named after it,
    averaged over seeds, and over ``Metric.averaged`` columns) and ``n_seeds`` (rows averaged). ``attrs``:
    ``metric, label, higher_is_better, settings, filters_ignored``."""
    spec = metric_spec(track, metric)
    where, params, ignored = _where(spec, track, suite_hash, filters)
    cols = ", ".join(spec.settings)
    df = store.read(
        f"SELECT method, {cols}, avg({spec.expr}) AS {spec.name}, count(*) AS n_seeds "
        f"FROM {spec.source} WHERE {where} GROUP BY method, {cols} ORDER BY method, {cols}",
        params,
    )
    df.attrs = {"metric": spec.name, "label": spec.label, "higher_is_better": spec.higher_is_better,
                "settings": list(spec.settings), "filters_ignored": ignored}
    return df


def ranked_table(
    store: Store,
    suite_hash: str,
    track: str,
    metric: str | None = None,
    filters: Filters | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Methods ranked by ``metric`` of ``track`` on ``suite_hash``'s results, best first.

    :func:`analysis.stats.rank_methods` over the complete settings of :func:`settings_table`: ``method,
    mean, ci_low, ci_high`` (paired percentile bootstrap, 95%), ``n_settings, rank, top_group, letters``.
    ``attrs`` add ``metric, label, higher_is_better, settings, filters_ignored, n_settings_dropped``.
    Raises :class:`analysis.stats.StatisticsError` when fewer than 2 methods or settings are complete.
    """
    from analysis.stats import StatisticsError, rank_methods  # pingouin is slow to import; load on use

    long = settings_table(store, suite_hash, track, metric, filters)
    if long.empty:
        raise StatisticsError(f"no {track} results for suite {suite_hash} with these filters")
    res = rank_methods(long, long.attrs["metric"], long.attrs["settings"], long.attrs["higher_is_better"],
                       n_boot=n_boot, seed=seed, alpha=alpha)
    res.attrs = {**long.attrs, **res.attrs}
    return res


def filter_values(store: Store, suite_hash: str, track: str, metric: str | None = None) -> dict[str, list]:
    """The distinct values of each filterable column present in the metric's view for ``suite_hash``."""
    spec = metric_spec(track, metric)
    out = {}
    for col in FILTERS[track]:
        if col in (*spec.settings, *spec.averaged, "seed"):
            vals = store.read(f"SELECT DISTINCT {col} AS v FROM {spec.source} WHERE suite_hash = ? ORDER BY v",
                              [suite_hash])
            out[col] = vals["v"].tolist()
    return out


def suite_hashes(store: Store) -> Sequence[str]:
    """Suite hashes with any stored result, most recently updated first."""
    df = store.read("SELECT suite_hash, max(finished_at) AS t FROM units_done GROUP BY suite_hash ORDER BY t DESC")
    return df["suite_hash"].tolist()
