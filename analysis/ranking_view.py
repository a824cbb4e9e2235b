"""The ranking both `mergesec rank` and the leaderboard show: one function, so the two can never disagree.

A metric names a column (or SQL expression) of one results view, whether higher is better, and the columns
that identify a setting. :func:`settings_table` reads one row per (method, setting) for a suite, with the
metric averaged over seeds (seeds are replicates of a setting, not extra settings), applying filters as
query parameters; :func:`ranked_table` ranks the methods (mean, paired bootstrap 95% CI, CI-aware rank,
compact letters). Transfer attack metrics are recomputed on the examples every ranked method and the
surrogate classify correctly (:mod:`analysis.common_set`), one surrogate at a time. Metric definitions:
docs/leaderboard.md; inference design: docs/statistics.md.
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
            Metric("aasr", "AASR (attacks averaged)", "transfer_metrics", "asr_transfer", False,
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
    filters = dict(filters or {})
    roles = filters.pop("role", None) or ["attack"]
    if spec.source == "backdoor_metrics":
        # the clean baselines are not attacks: never ranked (docs/schema.md); the claims ask for them by role
        clauses.append("list_contains(?, role)")
        params.append([roles] if isinstance(roles, str) else list(roles))
    columns = set(spec.settings) | set(spec.averaged) | {"seed", "method"}
    for col, value in filters.items():
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
    averaged over seeds, and over ``Metric.averaged`` columns; NULLs skipped, NaN when all are NULL) and
    ``n_seeds`` (non-NULL values averaged). ``attrs``:
    ``metric, label, higher_is_better, settings, filters_ignored``."""
    spec = metric_spec(track, metric)
    where, params, ignored = _where(spec, track, suite_hash, filters)
    cols = ", ".join(spec.settings)
    df = store.read(
        f"SELECT method, {cols}, avg({spec.expr}) AS {spec.name}, count({spec.expr}) AS n_seeds "
        f"FROM {spec.source} WHERE {where} GROUP BY method, {cols} ORDER BY method, {cols}",
        params,
    )
    df.attrs = {"metric": spec.name, "label": spec.label, "higher_is_better": spec.higher_is_better,
                "settings": list(spec.settings), "filters_ignored": ignored}
    return df


PER_TARGET_ONLY = ("per target (each model on its own counted set): no per-example rows are stored for "
                   "these results, so no common set")
DEFAULT_SURROGATE = "finetuned"
"""The surrogate a transfer ranking uses unless told: surrogates are never pooled (their rankings disagree)."""


@dataclass
class Ranking:
    """A ranking and everything computed on the same values: ``table`` (:func:`ranked_table`), ``pairs``
    (:func:`analysis.stats.decisions.pairwise_from_boot`: the decisions behind rank, letters and the CD
    diagram), ``long`` (the per-setting values, for Friedman/Kendall's W and average ranks), ``task_view``
    (the same table with tasks resampled too: "new tasks"), ``stability`` (rank-by-mean stability over
    that task-level bootstrap) and ``task_pairs`` (the task-level view's pairwise decisions); the last
    three are None when :func:`ranking` was called with ``task_level=False``."""

    table: pd.DataFrame
    pairs: pd.DataFrame
    long: pd.DataFrame
    task_view: pd.DataFrame | None
    stability: pd.DataFrame | None
    task_pairs: pd.DataFrame | None


def _transfer_filters(spec: Metric, filters: Filters | None) -> tuple[dict, str]:
    """The filters with exactly one surrogate (default :data:`DEFAULT_SURROGATE`) and that surrogate."""
    out = dict(filters or {})
    raw = out.get("surrogate")
    chosen = [raw] if isinstance(raw, str) else list(raw or [])
    if len(chosen) > 1:
        raise MergesecError(
            f"a transfer ranking uses one surrogate, got {chosen}: surrogates are never pooled (their rankings "
            "disagree); rank each one separately (--surrogate finetuned, then --surrogate pretrained)"
        )
    out["surrogate"] = chosen or [DEFAULT_SURROGATE]
    return out, out["surrogate"][0]


def _check_methods(store: Store, spec: Metric, suite_hash: str, methods: str | Sequence[str] | None) -> None:
    """Raise :class:`UnknownNameError` for a method filter naming a method with no results in the view."""
    wanted = [methods] if isinstance(methods, str) else list(methods or [])
    if not wanted:
        return
    stored = store.read(f"SELECT DISTINCT method FROM {spec.source} WHERE suite_hash = ?", [suite_hash]).method
    for name in wanted:
        if name not in set(stored):
            raise UnknownNameError("method", name, stored.tolist())


def ranking(
    store: Store, suite_hash: str, track: str, metric: str | None = None, filters: Filters | None = None, *,
    n_boot: int = 2000, seed: int = 0, alpha: float = 0.05, min_common: int | None = None,
    task_level: bool = True,
) -> Ranking:
    """The ranking of :func:`ranked_table` with its pairwise decisions, per-setting values, task-level view
    and rank stability (see :class:`Ranking`). Transfer attack metrics are computed on common examples
    (:mod:`analysis.common_set`) with the image bootstrap; other metrics on :func:`settings_table` with
    tasks (or settings, where a setting has no task) resampled."""
    from analysis import common_set as C
    from analysis import queries as Q
    from analysis.chance_gate import apply_gate, describe
    from analysis.stats import StatisticsError, paired_table, rank_from_boot, stability_from_boot
    from analysis.stats.ranking import settings_boot

    spec = metric_spec(track, metric)
    surrogate = None
    if track == "transfer" and spec.source == "transfer_metrics":
        filters, surrogate = _transfer_filters(spec, filters)
    _check_methods(store, spec, suite_hash, (filters or {}).get("method"))
    per_target = settings_table(store, suite_hash, track, spec.name, filters)
    if per_target.empty:
        raise StatisticsError(f"no {track} results for suite {suite_hash} with these filters")
    attrs = dict(per_target.attrs)
    settings, hib = attrs["settings"], attrs["higher_is_better"]
    cs = None
    where, params, _ = _where(spec, track, suite_hash, filters)
    min_common = C.MIN_COMMON if min_common is None else min_common
    if surrogate is not None and spec.name in C.COMMON_METRICS:
        # the utility gate: a merge at chance is not ranked (analysis.chance_gate)
        examples, gated = apply_gate(C.read_examples(store, where, params), Q.task_classes(store, suite_hash),
                                     Q.split_counts(store, suite_hash))
        per_target = per_target[~per_target.method.isin(gated.method)].reset_index(drop=True)
        attrs["not_ranked"] = describe(gated)
        cs = C.common_set(examples, spec.name, settings, min_common) if not examples.empty else None
        definition = C.DEFINITIONS[C.COMMON_METRICS[spec.name][0]]
        unit_text = "attacks and seeds"
    elif track == "backdoor" and spec.name == "backdoor_asr":
        examples = C.read_backdoor_examples(store, where, params)
        cs = C.backdoor_set(examples, settings, min_common) if not examples.empty else None
        definition, unit_text = C.DEFINITIONS["triggered"], "attacks, variants, defenses and seeds"
    if cs is not None:
        long, boot = cs.long, cs.boot(n_boot, seed)
        task_boot = cs.boot(n_boot, seed, level="task") if task_level else None
        resampling = (f"test images within each task (tasks fixed; one draw per task shared by all methods, "
                      f"{unit_text}), {spec.label} recomputed on the resampled images of each setting")
        attrs.update(n_common=cs.n_common, n_common_min=cs.n_common_min,
                     n_settings_dropped_common=cs.n_settings_dropped, definition=definition)
    else:
        long = per_target.dropna(subset=[spec.name]).reset_index(drop=True)
        wide = paired_table(long, spec.name, settings)
        cluster = "task" if "task" in settings else None
        boot, resampling = settings_boot(wide, n_boot, seed, cluster)
        task_boot = boot
        definition = "per setting" if surrogate is None else PER_TARGET_ONLY
        attrs.update(n_common=None, n_common_min=None, definition=definition)
    wide = paired_table(long, spec.name, settings, min_settings=1)
    means = wide.mean()
    table, pairs = rank_from_boot(means, boot, hib, alpha)
    table.insert(4, "n_settings", len(wide))
    table.attrs.update({**wide.attrs, "n_boot": n_boot, "seed": seed, "resampling": resampling})
    task_view = task_pairs = stability = None
    if task_level:
        task_view, task_pairs = rank_from_boot(means, task_boot, hib, alpha)
        stability = stability_from_boot(means, task_boot, hib).sort_values(["rank", "method"], ignore_index=True)
    if attrs["n_common"] is not None and spec.name in ("relative_asr", "asr_transfer", "aasr"):
        kept = long[["method", *settings]]
        pt = per_target.merge(kept, on=["method", *settings]).groupby("method")[spec.name].mean()
        table["per_target"] = table.method.map(pt).to_numpy()
    table.attrs = {**attrs, **table.attrs, "surrogate": surrogate}
    return Ranking(table, pairs, long, task_view, stability, task_pairs)


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

    Columns ``method, mean, ci_low, ci_high`` (paired bootstrap 95%), ``n_settings``, ``rank`` (1 + the
    number of methods significantly better; ties share it), ``letters`` (same decisions), and for transfer
    attack metrics ``per_target`` (the mean of the per-target metric, each model on its own counted set:
    secondary). Transfer rankings use one surrogate (default :data:`DEFAULT_SURROGATE`) and common examples.
    ``attrs`` add ``metric, label, higher_is_better, settings, filters_ignored, n_settings_dropped,
    surrogate, n_common, n_common_min, mdd, mdd_holm, separable, resampling, definition``. Raises
    :class:`analysis.stats.StatisticsError` (or ``CommonSetError``) when too few methods, settings or
    common examples remain.
    """
    return ranking(store, suite_hash, track, metric, filters, n_boot=n_boot, seed=seed, alpha=alpha,
                   task_level=False).table


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
