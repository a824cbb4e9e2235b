"""Wilcoxon signed-rank tests (Wilcoxon 1945) for paired samples, Holm-corrected (Holm 1979) for families."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pingouin as pg
from numpy.typing import ArrayLike

from analysis.stats.blocks import BLOCK, StatisticsError, paired_table, to_long


def paired_test(a: ArrayLike, b: ArrayLike, alternative: str = "two-sided") -> pd.DataFrame:
    """Wilcoxon signed-rank test of two positionally aligned samples (``pingouin.wilcoxon``).

    Returns one row: ``n, W_val, alternative, p_val, RBC`` (matched-pairs rank-biserial correlation, > 0
    when ``a`` tends to exceed ``b``; 0 when all differences are zero), ``CLES`` (P(a > b) over all pairs).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise StatisticsError(f"paired_test needs two 1-D samples of one length; got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 2:
        raise StatisticsError(f"paired_test needs at least 2 complete pairs; got {int(keep.sum())}")
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero differences: RBC is 0/0
        res = pg.wilcoxon(x[keep], y[keep], alternative=alternative)
    res["RBC"] = res["RBC"].fillna(0.0)
    return res.reset_index(drop=True).assign(n=int(keep.sum()))[
        ["n", "W_val", "alternative", "p_val", "RBC", "CLES"]
    ]


def pairwise_from_table(wide: pd.DataFrame, metric: str, method_col: str) -> pd.DataFrame:
    """:func:`pairwise_wilcoxon` on a complete settings × methods table from ``paired_table``."""
    long = to_long(wide, metric, method_col)
    with np.errstate(invalid="ignore", divide="ignore"):  # identical methods: z-score 0/0, p = 1 anyway
        res = pg.pairwise_tests(
            long,
            dv=metric,
            within=method_col,
            subject=BLOCK,
            parametric=False,
            padjust="holm",
            effsize="CLES",
        )
    if "p_corr" not in res:  # pingouin adds no correction to a family of one test, where Holm is identity
        res["p_corr"] = res["p_unc"]
    res["RBC"] = [paired_test(wide[a], wide[b]).RBC.iat[0] for a, b in zip(res.A, res.B, strict=True)]
    return res[["A", "B", "W_val", "p_unc", "p_corr", "RBC", "CLES"]].assign(n_settings=len(wide))


def pairwise_wilcoxon(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], method_col: str = "method"
) -> pd.DataFrame:
    """All pairs of methods: Wilcoxon signed-rank tests over the complete settings, Holm-corrected.

    ``pingouin.pairwise_tests(parametric=False, padjust="holm", effsize="CLES")``. Returns one row per pair:
    ``A, B, W_val, p_unc, p_corr, RBC`` (matched-pairs rank-biserial, > 0 when A tends to exceed B),
    ``CLES, n_settings``; ``attrs`` hold ``n_settings, n_settings_dropped``.
    """
    wide = paired_table(df, metric, setting_cols, method_col)
    res = pairwise_from_table(wide, metric, method_col)
    res.attrs = dict(wide.attrs)
    return res
