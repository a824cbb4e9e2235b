"""Exact McNemar test (McNemar 1947; ``statsmodels``) for two methods' paired binary outcomes on the same examples."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis.stats.blocks import StatisticsError


def mcnemar_exact(outcomes_a: ArrayLike, outcomes_b: ArrayLike) -> pd.DataFrame:
    """Exact two-sided McNemar test on discordant pairs (``statsmodels``' ``mcnemar(exact=True)``: binomial
    test of b out of b + c at 1/2).

    ``b`` counts examples where only A's outcome is true, ``c`` where only B's is. Returns one row:
    ``n, b, c, statistic`` (min(b, c)), ``p_val`` (1 when there are no discordant pairs).
    """
    a, b_ = np.asarray(outcomes_a), np.asarray(outcomes_b)
    if a.shape != b_.shape or a.ndim != 1 or a.dtype != bool or b_.dtype != bool:
        raise StatisticsError("mcnemar_exact needs two boolean 1-D arrays of equal length (one per example)")
    b, c = int((a & ~b_).sum()), int((~a & b_).sum())
    p = mcnemar([[int((a & b_).sum()), b], [c, int((~a & ~b_).sum())]], exact=True).pvalue
    return pd.DataFrame([{"n": len(a), "b": b, "c": c, "statistic": min(b, c), "p_val": float(p)}])


def mcnemar_by_setting(
    df: pd.DataFrame,
    outcome: str,
    setting_cols: Sequence[str],
    method_a: str,
    method_b: str,
    example_col: str = "example_id",
    method_col: str = "method",
) -> pd.DataFrame:
    """:func:`mcnemar_exact` of ``method_a`` vs ``method_b`` in each setting, on the examples both have.

    ``df`` has one row per (setting, example, method) with a boolean ``outcome``. Returns one row per
    setting: the setting columns, ``n, b, c, statistic, p_val, p_corr`` (Holm over the settings).
    """
    setting_cols = list(setting_cols)
    keys = [*setting_cols, example_col]
    missing = [c for c in [*keys, method_col, outcome] if c not in df.columns]
    if missing:
        raise StatisticsError(f"columns {missing} are not in the per-example table; pass the names it uses")
    if df[outcome].dtype != bool:
        raise StatisticsError(f"column {outcome!r} must be boolean (e.g. attack succeeded on the example)")
    sides = []
    for m in (method_a, method_b):
        part = df.loc[df[method_col] == m, [*keys, outcome]]
        if part.empty:
            present = sorted(df[method_col].unique())
            raise StatisticsError(f"method {m!r} has no rows; the methods present are {present}")
        if part.duplicated(keys).any():
            raise StatisticsError(f"method {m!r} has several rows for one (setting, example); keep one")
        sides.append(part.set_index(keys)[outcome])
    both = pd.concat(sides, axis=1, keys=["a", "b"], join="inner").reset_index()
    if both.empty:
        raise StatisticsError(
            f"{method_a!r} and {method_b!r} share no (setting, example); evaluate both on them"
        )
    rows = [
        mcnemar_exact(g.a.to_numpy(), g.b.to_numpy()).assign(**dict(zip(setting_cols, key, strict=True)))
        for key, g in both.groupby(setting_cols, sort=True)
    ]
    res = pd.concat(rows, ignore_index=True)[[*setting_cols, "n", "b", "c", "statistic", "p_val"]]
    res["p_corr"] = multipletests(res["p_val"].to_numpy(), method="holm")[1]
    return res
