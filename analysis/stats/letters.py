"""Compact letter display (Piepho 2004: insert-and-absorb, then sweep)."""

import string
from collections.abc import Iterable, Sequence

import pandas as pd

from analysis.stats.blocks import StatisticsError

LETTERS = string.ascii_lowercase + string.ascii_uppercase


def _maximal(groups: list[frozenset[str]]) -> list[frozenset[str]]:
    """Distinct non-empty groups that are not a proper subset of another (absorption)."""
    unique = [g for g in dict.fromkeys(groups) if g]
    return [g for g in unique if not any(g < h for h in unique)]


def _sweep(groups: list[frozenset[str]]) -> list[frozenset[str]]:
    """Piepho's sweep: drop a method's letter when every pair that letter connects shares another letter."""
    groups = list(groups)
    for i in range(len(groups)):
        for m in sorted(groups[i]):
            others = [h for j, h in enumerate(groups) if j != i and m in h]
            if others and all(any(n in h for h in others) for n in groups[i] - {m}):
                groups[i] = groups[i] - {m}
    return _maximal(groups)


def compact_letters(
    methods_ordered: Sequence[str], significant_pairs: Iterable[tuple[str, str]]
) -> pd.DataFrame:
    """Letters such that two methods share a letter exactly when their difference is not significant.

    ``methods_ordered`` is best first; letters are assigned in that order, so the best method has ``a``.
    After insert-and-absorb the sweep removes every letter that no non-significant pair needs. Returns
    ``method, letters`` in the given order.
    """
    methods = list(methods_ordered)
    position = {m: i for i, m in enumerate(methods)}
    groups: list[frozenset[str]] = [frozenset(methods)]
    for a, b in significant_pairs:
        if a not in position or b not in position:
            raise StatisticsError(f"significant pair ({a!r}, {b!r}) names a method not in {methods}")
        split = [g for g in groups if a in g and b in g]
        kept = [g for g in groups if not (a in g and b in g)]
        groups = _maximal(kept + [g - {a} for g in split] + [g - {b} for g in split])
    groups = _sweep(groups)
    groups.sort(key=lambda g: sorted(position[m] for m in g))
    if len(groups) > len(LETTERS):
        raise StatisticsError(f"{len(groups)} letter groups exceed the {len(LETTERS)} letters available")
    return pd.DataFrame(
        {
            "method": methods,
            "letters": ["".join(LETTERS[i] for i, g in enumerate(groups) if m in g) for m in methods],
        }
    )
