"""Percentile bootstrap (Efron 1979; Efron & Tibshirani 1993) of means, paired across columns."""

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from analysis.stats.blocks import StatisticsError


def bootstrap_means(
    values: ArrayLike, n_boot: int = 2000, seed: int = 0, groups: ArrayLike | None = None
) -> np.ndarray:
    """Means of ``n_boot`` resamples of the rows of ``values`` (n × k), shape (n_boot, k).

    Rows are drawn with replacement, the same rows for every column (a paired bootstrap). With ``groups``
    (one label per row), whole groups are drawn instead (a cluster bootstrap) and each resample's mean is
    over all the rows of the drawn groups, counted as often as their group was drawn.
    """
    x = np.asarray(values, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] < 1 or np.isnan(x).any():
        raise StatisticsError("bootstrap needs a non-empty 1-D or 2-D array without NaN values")
    labels = np.arange(x.shape[0]) if groups is None else np.asarray(groups)
    if len(labels) != x.shape[0]:
        raise StatisticsError(f"groups has {len(labels)} labels for {x.shape[0]} rows; give one per row")
    _, codes = np.unique(labels, return_inverse=True)
    n_groups = codes.max() + 1
    sums = np.zeros((n_groups, x.shape[1]))
    np.add.at(sums, codes, x)
    sizes = np.bincount(codes, minlength=n_groups)
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    offsets = np.arange(n_boot)[:, None] * n_groups
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    return (counts @ sums) / (counts @ sizes)[:, None]


def bootstrap_ci(
    values: pd.DataFrame | pd.Series | ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> pd.DataFrame:
    """Mean and percentile bootstrap CI of each column of ``values`` (rows are the resampled units).

    Returns one row per column: ``variable, mean, ci_low, ci_high``. Columns share the resampled rows, so
    the CI of a difference of two columns is a shift of theirs. See :func:`bootstrap_means` for ``groups``.
    """
    if not 0 < ci < 1:
        raise StatisticsError(f"ci={ci} must lie strictly between 0 and 1, e.g. 0.95")
    frame = pd.DataFrame(values)
    if np.ndim(values) == 1 and getattr(values, "name", None) is None:
        frame.columns = ["value"]
    boot = bootstrap_means(frame.to_numpy(), n_boot=n_boot, seed=seed, groups=groups)
    low, high = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return pd.DataFrame(
        {"variable": frame.columns, "mean": frame.mean().to_numpy(), "ci_low": low, "ci_high": high}
    )
