"""Compact letter display (Piepho 2004, insert-and-absorb)."""

import string
from collections.abc import Iterable, Sequence

import pandas as pd

from analysis.stats.blocks import StatisticsError

LETTERS = string.ascii_lowercase + string.ascii_uppercase


def compact_letters(
    methods_ordered: Sequence[str], significant_pairs: Iterable[tuple[str, str]]
) -> pd.DataFrame:
    """Letters such that two methods share a letter exactly when their difference is not significant.

    ``methods_ordered`` is best first; letters are assigned in that order, so the best method has ``a``.
    Returns ``method, letters`` in the given order.
    """
    methods = list(methods_ordered)
    position = {m: i for i, m in enumerate(methods)}
    groups: list[frozenset[str]] = [frozenset(methods)]
    for a, b in significant_pairs:
        if a not in position or b not in position:
            raise StatisticsError(f"significant pair ({a!r}, {b!r}) names a method not in {methods}")
        split = [g for g in groups if a in g and b in g]
        kept = [g for g in groups if not (a in g and b in g)]
        candidates = kept + [g - {a} for g in split] + [g - {b} for g in split]
        groups = [g for g in dict.fromkeys(candidates) if not any(g < h for h in candidates)]
    groups.sort(key=lambda g: sorted(position[m] for m in g))
    if len(groups) > len(LETTERS):
        raise StatisticsError(f"{len(groups)} letter groups exceed the {len(LETTERS)} letters available")
    return pd.DataFrame(
        {
            "method": methods,
            "letters": ["".join(LETTERS[i] for i, g in enumerate(groups) if m in g) for m in methods],
        }
    )
