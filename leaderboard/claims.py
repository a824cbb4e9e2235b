"""The papers' claims with this benchmark's verdicts (:mod:`analysis.findings` via
:func:`analysis.report.build_report`), computed in a background thread so that no page waits for them.

:func:`verdicts` returns the finished table for the database's current state, or None while it is being
computed (it starts the computation if nobody has). Guarantee: never raises; a failure is logged and
reported as None with the reason in :func:`failure`.
"""

import logging
import tempfile
import threading

import pandas as pd

LOG = logging.getLogger("mergesec.leaderboard")
_LOCK = threading.Lock()
_DONE: dict[tuple, pd.DataFrame] = {}
_RUNNING: set[tuple] = set()
_FAILED: dict[tuple, str] = {}


def _compute(key: tuple, db: str, suite_hash: str) -> None:
    from analysis.report import build_report
    from leaderboard.data import Reader

    try:
        with tempfile.TemporaryDirectory(prefix="mergesec-claims-") as out:
            rep = build_report(Reader(db), suite_hash, out, figures=False)
        table = pd.DataFrame([{"claim": f.title, "verdict": f.verdict, "result": f.result} for f in rep.findings])
        with _LOCK:
            _DONE[key] = table
    except Exception as e:  # a background thread: log, never crash the server
        LOG.warning("checking the papers' claims failed: %s", e)
        with _LOCK:
            _FAILED[key] = type(e).__name__
    finally:
        with _LOCK:
            _RUNNING.discard(key)


def verdicts(db: str, state: tuple, suite_hash: str) -> pd.DataFrame | None:
    """``claim, verdict, result`` per claim, or None while they are computed (started here if needed)."""
    key = (db, state, suite_hash)
    with _LOCK:
        if key in _DONE:
            return _DONE[key]
        if key in _RUNNING or key in _FAILED:
            return None
        _RUNNING.add(key)
    threading.Thread(target=_compute, args=(key, db, suite_hash), daemon=True, name="mergesec-claims").start()
    return None


def failure(db: str, state: tuple, suite_hash: str) -> str | None:
    """Why the claims could not be checked for this state, if they could not."""
    with _LOCK:
        return _FAILED.get((db, state, suite_hash))
