"""Power of a claim's test: the minimum detectable difference (MDD) at 80% power, and the verdict it allows.

A test that does not reject says "not supported" only when it could have detected the claim's stated effect
(MDD ≤ effect); otherwise it says "underpowered" (Cohen 1988, ch. 2; the t-test's power from statsmodels'
``TTestPower``, a correlation's through Fisher's z).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.stats import norm
from statsmodels.stats.power import TTestPower

from analysis.claims.core import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, UNDERPOWERED, pp

POWER = 0.8

EFFECTS = {
    "relative_asr_above_95": 0.025,
    "stronger_more_vulnerable": 0.5,
    "surgery_more_vulnerable": 0.05,
    "weight_averaging_most_vulnerable": 0.05,
    "pretrained_surrogate_transfers_less": 0.05,
    "backdoor_survives_merging": 0.10,
    "defenses_reduce_asr": 0.10,
}
"""The effect each claim must show, stated before looking at the data (docs/analysis.md): rate differences
(fractions; 0.05 = 5 percentage points), a Spearman/Kendall correlation for claim 2, and for claim 1 the excess
over 95%."""

ACCURACY_MARGIN = 0.02
"""Claim 6b's "small accuracy cost": a defense's cost must be shown below 2 percentage points."""


def mdd_t(sd: float, n: int, alpha: float, power: float = POWER, alternative: str = "two-sided") -> float:
    """Smallest true mean difference a one-sample (or paired) t-test over ``n`` units with standard deviation
    ``sd`` detects with probability ``power`` at level ``alpha`` (statsmodels ``TTestPower``); NaN when
    ``n < 2`` (no test), 0 when the units do not vary."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    return _standardized_mdd(n, alpha, power, alternative) * sd


@functools.cache
def _standardized_mdd(n: int, alpha: float, power: float, alternative: str) -> float:
    """Cohen's d detected with ``power`` by a t-test over ``n`` units (a root search, so cached)."""
    d = TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative=alternative)
    return float(np.asarray(d).item())


def min_detectable_correlation(n: int, alpha: float, power: float = POWER) -> float:
    """Smallest |ρ| a two-sided test of a correlation over ``n`` pairs detects with probability ``power``
    (Fisher's z with standard error 1/√(n−3)); NaN for n ≤ 3."""
    if n <= 3:
        return float("nan")
    return math.tanh((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / math.sqrt(n - 3))


def decide(
    p: float, effect: float, mdd: float, stated: float, alpha: float, direction: int = 1,
    p_opposite: float | None = None,
) -> tuple[str, str]:
    """(verdict, remark) of one test. ``effect``: the estimate, signed so that the claim predicts
    ``direction * effect > 0``; ``mdd``: its MDD; ``stated``: the effect the claim must show;
    ``p_opposite``: for a one-sided test, the p of the test in the other direction."""
    if p is None or not math.isfinite(p):
        return INCONCLUSIVE, "the units do not vary, so there is nothing to test"
    if p_opposite is not None and p_opposite < alpha and p >= alpha:
        return NOT_SUPPORTED, "the test in the opposite direction rejects"
    if p < alpha:
        if direction * effect > 0:
            return SUPPORTED, ""
        return NOT_SUPPORTED, "the test rejects in the opposite direction"
    if not math.isfinite(mdd) or mdd > stated:
        return UNDERPOWERED, (
            f"not significant, but the minimum detectable difference at 80% power is {pp(mdd).lstrip('+')} "
            f"> the stated effect {pp(stated).lstrip('+')}: the data could not have shown it"
        )
    return NOT_SUPPORTED, (
        f"not significant at α = {alpha} although the test detects {pp(mdd).lstrip('+')} with 80% power "
        f"(stated effect {pp(stated).lstrip('+')})"
    )
