"""Bootstrap of means (Efron 1979; Efron & Tibshirani 1993), paired across columns.

Unclustered intervals come from ``scipy.stats.bootstrap`` (BCa by default, Efron 1987); the cluster
bootstrap (whole groups of rows drawn together), which scipy lacks, is :func:`bootstrap_means`.
"""

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import bootstrap

from analysis.stats.blocks import StatisticsError

METHODS = ("BCa", "percentile", "basic")


def bootstrap_means(
    values: ArrayLike, n_boot: int = 2000, seed: int = 0, groups: ArrayLike | None = None
) -> np.ndarray:
    """Means of ``n_boot`` resamples of the rows of ``values`` (n × k), shape (n_boot, k).

    Rows are drawn with replacement, the same rows for every column (a paired bootstrap). With ``groups``
    (one label per row), whole groups are drawn instead (a cluster bootstrap) and each resample's mean is
    over all the rows of the drawn groups, counted as often as their group was drawn.
    """
    x = _matrix(values)
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


def _matrix(values: ArrayLike) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] < 1 or np.isnan(x).any():
        raise StatisticsError("bootstrap needs a non-empty 1-D or 2-D array without NaN values")
    return x


def _frame(values: pd.DataFrame | pd.Series | ArrayLike) -> pd.DataFrame:
    frame = pd.DataFrame(values)
    if np.ndim(values) == 1 and getattr(values, "name", None) is None:
        frame.columns = ["value"]
    return frame


def bootstrap_ci(
    values: pd.DataFrame | pd.Series | ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
    method: str = "BCa",
) -> pd.DataFrame:
    """Mean and bootstrap CI of each column of ``values`` (rows are the resampled units).

    Without ``groups``: ``scipy.stats.bootstrap`` with ``method`` (``BCa``, ``percentile`` or ``basic``),
    the same resampled rows for every column. With ``groups``: the percentile interval of the cluster
    bootstrap :func:`bootstrap_means`. Returns one row per column: ``variable, mean, ci_low, ci_high``.

    The CI of a *difference* of two columns is **not** the difference of their CIs (that ignores the
    covariance between them); bootstrap the difference itself: :func:`paired_difference_ci`.
    """
    if not 0 < ci < 1:
        raise StatisticsError(f"ci={ci} must lie strictly between 0 and 1, e.g. 0.95")
    if method not in METHODS:
        raise StatisticsError(f"bootstrap method {method!r} is not one of {', '.join(METHODS)}")
    frame = _frame(values)
    x = _matrix(frame.to_numpy())
    if groups is not None:
        boot = bootstrap_means(x, n_boot=n_boot, seed=seed, groups=groups)
        low, high = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    elif x.shape[0] < 2 or np.all(x == x[0]):
        low = high = x.mean(axis=0)  # one row or constant columns: no sampling variability to show
    else:
        res = bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=ci, method=method, axis=0,
                        vectorized=True, rng=np.random.default_rng(seed))
        low, high = res.confidence_interval
        low, high = np.where(np.isnan(low), x.mean(axis=0), low), np.where(np.isnan(high), x.mean(axis=0), high)
    return pd.DataFrame({"variable": frame.columns, "mean": x.mean(axis=0), "ci_low": low, "ci_high": high})


def paired_difference_ci(
    a: ArrayLike, b: ArrayLike, n_boot: int = 2000, seed: int = 0, ci: float = 0.95,
    groups: ArrayLike | None = None, method: str = "BCa",
) -> pd.DataFrame:
    """Mean of ``a − b`` (aligned rows, NaN pairs dropped) and its bootstrap CI (:func:`bootstrap_ci` of the
    paired differences). One row: ``variable`` (``"difference"``), ``mean, ci_low, ci_high, n``."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise StatisticsError(f"paired_difference_ci needs two 1-D samples of one length; got {x.shape}, {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    g = None if groups is None else np.asarray(groups)[keep]
    d = pd.Series(x[keep] - y[keep], name="difference")
    return bootstrap_ci(d, n_boot=n_boot, seed=seed, ci=ci, groups=g, method=method).assign(n=int(keep.sum()))
