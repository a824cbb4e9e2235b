"""Rank correlations (Spearman 1904; Kendall 1938 tau-b) with pingouin's CIs and p-values."""

import pandas as pd
import pingouin as pg
from numpy.typing import ArrayLike


def correlation(x: ArrayLike, y: ArrayLike, alternative: str = "two-sided") -> pd.DataFrame:
    """Spearman's rho and Kendall's tau-b of ``x`` and ``y`` (``pingouin.corr``; pairs with a NaN dropped).

    Returns two rows: ``test`` (``spearman``/``kendall``), ``n, r, CI95, p_val``.
    """
    rows = [pg.corr(x, y, alternative=alternative, method=m) for m in ("spearman", "kendall")]
    res = pd.concat(rows).rename_axis("test").reset_index()
    return res[["test", "n", "r", "CI95", "p_val"]]
