"""The papers' claims with this benchmark's verdicts (:mod:`analysis.claims`).

:func:`stored` reads the ``findings.json`` that `mergesec analyze` wrote for the suite, if one lies beside
the database (``report/``, ``reports/<suite>/``) or under the working directory (``reports/<suite>/``);
:func:`computed` runs :func:`analysis.report.build_report` on request (tens of seconds on a real suite,
so the Overview never runs it unasked). Both return ``claim, verdict, about, result`` per claim (``about``:
the population the verdict is about, ``Finding.population``; empty in findings stored before it existed).
"""

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

COLUMNS = ["claim", "verdict", "about", "result"]


def _table(findings: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": f["title"], "verdict": f["verdict"], "about": f.get("population", ""),
                          "result": f.get("result", "")} for f in findings], columns=COLUMNS)


def stored(db: str, suite: str, suite_hash: str) -> tuple[pd.DataFrame, Path] | None:
    """The newest stored findings of ``suite_hash`` and where they are, or None."""
    here = Path(db).resolve().parent
    candidates = [here / "report", here / "reports" / suite, Path("reports") / suite]
    found = []
    for folder in candidates:
        f = folder / "findings.json"
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("suite_hash") == suite_hash and isinstance(doc.get("findings"), list):
            found.append((f.stat().st_mtime, f, doc))
    if not found:
        return None
    _, path, doc = max(found, key=lambda t: t[0])
    return _table(doc["findings"]), path


@st.cache_data(show_spinner=False, max_entries=8)
def computed(db: str, state: tuple, suite_hash: str) -> pd.DataFrame:
    """Every finding on the suite's results now (``state``: the database's, the cache key)."""
    from analysis.report import build_report
    from leaderboard.data import Reader

    with tempfile.TemporaryDirectory(prefix="mergesec-claims-") as out:
        rep = build_report(Reader(db), suite_hash, out, figures=False)
    return _table([f.as_dict() for f in rep.findings])
