"""One download per page: every table the page showed, in full precision, as CSV and Parquet in one zip with
a ``manifest.json`` of what they were taken under (suite, page, the page's URL choices, each table's
filters). One link instead of two buttons per table keeps a page light for the browser.

The link is drawn under the page's title (:func:`start`, a placeholder); the page's tables are collected
during its run (:func:`offer`); when the page has run, :func:`finish` writes the zip as a static file
(:mod:`leaderboard.static`, named by a digest of its tables and manifest, so it is built once per content)
and fills the placeholder with a plain link to it: exactly what the page showed, and no download-button code
for a new visitor's browser to load.
"""

import io
import json
import re
import zipfile
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from leaderboard import static

KEY = "_downloads"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "table"


def parquet_bytes(df: pd.DataFrame, about: dict[str, Any] | None = None) -> bytes:
    """``df`` as Parquet; ``about`` (suite, metric, filters) goes in the file's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = df.copy()
    for c in frame.columns:  # objects pyarrow cannot type (lists of mixed things, dicts) go as text
        if frame[c].dtype == object:
            frame[c] = frame[c].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if about:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"mergesec": json.dumps(about, default=str).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def csv_bytes(df: pd.DataFrame, about: dict[str, Any] | None = None) -> bytes:
    """``df`` as CSV after ``# key: value`` lines recording what it was taken under (read it back with
    ``pandas.read_csv(path, comment="#")``)."""
    head = "".join(f"# {k}: {v}\n" for k, v in (about or {}).items())
    return (head + df.to_csv(index=False)).encode()


def zip_bytes(tables: dict[str, tuple[pd.DataFrame, dict[str, Any]]], page: dict[str, Any],
              csvs: dict[str, bytes] | None = None) -> bytes:
    """``<name>.csv`` and ``<name>.parquet`` per table (each records its own ``about``; ``csvs``: the CSV
    bytes if made already) and ``manifest.json``: ``page`` (suite, page, URL choices), the time it was built,
    and per table its file names, rows, columns and ``about``."""
    manifest = {**page, "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "tables": {}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (df, about) in tables.items():
            zf.writestr(f"{name}.csv", (csvs or {}).get(name) or csv_bytes(df, about))
            zf.writestr(f"{name}.parquet", parquet_bytes(df, about))
            manifest["tables"][name] = {"files": [f"{name}.csv", f"{name}.parquet"], "rows": len(df),
                                        "columns": [str(c) for c in df.columns], **about}
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
    return buf.getvalue()


HELP = ("A zip: every table on this page in full precision as CSV and Parquet, and manifest.json with the suite "
        "and the filters each was taken under. Each CSV starts with # key: value lines: read it with "
        "pandas.read_csv, comment='#'.")
FORMAT = "mergesec page download 2"  # part of every zip's digest: change it when zip_bytes changes


def start(page: str) -> None:
    """Begin a page: keep a place for its one download link here, first among its elements. The zip holds
    the tables the run then offers (:func:`offer`) and records the suite and the URL's choices."""
    ctx = st.session_state.get("_ctx")
    about: dict[str, Any] = {"source": "mergesec leaderboard", "page": page}
    if ctx:
        about |= {"suite": ctx.suite, "suite_hash": ctx.suite_hash, "suite_label": ctx.label}
    stem = f"mergesec_{ctx.suite}_{page}" if ctx else f"mergesec_{page}"
    st.session_state[KEY] = {"page": page, "tables": {}, "about": about, "file": f"{slug(stem)}.zip",
                             "slot": st.empty()}


def offer(df: pd.DataFrame, name: str, about: dict[str, Any]) -> None:
    """Add ``df`` (full precision) to the page's download under ``name`` (recording ``about``)."""
    got = st.session_state.get(KEY)
    if got is not None:
        got["tables"][slug(name)] = (df, about)


def finish() -> str | None:
    """After the page ran: publish its zip (unless a zip of the same tables and manifest is published
    already) and show the link to it in the place :func:`start` kept; returns the link (None: no tables, or
    no static serving, where a download button that builds the zip when clicked takes its place)."""
    got = st.session_state.pop(KEY, None)
    if not got or not got["tables"]:
        return None

    got["about"]["url_choices"] = dict(st.query_params.to_dict())  # as the page's widgets left the URL
    tables, about = got["tables"], got["about"]
    if not static.enabled():  # a bare `streamlit run`: the zip is built when the button is clicked
        got["slot"].download_button("Download this page's data", lambda: zip_bytes(tables, about), got["file"],
                                    "application/zip", key="download_page", on_click="ignore", type="tertiary",
                                    icon=":material/download:", help=HELP)
        return None
    csvs = {name: csv_bytes(df, info) for name, (df, info) in tables.items()}
    key = static.digest(FORMAT, json.dumps(about, sort_keys=True, default=str),
                        *(part for name, csv in csvs.items() for part in (name, csv)))
    if not static.exists(key, got["file"]):
        static.write(key, got["file"], zip_bytes(tables, about, csvs))
    link = static.url(key, got["file"])
    got["slot"].markdown(f'[:material/download: Download this page\'s data]({link} "{HELP}")')
    return link
