"""What every claim returns: a :class:`Finding` with a verdict from one fixed vocabulary, and its formatting.

Verdicts (docs/analysis.md, "Verdicts"):

- ``supported``: the claim's test rejects its null hypothesis at α (Holm within the claim's own family) in
  the claimed direction;
- ``not supported``: it rejects in the opposite direction, or it does not reject although its minimum
  detectable difference (MDD, 80% power) is at most the claim's stated effect, i.e. it could have seen it;
- ``underpowered``: it does not reject and its MDD exceeds the stated effect: "not shown", not "false";
- ``inconclusive``: the parts of the claim disagree (e.g. Spearman vs Kendall) or the data carry no
  variation to test; the result says which;
- ``no data``: what the claim needs is not stored (the text says what to run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
UNDERPOWERED = "underpowered"
INCONCLUSIVE = "inconclusive"
NO_DATA = "no data"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, UNDERPOWERED, INCONCLUSIVE, NO_DATA)

THESE_TASKS = "this benchmark's tasks"
NEW_TASKS = "new tasks"
OTHER_METHODS = "merging methods like these"
"""The populations a verdict can be about (docs/analysis.md, "The inference unit"): the test images of
these tasks (image bootstrap), new tasks like these (a t-test over task means), or other merging methods
(a test over the methods' values)."""


class Claim(NamedTuple):
    """A published claim: the key of its finding, a short title and the claim's text."""

    key: str
    title: str
    text: str


@dataclass
class Finding:
    """One tested claim: what it says, how it was tested, the numbers, the verdict and its power.

    ``mdd``: the minimum detectable difference at 80% power of the test that decides the verdict (in the
    claim's units: a rate difference, or a correlation for claim 2); ``effect``: the stated effect the claim
    must show (a verdict of ``underpowered`` means ``mdd > effect``); ``unit``: the inference unit;
    ``population``: what the verdict is about (:data:`THESE_TASKS`, :data:`NEW_TASKS`, :data:`OTHER_METHODS`).
    """

    key: str
    title: str
    claim: str
    test: str
    verdict: str
    result: str = ""
    numbers: dict[str, float | int | str | None] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    mdd: float | None = None
    effect: float | None = None
    unit: str = ""
    population: str = ""

    def as_dict(self) -> dict:
        """JSON-able summary (tables as lists of records); the schema is in docs/analysis.md."""
        return {
            "key": self.key,
            "title": self.title,
            "claim": self.claim,
            "test": self.test,
            "verdict": self.verdict,
            "result": self.result,
            "mdd": _jsonable(self.mdd),
            "effect": _jsonable(self.effect),
            "unit": self.unit,
            "population": self.population,
            "numbers": _jsonable(self.numbers),
            "notes": self.notes,
            "figures": self.figures,
            "tables": {k: _jsonable(v.to_dict(orient="records")) for k, v in self.tables.items()},
        }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def no_data(claim: Claim, test: str, what: str) -> Finding:
    """The ``no data`` finding of ``claim``; ``what`` says what is missing and what to run."""
    return Finding(*claim, test, NO_DATA, result=f"No data: {what}", notes=[what])


def finding(
    claim: Claim, test: str, verdict: str, result: str, remark: str, numbers: dict,
    tables: dict[str, pd.DataFrame], *, mdd: float | None, effect: float | None, unit: str, population: str,
    notes: Sequence[str] = (),
) -> Finding:
    """The finding of ``claim``; a non-empty ``remark`` is appended to ``result`` as `` (remark.)``."""
    if remark:
        result += f" ({remark}.)"
    return Finding(*claim, test, verdict, result, numbers, tables, list(notes), [], mdd, effect, unit, population)


def combine(verdicts: Sequence[str]) -> str:
    """A claim made of parts that must all hold: supported if all are, not supported if any is not,
    else underpowered if any is, else inconclusive."""
    parts = set(verdicts)
    if not parts:
        return NO_DATA
    if parts == {SUPPORTED}:
        return SUPPORTED
    for v in (NOT_SUPPORTED, UNDERPOWERED):
        if v in parts:
            return v
    return INCONCLUSIVE


# -- formatting --------------------------------------------------------------------------------------------


def fmt_p(p: float | None) -> str:
    if p is None or pd.isna(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def peq(p: float | None, name: str = "p") -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    text = fmt_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def fmt_ci(ci) -> str:
    """pingouin's CI95 array as ``[lo, hi]``."""
    lo, hi = (float(v) for v in ci)
    return f"[{lo:.2f}, {hi:.2f}]"


def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or pd.isna(v) else f"{100 * v:.{digits}f}%"


def pp(v: float | None, digits: int = 1) -> str:
    """A difference of rates in percentage points, signed."""
    return "–" if v is None or pd.isna(v) else f"{100 * v:+.{digits}f} pp"
