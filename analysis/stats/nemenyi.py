"""Average ranks and the Nemenyi critical difference (Nemenyi 1963; Demšar 2006, §3.2.2)."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy.stats import studentized_range

from analysis.stats.blocks import paired_table


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Demšar's q_α for k methods: the studentized range quantile (infinite df) divided by √2."""
    return float(studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def nemenyi_critical_difference(
    df: pd.DataFrame, metric: str, setting_cols: Sequence[str], higher_is_better: bool, method_col: str = "method",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Average rank per method over the complete settings and the Nemenyi CD = q_α √(k(k+1)/(6N)).

    Within each setting the methods are ranked 1 (best) to k, ties averaged. Two methods differ at ``alpha``
    when their average ranks differ by at least CD. Run it after :func:`friedman_test` rejects. Returns
    ``method, avg_rank, cd, q_alpha, k, n_settings``, best first; ``attrs``: ``alpha, n_settings_dropped``
    and ``p_values`` (``scikit_posthocs.posthoc_nemenyi_friedman``'s matrix, as a dict of dicts).
    """
    wide = paired_table(df, metric, setting_cols, method_col)
    n, k = wide.shape
    avg = wide.rank(axis=1, ascending=not higher_is_better, method="average").mean()
    q = nemenyi_q(k, alpha)
    res = (
        avg.rename("avg_rank")
        .rename_axis("method")
        .reset_index()
        .sort_values(["avg_rank", "method"], ignore_index=True)
        .assign(cd=q * np.sqrt(k * (k + 1) / (6 * n)), q_alpha=q, k=k, n_settings=n)
    )
    p_values = sp.posthoc_nemenyi_friedman(wide.to_numpy())
    p_values.index = p_values.columns = list(wide.columns)
    res.attrs = {**wide.attrs, "alpha": alpha, "p_values": p_values.to_dict()}
    return res


def cd_cliques(avg_ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of methods (by average rank) whose ranks span less than ``cd``: the CD-diagram bars."""
    ranks = avg_ranks.sort_values()
    values, names = ranks.to_numpy(), list(ranks.index)
    cliques, last_end = [], 0
    for i in range(len(values)):
        end = int(np.searchsorted(values, values[i] + cd, side="left"))  # first j with r_j - r_i >= cd
        if end - i >= 2 and end > last_end:
            cliques.append(names[i:end])
        last_end = max(last_end, end)
    return cliques
