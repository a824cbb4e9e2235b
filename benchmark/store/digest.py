"""A digest of each unit's stored rows (`units_done.rows_digest`), so a reproduction can be tied to exactly
the rows it checked and any later edit of those rows is detected.

The digest is sha256 over the unit's rows in every result table, read back from the database: per table
(sorted by name) the column names (sorted; `unit_key` and timing columns, whose names contain "seconds",
left out, since a re-run never times the same) and the rows as canonical text, sorted. Numbers are written
exactly (`repr` of the float, integers and integral floats as integers), so two bitwise-identical runs
give the same digest on any machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

import duckdb
import pandas as pd

from benchmark.store.schema import RESULT_TABLES


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return repr(str(v))


def unit_digest(con: duckdb.DuckDBPyConnection, unit_key: str, tables: Iterable[str] = RESULT_TABLES) -> str:
    """The digest of one unit's rows as they are stored now (module docstring). `tables` may name only the
    result tables that hold rows of the unit (the writer knows them): the others add nothing to the digest."""
    h = hashlib.sha256()
    for table in sorted(tables):
        cur = con.execute(f"SELECT * FROM {table} WHERE unit_key = ?", [unit_key])
        names = [d[0] for d in cur.description]
        keep = sorted(i for i, n in enumerate(names) if n != "unit_key" and "seconds" not in n)
        keep.sort(key=lambda i: names[i])
        rows = sorted("\x1f".join(_value(r[i]) for i in keep) for r in cur.fetchall())
        if rows:
            h.update(f"{table}\x1e{','.join(names[i] for i in keep)}\x1e{len(rows)}\x1e".encode())
            h.update("\x1e".join(rows).encode())
    return h.hexdigest()


def recompute(con: duckdb.DuckDBPyConnection, unit_keys: Iterable[str]) -> dict[str, str]:
    """{unit_key: digest of its rows now} for `unit_keys`."""
    return {k: unit_digest(con, k) for k in unit_keys}


def combined(digests: dict[str, str | None]) -> str:
    """One digest of several units' digests: sha256 of 'key:digest' joined by ',' in key order (the SQL
    `sha256(string_agg(unit_key || ':' || rows_digest, ',' ORDER BY unit_key))` gives the same)."""
    return hashlib.sha256(",".join(f"{k}:{digests[k] or ''}" for k in sorted(digests)).encode()).hexdigest()


CURRENT_DIGEST_SQL = """(SELECT sha256(string_agg(u.unit_key || ':' || coalesce(u.rows_digest, ''), ','
    ORDER BY u.unit_key)) FROM units_done u
    WHERE list_contains(json_extract_string(r.details, '$.unit_keys[*]'), u.unit_key))"""
"""SQL (over `reproductions r`): the combined digest (`digest.combined`) of the units the verdict checked
(`details.unit_keys`), as they are stored now; a badge needs it to equal the verdict's `rows_digest`."""


def current_verdicts(verdicts: pd.DataFrame, code_hash: str | None) -> pd.DataFrame:
    """The latest verdict per suite among `verdicts` (rows with `suite_hash`, `verdict`, `code_hash`,
    `checked_at`, `rows_digest`, `current_digest`) reached on the code with hash `code_hash`; verdicts on
    other code are ignored. A "reproduced" verdict whose `rows_digest` is not the digest of the rows stored
    now (`current_digest`: rows replaced since, or a verdict inserted by hand without a reproduction) becomes
    "not verified"."""
    mine = verdicts[verdicts.code_hash == code_hash] if code_hash else verdicts.iloc[:0]
    mine = mine.sort_values("checked_at", ascending=False, kind="stable").drop_duplicates("suite_hash")
    forged = (mine.verdict == "reproduced") & (mine.rows_digest.isna() | (mine.rows_digest != mine.current_digest))
    return mine.assign(verdict=mine.verdict.where(~forged, "not verified"))
