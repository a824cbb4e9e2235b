"""Minimum detectable difference of a z-test with a known standard error (statsmodels' normal power)."""

import numpy as np
from numpy.typing import ArrayLike
from statsmodels.stats.power import NormalIndPower

POWER = 0.8


def mdd_factor(alpha: float = 0.05, power: float = POWER) -> float:
    """(z_{1−α/2} + z_power): the true difference, in standard errors, a two-sided level-α z-test detects
    with probability ``power`` (``NormalIndPower(ratio=0)``, the one-sample z-test, at one observation)."""
    return float(NormalIndPower().solve_power(effect_size=None, nobs1=1, alpha=alpha, power=power, ratio=0))


def minimum_detectable_difference(se: ArrayLike, alpha: float = 0.05, power: float = POWER) -> np.ndarray:
    """The smallest true difference detected with probability ``power`` by a level-``alpha`` test whose
    estimate has standard error ``se`` (same units as ``se``)."""
    return mdd_factor(alpha, power) * np.asarray(se, dtype=float)


def replicates_needed(se_one: float, difference: float, alpha: float = 0.05, power: float = POWER) -> int:
    """Independent replicates (e.g. seeds) so that the mean of n, with standard error ``se_one / √n``, detects
    ``difference`` with probability ``power``: ⌈(mdd(se_one) / difference)²⌉, at least 1."""
    if difference <= 0 or not np.isfinite(se_one):
        raise ValueError("difference must be positive and se_one finite")
    return max(1, int(np.ceil((float(minimum_detectable_difference(se_one, alpha, power)) / difference) ** 2)))
