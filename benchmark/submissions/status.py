"""The submissions in the repository and whether their stored results are reproduced, from the manifests and
the results database alone: no submitted code is imported or run (`mergesec list submissions`).

A `reproduce` verdict holds for the code it was reached on (`details.code_hash` of a `reproductions` row): a
changed submission has no verdict until it is reproduced again. The leaderboard's badge uses the same rule.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.store import Store
from benchmark.store.digest import CURRENT_DIGEST_SQL, current_verdicts
from benchmark.submissions.loader import list_slugs, load_submission, submissions_dir
from benchmark.submissions.manifest import SubmissionError

VERDICT_COLUMNS = ["subject", "suite", "suite_hash", "verdict", "code_hash", "checked_at", "rows_digest",
                   "current_digest"]
COLUMNS = ["submission", "kind", "tracks", "suites", "code_hash", "reproduced"]
KINDS = {"merge": "merge method", "defense": "defense"}


def stored_verdicts(store: Store) -> pd.DataFrame:
    """Every recorded `reproduce` verdict, newest first, with its suite's name and the code hash it is for."""
    if not store.path.exists():
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    return store.read(f"""
        SELECT r.subject, coalesce(s.suite, r.suite_hash) AS suite, r.suite_hash, r.verdict,
               json_extract_string(r.details, '$.code_hash') AS code_hash, r.checked_at, r.rows_digest,
               {CURRENT_DIGEST_SQL} AS current_digest
        FROM reproductions r LEFT JOIN suites s USING (suite_hash) ORDER BY r.checked_at DESC""")


def reproduced(verdicts: pd.DataFrame, code_hash: str) -> str:
    """`<suite>: <verdict>` per suite for the current code, else why there is none."""
    current = current_verdicts(verdicts, code_hash)
    if len(current):
        return ", ".join(f"{s}: {v}" for s, v in sorted(zip(current.suite, current.verdict, strict=True)))
    return "no: the code changed since it was reproduced" if len(verdicts) else "no"


def _row(folder: Path, all_verdicts: pd.DataFrame) -> dict[str, str]:
    try:
        sub = load_submission(folder)
    except SubmissionError:
        return {"submission": folder.name, "kind": "invalid (see mergesec validate)", "tracks": "-", "suites": "-",
                "code_hash": "-", "reproduced": "-"}
    m = sub.manifest
    return {"submission": m.name, "kind": KINDS[m.kind], "tracks": ", ".join(m.tracks),
            "suites": ", ".join(m.suites), "code_hash": sub.code_hash,
            "reproduced": reproduced(all_verdicts[all_verdicts.subject == sub.slug], sub.code_hash)}


def submissions_table(store: Store, root: Path | None = None) -> pd.DataFrame:
    """One row per submission folder under `root` (default: `submissions_dir()`): manifest name, kind, tracks,
    suites, content hash and the reproduce verdicts stored in `store` for that content hash."""
    root = Path(root) if root is not None else submissions_dir()
    all_verdicts = stored_verdicts(store)
    return pd.DataFrame([_row(root / slug, all_verdicts) for slug in list_slugs(root)], columns=COLUMNS)
