"""Cluster-level inference: settings are not independent replicates, so every claim averages the settings
within a cluster (a task for the transfer track: all its attacks share the images, the surrogate and the
merged model; a merging method for the backdoor track) and tests the cluster means (a "summary measures"
analysis, Altman & Bland; the paired t-test over clusters). docs/analysis.md, "The inference unit".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats

from analysis.claims.power import mdd_t

TRANSFER_SETTING = ["task", "attack", "surrogate", "eps"]
"""A transfer setting (seeds averaged by analysis.ranking_view.settings_table); one surrogate at a time."""
TRANSFER_CLUSTER = "task"
BACKDOOR_CLUSTER = "method"


def cluster_values(df: pd.DataFrame, value: str, cluster: str) -> pd.Series:
    """The mean of ``value`` within each ``cluster`` (NaN rows dropped first), indexed by cluster."""
    return df.dropna(subset=[value]).groupby(cluster)[value].mean()


def paired_cluster_diff(
    long: pd.DataFrame, metric: str, a: str, b: str, setting: Sequence[str] = TRANSFER_SETTING,
    cluster: str = TRANSFER_CLUSTER, by: str = "method",
) -> pd.Series:
    """Per cluster, the mean over the settings where both ``a`` and ``b`` (values of ``by``) have ``metric``
    of ``a − b``; indexed by cluster."""
    wide = long[long[by].isin([a, b])].pivot_table(index=list(setting), columns=by, values=metric)
    if a not in wide or b not in wide:
        return pd.Series(dtype=float)
    both = wide[[a, b]].dropna()
    return (both[a] - both[b]).groupby(level=cluster).mean()


def cluster_test(
    values: pd.Series | np.ndarray, null: float = 0.0, alpha: float = 0.05, alternative: str = "two-sided"
) -> dict:
    """One-sample t-test of the cluster values against ``null`` (``alternative``: ``two-sided``, ``greater``
    or ``less``), the two-sided 95% CI of their mean, signed Cohen's d and the MDD at ``alpha`` (80% power).
    Keys: ``n_clusters, mean, effect`` (mean − null), ``ci_low, ci_high, sd, t, p, cohen_d, mdd,
    alternative`` and ``p_opposite`` (a one-sided test's p in the other direction; for a two-sided test its
    own p); NaN where fewer than 2 clusters or no variation."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    sd = float(x.std(ddof=1)) if n >= 2 else float("nan")
    out = {"n_clusters": n, "mean": mean, "effect": mean - null, "sd": sd, "alternative": alternative}
    if n >= 2 and sd > 0:
        res = stats.ttest_1samp(x, null, alternative=alternative)
        ci = stats.ttest_1samp(x, null).confidence_interval(0.95)
        opposite = res if alternative == "two-sided" else stats.ttest_1samp(x, null, alternative=_OPPOSITE[alternative])
        out |= {"t": float(res.statistic), "p": float(res.pvalue), "p_opposite": float(opposite.pvalue),
                "ci_low": float(ci.low),
                "ci_high": float(ci.high), "cohen_d": (mean - null) / sd}
    else:
        out |= {"t": float("nan"), "p": float("nan"), "p_opposite": float("nan"), "ci_low": mean if n else float("nan"),
                "ci_high": mean if n else float("nan"), "cohen_d": float("nan")}
    out["mdd"] = mdd_t(sd, n, alpha, alternative=_POWER_ALTERNATIVE[alternative])
    return out


_POWER_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
"""scipy's names of a t-test's alternative → statsmodels' power module's."""
_OPPOSITE = {"greater": "less", "less": "greater"}


def holm_family(tests: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm-adjust (``pingouin.multicomp``; statsmodels' ``multipletests`` runs a full garbage collection
    per call) the ``p`` (and ``p_opposite``) column of one claim's own family (``p_holm``,
    ``p_opposite_holm``; NaN kept) and state each test's MDD at Holm's first step, α/m (the level the
    smallest p must beat), in ``mdd``."""
    out = tests.copy()
    ok = out.p.notna().to_numpy()
    m = max(int(ok.sum()), 1)
    for col in ("p", "p_opposite"):
        out[f"{col}_holm"] = np.nan
        if ok.any():
            out.loc[ok, f"{col}_holm"] = pg.multicomp(out[col][ok].to_numpy(), alpha=alpha, method="holm")[1]
    out["mdd"] = [
        mdd_t(sd, int(n), alpha / m, alternative=_POWER_ALTERNATIVE[alt])
        for sd, n, alt in zip(out.sd, out.n_clusters, out.alternative, strict=True)
    ]
    return out
