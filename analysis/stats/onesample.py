"""One-sample location tests against a reference value, per group: Wilcoxon signed-rank and Student t."""

import numpy as np
import pandas as pd
import pingouin as pg

from analysis.stats.blocks import StatisticsError
from analysis.stats.pairwise import paired_test


def one_sample_vs(
    df: pd.DataFrame, metric: str, value: float = 0.95, by: str = "method", alternative: str = "greater"
) -> pd.DataFrame:
    """Is ``metric`` above (``alternative="greater"``) ``value`` in each ``by`` group?

    Wilcoxon signed-rank of ``metric - value`` (:func:`paired_test`; effect size: rank-biserial ``RBC``)
    and one-sample t-test (``pingouin.ttest``; effect size: Cohen's ``d``). Rows are treated as independent.
    Returns one row per group: ``by, n, mean, median, W_val, p_wilcoxon, RBC, T, dof, p_ttest, cohen_d``.
    """
    for col in (metric, by):
        if col not in df.columns:
            raise StatisticsError(f"column {col!r} is not in the table (it has {list(df.columns)})")
    rows = []
    for group, values in df.groupby(by, sort=True)[metric]:
        x = values.dropna().to_numpy(dtype=float)
        if len(x) < 2:
            raise StatisticsError(f"{by}={group!r} has {len(x)} values of {metric!r}; a test needs 2 or more")
        w = paired_test(x, np.full_like(x, value), alternative=alternative)
        t = pg.ttest(x, value, alternative=alternative)
        rows.append(
            {
                by: group,
                "n": len(x),
                "mean": x.mean(),
                "median": float(np.median(x)),
                "W_val": w["W_val"].iat[0],
                "p_wilcoxon": w["p_val"].iat[0],
                "RBC": w["RBC"].iat[0],
                "T": t["T"].iat[0],
                "dof": t["dof"].iat[0],
                "p_ttest": t["p_val"].iat[0],
                "cohen_d": t["cohen_d"].iat[0],
            }
        )
    return pd.DataFrame(rows)
