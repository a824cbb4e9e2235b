"""Pairwise decisions from a bootstrap of method means, and the CI-aware ranks they imply.

One set of decisions feeds the ranks, the compact letters and the CD diagram, so a page never says two
things. A pair's test is a Wald z-test of the mean difference with its bootstrap standard error (the
resampling design is whatever produced ``boot``: docs/statistics.md), Holm-corrected over all pairs
(Holm 1979; ``statsmodels.stats.multitest.multipletests``).
"""

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from analysis.stats.blocks import StatisticsError
from analysis.stats.power import minimum_detectable_difference


def pairwise_from_boot(
    means: pd.Series, boot: np.ndarray, alpha: float = 0.05, ci: float = 0.95,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """The pairs of ``means.index`` (default all of them; ``pairs``: the family of (A, B) to test, e.g. one
    method against each other): ``A, B, diff`` (A − B), ``se`` (bootstrap SD of the difference),
    ``ci_low, ci_high`` (percentile interval of the resampled differences), ``z, p_unc, p_corr`` (Holm over
    the family), ``significant`` (``p_corr < alpha``), ``mdd`` (difference detected with 80% power at
    ``alpha``) and ``mdd_holm`` (at Holm's first step, alpha / the number of pairs in the family).

    ``boot`` is (n_boot × k), columns in ``means.index`` order, rows resampled jointly (paired). Rows with a
    NaN are skipped for that pair. A pair whose resampled difference never varies gets ``p_unc`` 1 when
    the difference is 0 and 0 otherwise."""
    boot = np.asarray(boot, dtype=float)
    if boot.ndim != 2 or boot.shape[1] != len(means) or len(means) < 2:
        raise StatisticsError(f"boot must be n_boot × {len(means)} (one column per method, 2 or more)")
    names = list(means.index)
    if pairs is None:
        family = list(itertools.combinations(range(len(names)), 2))
    else:
        unknown = sorted({m for pair in pairs for m in pair} - set(names))
        if unknown or not pairs or any(a == b for a, b in pairs):
            raise StatisticsError(f"pairs must name two different methods of {names}; got {list(pairs)}")
        family = [(names.index(a), names.index(b)) for a, b in pairs]
    rows = []
    for i, j in family:
        d = boot[:, i] - boot[:, j]
        d = d[~np.isnan(d)]
        diff = float(means.iat[i] - means.iat[j])
        se = float(d.std(ddof=1)) if len(d) > 1 else np.nan
        if not se > 0:
            z, p = (0.0, 1.0) if diff == 0 else (np.inf, 0.0)
        else:
            z = diff / se
            p = float(2 * norm.sf(abs(z)))
        low, high = np.quantile(d, [(1 - ci) / 2, (1 + ci) / 2]) if len(d) else (np.nan, np.nan)
        rows.append({"A": names[i], "B": names[j], "diff": diff, "se": se, "ci_low": low, "ci_high": high,
                     "z": z, "p_unc": p})
    res = pd.DataFrame(rows)
    res["p_corr"] = multipletests(res.p_unc.to_numpy(), alpha=alpha, method="holm")[1]
    res["significant"] = res.p_corr < alpha
    res["mdd"] = minimum_detectable_difference(res.se, alpha)
    res["mdd_holm"] = minimum_detectable_difference(res.se, alpha / len(res))
    return res


def p_value_matrix(pairs: pd.DataFrame, methods: list[str], column: str = "p_corr") -> pd.DataFrame:
    """The symmetric methods × methods matrix of ``column`` (diagonal 1), what scikit-posthocs plots."""
    mat = pd.DataFrame(1.0, index=methods, columns=methods)
    for a, b, p in pairs[["A", "B", column]].itertuples(index=False, name=None):
        mat.loc[a, b] = mat.loc[b, a] = p
    return mat


def better_pairs(pairs: pd.DataFrame, higher_is_better: bool) -> list[tuple[str, str]]:
    """(winner, loser) for every significant pair."""
    sign = 1 if higher_is_better else -1
    return [(a, b) if sign * d > 0 else (b, a)
            for a, b, d in pairs.loc[pairs.significant, ["A", "B", "diff"]].itertuples(index=False, name=None)]


def ci_aware_ranks(methods: list[str], wins: list[tuple[str, str]]) -> pd.Series:
    """Rank = 1 + the number of methods significantly better (the rank upper bound of Chatbot Arena,
    Chiang et al. 2024); methods that nothing separates share a rank."""
    beaten_by = {m: 0 for m in methods}
    for _, loser in wins:
        beaten_by[loser] += 1
    return pd.Series({m: 1 + beaten_by[m] for m in methods}, name="rank")
