"""The whole results database for download: the DuckDB file itself, and every table and view as Parquet
in one zip with a data dictionary (what each table and column means). Built on request (a download
button's callable), from the last consistent copy of the database (:mod:`leaderboard.snapshots`)."""

import io
import zipfile
from pathlib import Path

import duckdb

from leaderboard import snapshots
from leaderboard.downloads import parquet_bytes
from leaderboard.standing import HEADERS

TABLES = {
    "suites": "one row per suite version: name, version, hash and the full spec (JSON)",
    "runs": "one row per `mergesec run` / `submit` / `reproduce`: command, git commit, versions, hardware, status",
    "units_done": "one row per finished unit of work (the resume log), with its run and time",
    "methods": "registered merging methods and defenses: kind, source (builtin | submission:<slug>), paper, "
               "code, authors, code hash, hyperparameters",
    "reproductions": "`mergesec reproduce` verdicts per submission and suite, with the code hash they hold for",
    "merge_eval": "merge track: the merged model's clean accuracy per method, task and seed",
    "transfer_metrics": "transfer track: one row per method × task × attack × surrogate × budget × seed",
    "transfer_examples": "transfer track: one row per attacked example (the outcomes behind McNemar tests)",
    "backdoor_metrics": "backdoor track: one row per attack × variant × method × defense × tasks × seed",
    "backdoor_examples": "backdoor track: one row per triggered example",
}

COLUMNS = {
    **HEADERS, "suite_hash": "hash of the suite spec: results of different hashes never mix",
    "suite": "suite name", "version": "suite version", "spec": "the suite's full spec (JSON)",
    "registered_at": "when first stored (UTC)", "run_id": "the run that wrote the row", "status": "run status",
    "started_at": "UTC", "ended_at": "UTC", "command": "the command line (reproduces the run)",
    "git_commit": "mergesec's git commit", "mergesec_version": "package version", "packages": "library versions (JSON)",
    "hardware": "CPU / accelerator (JSON)", "config_hash": "hash of the run's configuration",
    "unit_key": "the unit of work that wrote the row", "name": "method or defense name", "kind": "merge | defense",
    "source": "builtin | submission:<slug>", "paper": "paper (title and/or URL)", "code_url": "code URL",
    "authors": "authors", "code_hash": "hash of the code that produced the results", "needs": "data it needs (JSON)",
    "subject": "the reproduced submission", "verdict": "reproduced | failed | ...",
    "max_abs_diff": "largest |stored − recomputed|", "n_compared": "numbers compared", "tolerance": "allowed",
    "example_id": "test example index", "label": "true class", "hit": "triggered prediction = target class",
    "counted": "both models classify the clean example correctly (the ASR denominator)",
}


def _source(db: str | Path) -> Path:
    return snapshots.refresh(db) or Path(db)


def duckdb_bytes(db: str | Path) -> bytes:
    """The database file as committed (the last consistent copy)."""
    return _source(db).read_bytes()


def data_dictionary(con: duckdb.DuckDBPyConnection) -> str:
    """Markdown: each exported table's meaning and its columns with type and meaning."""
    cols = con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                       "ORDER BY table_name, ordinal_position").df()
    lines = ["# mergesec results: data dictionary", "",
             "Rates are fractions in [0, 1]; budgets `eps` are L∞ radii on [0, 1] pixels (8/255 = 0.0314).", ""]
    for table, about in TABLES.items():
        mine = cols[cols.table_name == table]
        if mine.empty:
            continue
        lines += [f"## {table}", "", about, "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| {c} | {t} | {COLUMNS.get(c, '')} |" for c, t in zip(mine.column_name, mine.data_type,
                                                                          strict=True)]
        lines.append("")
    return "\n".join(lines)


def parquet_zip(db: str | Path) -> bytes:
    """Every table of :data:`TABLES` as ``<table>.parquet`` plus ``DATA_DICTIONARY.md``, zipped."""
    buf = io.BytesIO()
    with duckdb.connect(str(_source(db)), read_only=True) as con, zipfile.ZipFile(buf, "w") as zf:
        present = set(con.execute("SELECT table_name FROM information_schema.tables").df().table_name)
        for table in TABLES:
            if table in present:
                zf.writestr(f"{table}.parquet", parquet_bytes(con.execute(f"SELECT * FROM {table}").df()))
        zf.writestr("DATA_DICTIONARY.md", data_dictionary(con))
    return buf.getvalue()
