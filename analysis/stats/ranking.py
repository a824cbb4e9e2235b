"""Rankings with uncertainty: bootstrap CIs, CI-aware ranks, letters, and rank stability under resampling.

The ranks, letters and (through :func:`analysis.stats.decisions.p_value_matrix`) the CD diagram all come
from one set of pairwise decisions (:func:`analysis.stats.decisions.pairwise_from_boot`).
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.stats.blocks import StatisticsError, paired_table
from analysis.stats.bootstrap import bootstrap_means
from analysis.stats.decisions import better_pairs, ci_aware_ranks, pairwise_from_boot
from analysis.stats.letters import compact_letters

CLUSTER = "task"
"""Settings sharing a task share its images and merged model: the default cluster of the resampling."""


def rank_of(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Competition ranks along the last axis: 1 = best, tied means share the lowest rank (1, 2, 2, 4)."""
    return rankdata(-means if higher_is_better else means, method="min", axis=-1).astype(int)


def _paired_means(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], method_col: str, higher_is_better: bool
) -> tuple[pd.DataFrame, pd.Series]:
    """The paired table (:func:`paired_table`) and the mean per method, best first (ties broken by name)."""
    wide = paired_table(df, metric, setting_cols, method_col)
    means = wide.mean().rename("mean").rename_axis("method").reset_index()
    means = means.sort_values(["mean", "method"], ascending=[not higher_is_better, True])
    return wide, means.set_index("method")["mean"]


def rank_from_boot(
    means: pd.Series, boot: np.ndarray, higher_is_better: bool, alpha: float = 0.05, ci: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranking, pairs) from method means and a paired bootstrap of them (n_boot × k, ``means`` order; ties
    in the mean keep that order, so pass the means sorted by name).

    ranking, ordered by mean (best first): ``method, mean, ci_low, ci_high`` (percentile interval of the
    resampled means), ``rank`` (1 + the number of methods significantly better, :func:`ci_aware_ranks`),
    ``letters`` (compact letter display of the same decisions). pairs: :func:`pairwise_from_boot`.
    ``ranking.attrs``: ``mdd`` and ``mdd_holm`` (median over pairs), ``separable`` (any pair significant).
    """
    columns = list(means.index)
    means = means.sort_values(ascending=not higher_is_better, kind="stable")
    order = list(means.index)
    boot = np.asarray(boot, dtype=float)[:, [columns.index(m) for m in order]]
    pairs = pairwise_from_boot(means, boot, alpha, ci)
    low, high = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    wins = better_pairs(pairs, higher_is_better)
    res = pd.DataFrame({"method": order, "mean": means.to_numpy(), "ci_low": low, "ci_high": high})
    res["rank"] = ci_aware_ranks(order, wins).loc[order].to_numpy()
    res = res.merge(compact_letters(order, wins), on="method")
    res.attrs = {"mdd": float(pairs.mdd.median()), "mdd_holm": float(pairs.mdd_holm.median()),
                 "separable": bool(pairs.significant.any()), "alpha": alpha, "ci": ci}
    return res, pairs


def settings_boot(wide: pd.DataFrame, n_boot: int, seed: int, cluster_col: str | None) -> tuple[np.ndarray, str]:
    """Paired bootstrap of the method means of a complete settings × methods table, and what it resamples:
    whole ``cluster_col`` groups of settings (a cluster bootstrap) or, without one, the settings."""
    groups = None
    what = "complete settings (treated as independent)"
    if cluster_col is not None:
        if cluster_col not in wide.index.names:
            raise StatisticsError(f"cluster_col {cluster_col!r} is not a setting column ({list(wide.index.names)})")
        groups = wide.index.get_level_values(cluster_col)
        what = f"{cluster_col}s with all their settings (cluster bootstrap; {groups.nunique()} clusters)"
    return bootstrap_means(wide.to_numpy(), n_boot=n_boot, seed=seed, groups=groups), what


def rank_methods(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    n_boot: int = 2000, seed: int = 0, ci: float = 0.95, alpha: float = 0.05, *,
    cluster_col: str | None = CLUSTER, boot: np.ndarray | None = None, resampling: str | None = None,
) -> pd.DataFrame:
    """The leaderboard table: mean with a paired bootstrap CI, CI-aware rank and letters (see
    :func:`rank_from_boot`), over the complete settings of ``df``.

    ``boot`` (n_boot × methods, columns in sorted method order) supplies the resampled means, e.g. the
    image bootstrap of :mod:`analysis.common_set`, with ``resampling`` saying what it resamples (then one
    complete setting suffices: the resampled units are inside it). Without it
    the settings are resampled in clusters of ``cluster_col`` (default ``task`` when it is a setting
    column; ``None`` resamples settings). Returns ``method, mean, ci_low, ci_high, n_settings, rank,
    letters``, best first; ``attrs`` hold ``n_settings, n_settings_dropped, n_boot, seed, ci, alpha, mdd,
    mdd_holm, separable, resampling``.
    """
    wide = paired_table(df, metric, setting_cols, method_col, min_settings=1 if boot is not None else 2)
    if boot is None:
        cluster = cluster_col if cluster_col in wide.index.names else None
        boot, resampling = settings_boot(wide, n_boot, seed, cluster)
    elif boot.shape[1] != wide.shape[1]:
        raise StatisticsError(f"boot has {boot.shape[1]} columns for {wide.shape[1]} methods")
    sorted_means = wide.mean()
    res, _ = rank_from_boot(sorted_means, boot, higher_is_better, alpha, ci)
    res.insert(4, "n_settings", len(wide))
    res.attrs.update({**wide.attrs, "n_boot": len(boot), "seed": seed, "resampling": resampling or ""})
    return res


def top_group(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    alpha: float = 0.05, **kwargs,
) -> pd.DataFrame:
    """Methods that no method is significantly better than (CI-aware rank 1 of :func:`rank_methods`).

    Returns ``method, mean, rank, top_group``, best first; ``kwargs`` go to :func:`rank_methods`."""
    res = rank_methods(df, metric, setting_cols, higher_is_better, method_col, alpha=alpha, **kwargs)
    out = res[["method", "mean", "rank"]].assign(top_group=res["rank"].eq(1))
    out.attrs = res.attrs
    return out


def rank_stability(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    resample_col: str = "task", n_boot: int = 2000, seed: int = 0,
) -> pd.DataFrame:
    """How often each method keeps its full-data rank when the ``resample_col`` values (tasks) are resampled.

    Cluster bootstrap: draw tasks with replacement, take all complete settings of the drawn tasks, rank the
    methods by mean. Returns ``method, rank`` (by mean, full data), ``p_same_rank``, ``mean_rank``,
    ``p_rank1``, best first; ``attrs`` hold ``n_groups, n_boot, n_settings_dropped``.
    """
    if resample_col not in setting_cols:
        raise StatisticsError(f"resample_col {resample_col!r} must be in setting_cols {list(setting_cols)}")
    wide, means = _paired_means(df, metric, setting_cols, method_col, higher_is_better)
    groups = wide.index.get_level_values(resample_col)
    if groups.nunique() < 2:
        raise StatisticsError(
            f"rank stability needs 2 or more values of {resample_col!r}; got {groups.nunique()}"
        )
    boot = bootstrap_means(wide[list(means.index)].to_numpy(), n_boot=n_boot, seed=seed, groups=groups)
    res = stability_from_boot(means, boot, higher_is_better)
    res.attrs = {**wide.attrs, "n_groups": groups.nunique(), "n_boot": n_boot, "seed": seed}
    return res


def stability_from_boot(means: pd.Series, boot: np.ndarray, higher_is_better: bool) -> pd.DataFrame:
    """Rank-by-mean stability over resampled means (``boot``: n_boot × k in ``means`` order): ``method,
    rank`` (full data), ``p_same_rank``, ``mean_rank``, ``p_rank1``, in ``means`` order."""
    boot_ranks = rank_of(np.asarray(boot, dtype=float), higher_is_better)
    full = rank_of(means.to_numpy(), higher_is_better)
    return pd.DataFrame(
        {
            "method": means.index,
            "rank": full,
            "p_same_rank": (boot_ranks == full).mean(axis=0),
            "mean_rank": boot_ranks.mean(axis=0),
            "p_rank1": (boot_ranks == 1).mean(axis=0),
        }
    )
