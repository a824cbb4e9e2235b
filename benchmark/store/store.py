"""The DuckDB results store: one writer, short-lived read-only readers.

DuckDB lets one process write or many read a file at a time. So the writer opens the file for a batch of
units (one transaction each; the runner flushes every couple of seconds) and closes it again, and readers
open it read-only for one query: a leaderboard never blocks a run for long, and a run never leaves a reader
without the last committed results. A
transaction is all-or-nothing (DuckDB's write-ahead log survives `kill -9`), and a unit's rows are replaced,
never appended twice, so re-running a unit cannot duplicate rows.
"""

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from benchmark.errors import StoreError
from benchmark.store.digest import unit_digest
from benchmark.store.schema import MIGRATIONS, RESULT_TABLES, SCHEMA_VERSION

DEFAULT_DB = "results/mergesec.duckdb"
_LOCK_WAIT_S = 60.0
_HELD_S = 5.0
"""A read-only lock held this long by the same other process is an open connection (a notebook, the DuckDB
CLI), not one of mergesec's one-query readers: fail with a message naming it instead of waiting out
`_LOCK_WAIT_S`. A writer's lock (another run) is waited for as before."""
_READER_HINT = "would be able to open this database in read-only mode"  # DuckDB says so when the holder reads


def default_db_path() -> Path:
    """`$MERGESEC_DB`, else results/mergesec.duckdb."""
    return Path(os.environ.get("MERGESEC_DB", DEFAULT_DB))


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class UnitRows:
    """What one finished unit of work writes: its result tables and its `units_done` row."""

    unit_key: str
    track: str
    suite_hash: str
    run_id: str
    description: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    seconds: float
    replaces: list[str] | None = None


class Store:
    """Access to one results database file."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_db_path()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held only for the `with` block; waits (bounded) while another process holds the lock."""
        if read_only and not self.path.exists():
            raise StoreError(f"no results database at {self.path}; run `mergesec run` first (or pass --db)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        holders: dict[str, float] = {}
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as e:
                now, holder = time.monotonic(), re.search(r"\(PID (\d+)\)", str(e))
                reader = holder and _READER_HINT in str(e)
                if reader and now - holders.setdefault(holder.group(1), now) > _HELD_S:
                    raise StoreError(
                        f"cannot open {self.path}: process {holder.group(1)} has held it open read-only for "
                        f"{_HELD_S:g} s (a notebook or the DuckDB CLI?); close that connection and run the command "
                        "again") from e
                if "lock" not in str(e).lower() or now - start > _LOCK_WAIT_S:
                    raise StoreError(f"cannot open {self.path}: {e}") from e
                time.sleep(0.2)
        try:
            yield con
        finally:
            con.close()

    # -- schema -------------------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Create or upgrade the schema to SCHEMA_VERSION; returns the version found before."""
        with self.connect() as con:
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
            ).fetchone()[0]
            found = con.execute("SELECT max(version) FROM schema_version").fetchone()[0] if exists else 0
            found = found or 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {found}, newer than this mergesec ({SCHEMA_VERSION}); "
                    "upgrade mergesec or use another --db"
                )
            for version in range(found, SCHEMA_VERSION):
                con.execute("BEGIN TRANSACTION")
                for stmt in MIGRATIONS[version]:
                    con.execute(stmt)
                con.execute("INSERT INTO schema_version VALUES (?, ?)", [version + 1, _now()])
                con.execute("COMMIT")
        return found

    # -- writer -------------------------------------------------------------------------------------------
    def upsert(self, table: str, key_cols: list[str], row: dict[str, Any]) -> None:
        """Insert or replace one metadata row (suites, models, methods, runs) identified by `key_cols`."""
        if table not in {"suites", "models", "methods", "runs"}:
            raise StoreError(f"upsert into unknown table {table!r}")
        row = {k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else v
               for k, v in row.items()}
        cols = list(row)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DELETE FROM {table} WHERE " + " AND ".join(f"{c} = ?" for c in key_cols),
                        [row[c] for c in key_cols])
            con.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])
            con.execute("COMMIT")

    def write_unit(
        self,
        unit_key: str,
        track: str,
        suite_hash: str,
        run_id: str,
        description: dict[str, Any],
        tables: dict[str, pd.DataFrame],
        seconds: float,
        replaces: list[str] | None = None,
    ) -> None:
        """Replace the unit's rows in every result table and mark it done, in one transaction. The rows of
        the units in `replaces` (earlier versions of the same setting) go in the same transaction."""
        self.write_units([UnitRows(unit_key, track, suite_hash, run_id, description, tables, seconds, replaces)])

    def write_units(self, units: list["UnitRows"]) -> None:
        """`write_unit` for several units through one connection (opening and closing the file costs more than
        a small unit's rows): still one transaction per unit, committed in order, so a failure or a kill
        keeps every unit before it and nothing of it."""
        for u in units:
            unknown = set(u.tables) - RESULT_TABLES
            if unknown:
                raise StoreError(f"unit {u.unit_key} writes unknown tables {sorted(unknown)}")
        if not units:
            return
        with self.connect() as con:
            # A unit's rows and its units_done row are committed together, so a key absent from units_done
            # has no rows anywhere: only stored keys (re-runs) and replaced versions need deleting, and the
            # digest needs only the tables the unit writes.
            stored = set(con.execute("SELECT unit_key FROM units_done WHERE list_contains(?, unit_key)",
                                     [[u.unit_key for u in units]]).df().unit_key)
            for u in units:
                con.execute("BEGIN TRANSACTION")
                try:
                    gone = [*([u.unit_key] if u.unit_key in stored else []), *(u.replaces or [])]
                    if gone:
                        _delete_units(con, gone)
                    for table, df in u.tables.items():
                        if len(df):
                            frame = df.assign(unit_key=u.unit_key)  # noqa: F841 (referenced by name in SQL)
                            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
                    con.execute(
                        "INSERT INTO units_done BY NAME SELECT ? AS unit_key, ? AS track, ? AS suite_hash, "
                        "? AS run_id, ? AS description, ? AS seconds, ? AS finished_at, ? AS rows_digest",
                        [u.unit_key, u.track, u.suite_hash, u.run_id,
                         json.dumps(u.description, sort_keys=True, default=str), u.seconds, _now(),
                         unit_digest(con, u.unit_key, [t for t, df in u.tables.items() if len(df)])],
                    )
                    con.execute("COMMIT")
                    stored.add(u.unit_key)
                except Exception:
                    con.execute("ROLLBACK")
                    raise

    def forget_units(self, unit_keys: list[str]) -> None:
        """Remove units and their rows (the runner drops earlier versions of settings it finds stored)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            _delete_units(con, unit_keys)
            con.execute("COMMIT")

    def mark_runs(self, run_ids: list[str], status: str, error: str) -> None:
        """Close the given `running` runs with `status` and `error` (a stale run's driver is gone)."""
        with self.connect() as con:
            con.execute("UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE status = 'running' "
                        "AND list_contains(?, run_id)", [status, error, _now(), run_ids])

    def add_reproduction(self, row: dict[str, Any]) -> None:
        row = {**row, "details": json.dumps(row["details"], sort_keys=True, default=str), "checked_at": _now()}
        with self.connect() as con:
            cols = list(row)
            con.execute(f"INSERT INTO reproductions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])

    # -- readers ------------------------------------------------------------------------------------------
    def done_keys(self, keys: list[str]) -> set[str]:
        """Which of `keys` are already stored (for resuming)."""
        if not self.path.exists() or not keys:
            return set()
        with self.connect() as con:
            rows = con.execute("SELECT unit_key FROM units_done WHERE list_contains(?, unit_key)", [keys]).fetchall()
        return {r[0] for r in rows}

    def read(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a parameterised query on a read-only connection; values go in `params`, never into `sql`."""
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()


def _delete_units(con: duckdb.DuckDBPyConnection, unit_keys: list[str]) -> None:
    """Delete the units' rows from every result table and from `units_done` (inside the caller's transaction)."""
    for table in [*sorted(RESULT_TABLES), "units_done"]:
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, unit_key)", [unit_keys])


def open_store(path: Path | str | None = None) -> Store:
    """A migrated store at `path` (created if missing)."""
    store = Store(path)
    store.migrate()
    return store
