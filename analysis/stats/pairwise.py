"""Wilcoxon signed-rank tests (Wilcoxon 1945) for paired samples, Holm-corrected (Holm 1979) for families."""

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pingouin as pg
from numpy.typing import ArrayLike
from statsmodels.stats.multitest import multipletests

from analysis.stats.blocks import StatisticsError, paired_table


def paired_test(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> pd.DataFrame:
    """Wilcoxon signed-rank test of two positionally aligned samples (``pingouin.wilcoxon``).

    Returns one row: ``n, W_val, alternative, p_val, RBC`` (matched-pairs rank-biserial correlation, > 0
    when ``a`` tends to exceed ``b``), ``CLES`` (P(a > b) over all pairs). When every difference is zero
    there is no evidence of one: ``p_val`` is 1 and ``RBC`` 0 (scipy and pingouin would divide 0 by 0).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise StatisticsError(f"paired_test needs two 1-D samples of one length; got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 2:
        raise StatisticsError(f"paired_test needs at least 2 complete pairs; got {int(keep.sum())}")
    x, y = x[keep], y[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        res = pg.wilcoxon(x, y, alternative=alternative)
    if np.array_equal(x, y):
        res[["p_val", "RBC"]] = [1.0, 0.0]
    return res.reset_index(drop=True).assign(n=len(x))[["n", "W_val", "alternative", "p_val", "RBC", "CLES"]]


def pairwise_from_table(wide: pd.DataFrame) -> pd.DataFrame:
    """:func:`pairwise_wilcoxon` on a complete settings × methods table from ``paired_table``."""
    pairs = list(itertools.combinations(wide.columns, 2))
    tests = pd.concat([paired_test(wide[a], wide[b]) for a, b in pairs], ignore_index=True)
    res = pd.DataFrame(pairs, columns=["A", "B"]).assign(W_val=tests.W_val, p_unc=tests.p_val)
    res["p_corr"] = multipletests(res.p_unc.to_numpy(), method="holm")[1]
    return res.assign(RBC=tests.RBC, CLES=tests.CLES, n_settings=len(wide))


def pairwise_wilcoxon(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], method_col: str = "method"
) -> pd.DataFrame:
    """All pairs of methods: Wilcoxon signed-rank tests over the complete settings, Holm-corrected.

    What ``pingouin.pairwise_tests(parametric=False, padjust="holm", effsize="CLES")`` computes, built from
    one :func:`paired_test` per pair so each row also carries the matched-pairs effect size (Holm:
    ``statsmodels.stats.multitest.multipletests``). Returns one row
    per pair (A before B in sorted order): ``A, B, W_val, p_unc, p_corr, RBC`` (> 0 when A tends to exceed
    B), ``CLES`` (P(A > B)), ``n_settings``; ``attrs`` hold ``n_settings, n_settings_dropped``.
    """
    wide = paired_table(df, metric, setting_cols, method_col)
    res = pairwise_from_table(wide)
    res.attrs = dict(wide.attrs)
    return res
