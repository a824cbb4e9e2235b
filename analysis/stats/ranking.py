"""Rankings with uncertainty: bootstrap CIs, top group, letters, and rank stability under task resampling."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.stats.blocks import StatisticsError, paired_table
from analysis.stats.bootstrap import bootstrap_ci, bootstrap_means
from analysis.stats.letters import compact_letters
from analysis.stats.pairwise import pairwise_from_table


def rank_of(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Competition ranks along the last axis: 1 = best, tied means share the lowest rank (1, 2, 2, 4)."""
    return rankdata(-means if higher_is_better else means, method="min", axis=-1).astype(int)


def _top_group(
    pairs: pd.DataFrame, best: str, methods: Sequence[str], higher_is_better: bool, alpha: float
) -> pd.DataFrame:
    """Each method's Holm-corrected Wilcoxon test against ``best`` and whether it is significantly worse."""
    rows = []
    for m in methods:
        if m == best:
            rows.append({"method": m, "p_unc": np.nan, "p_corr": np.nan, "top_group": True})
            continue
        row = pairs[pairs.A.eq(best) & pairs.B.eq(m) | pairs.A.eq(m) & pairs.B.eq(best)].iloc[0]
        best_minus_m = row.RBC if row["A"] == best else -row.RBC  # > 0: best tends to exceed m
        worse = row.p_corr < alpha and (1 if higher_is_better else -1) * best_minus_m > 0
        rows.append({"method": m, "p_unc": row.p_unc, "p_corr": row.p_corr, "top_group": not worse})
    return pd.DataFrame(rows)


def _paired_means(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], method_col: str, higher_is_better: bool
) -> tuple[pd.DataFrame, pd.Series]:
    """The paired table (:func:`paired_table`) and the mean per method, best first (ties broken by name)."""
    wide = paired_table(df, metric, setting_cols, method_col)
    means = wide.mean().rename("mean").rename_axis("method").reset_index()
    means = means.sort_values(["mean", "method"], ascending=[not higher_is_better, True])
    return wide, means.set_index("method")["mean"]


def top_group(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Methods not significantly worse than the best (highest or lowest mean) one.

    A method leaves the top group when its Wilcoxon signed-rank test against the best method, Holm-corrected
    over all method pairs (Holm 1979; the best is picked from the data, so the whole family counts), has
    ``p_corr < alpha`` and the paired differences favour the best. Returns ``method, mean, p_unc, p_corr,
    top_group``, best first; ``attrs`` hold ``n_settings, n_settings_dropped``.
    """
    wide, means = _paired_means(df, metric, setting_cols, method_col, higher_is_better)
    pairs = pairwise_from_table(wide)
    res = _top_group(pairs, means.index[0], list(means.index), higher_is_better, alpha)
    res.insert(1, "mean", means.to_numpy())
    res.attrs = dict(wide.attrs)
    return res


def rank_methods(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    n_boot: int = 2000, seed: int = 0, ci: float = 0.95, alpha: float = 0.05,
) -> pd.DataFrame:
    """The leaderboard table: mean with a paired percentile-bootstrap CI, rank, top group and letters.

    The CI resamples complete settings with replacement, the same settings for every method (Efron
    bootstrap). ``rank`` is by mean, 1 = best, ties share the lowest rank. ``top_group`` as in
    :func:`top_group`; ``letters`` is the compact letter display of the Holm-corrected pairwise Wilcoxon
    tests (methods sharing a letter do not differ at ``alpha``). Returns ``method, mean, ci_low, ci_high,
    n_settings, rank, top_group, letters``, best first; ``attrs`` hold ``n_settings_dropped``.
    """
    wide, means = _paired_means(df, metric, setting_cols, method_col, higher_is_better)
    order = list(means.index)
    cis = bootstrap_ci(wide[order], n_boot=n_boot, seed=seed, ci=ci).rename(columns={"variable": "method"})
    pairs = pairwise_from_table(wide)
    significant = pairs.loc[pairs.p_corr < alpha, ["A", "B"]].itertuples(index=False, name=None)
    res = cis.assign(n_settings=len(wide), rank=rank_of(means.to_numpy(), higher_is_better))
    res["top_group"] = _top_group(pairs, order[0], order, higher_is_better, alpha)["top_group"].to_numpy()
    res = res.merge(compact_letters(order, significant), on="method")
    res.attrs = {**wide.attrs, "n_boot": n_boot, "seed": seed, "ci": ci, "alpha": alpha}
    return res


def rank_stability(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    resample_col: str = "task", n_boot: int = 2000, seed: int = 0,
) -> pd.DataFrame:
    """How often each method keeps its full-data rank when the ``resample_col`` values (tasks) are resampled.

    Cluster bootstrap: draw tasks with replacement, take all complete settings of the drawn tasks, rank the
    methods by mean (as :func:`rank_methods`). Returns ``method, rank`` (full data), ``p_same_rank``,
    ``mean_rank``, ``p_rank1``, best first; ``attrs`` hold ``n_groups, n_boot, n_settings_dropped``.
    """
    if resample_col not in setting_cols:
        raise StatisticsError(f"resample_col {resample_col!r} must be in setting_cols {list(setting_cols)}")
    wide, means = _paired_means(df, metric, setting_cols, method_col, higher_is_better)
    groups = wide.index.get_level_values(resample_col)
    if groups.nunique() < 2:
        raise StatisticsError(
            f"rank stability needs 2 or more values of {resample_col!r}; got {groups.nunique()}"
        )
    values = wide[list(means.index)].to_numpy()
    boot_ranks = rank_of(bootstrap_means(values, n_boot=n_boot, seed=seed, groups=groups), higher_is_better)
    full = rank_of(means.to_numpy(), higher_is_better)
    res = pd.DataFrame(
        {
            "method": means.index,
            "rank": full,
            "p_same_rank": (boot_ranks == full).mean(axis=0),
            "mean_rank": boot_ranks.mean(axis=0),
            "p_rank1": (boot_ranks == 1).mean(axis=0),
        }
    )
    res.attrs = {**wide.attrs, "n_groups": groups.nunique(), "n_boot": n_boot, "seed": seed}
    return res
