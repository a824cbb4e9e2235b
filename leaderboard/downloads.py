"""One download per page: every table the page showed, in full precision, as CSV and Parquet in one zip with
a ``manifest.json`` of what they were taken under (suite, page, the page's URL choices, each table's
filters). One button instead of two per table keeps a page light for the browser.

The button is drawn under the page's title (:func:`start`); the page's tables are collected during its run
(:func:`offer`) and zipped when the button is clicked, so it offers exactly what the page showed.
"""

import io
import json
import re
import zipfile
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

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


def zip_bytes(tables: dict[str, tuple[pd.DataFrame, dict[str, Any]]], page: dict[str, Any]) -> bytes:
    """``<name>.csv`` and ``<name>.parquet`` per table (each records its own ``about``) and ``manifest.json``:
    ``page`` (suite, page, URL choices), the time taken, and per table its file names, rows, columns and
    ``about``."""
    manifest = {**page, "taken_at": datetime.now(UTC).isoformat(timespec="seconds"), "tables": {}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (df, about) in tables.items():
            zf.writestr(f"{name}.csv", csv_bytes(df, about))
            zf.writestr(f"{name}.parquet", parquet_bytes(df, about))
            manifest["tables"][name] = {"files": [f"{name}.csv", f"{name}.parquet"], "rows": len(df),
                                        "columns": [str(c) for c in df.columns], **about}
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
    return buf.getvalue()


def start(page: str) -> None:
    """Begin a page: draw its one download button here, first among its elements (so that the browser loads
    the button's code while the rest of the page is computed). The button's zip holds the tables the run
    then offers (:func:`offer`), built when clicked, and records the suite and the URL's choices."""
    ctx = st.session_state.get("_ctx")
    about = {"source": "mergesec leaderboard", "page": page, "url_choices": dict(st.query_params.to_dict())}
    if ctx:
        about |= {"suite": ctx.suite, "suite_hash": ctx.suite_hash}
    tables: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {}
    st.session_state[KEY] = {"page": page, "tables": tables, "about": about}
    stem = f"mergesec_{ctx.suite}_{page}" if ctx else f"mergesec_{page}"
    st.download_button(
        "Download this page's data", lambda: zip_bytes(tables, about), f"{stem}.zip", "application/zip",
        key="download_page", on_click="ignore", type="tertiary", icon=":material/download:",
        help="A zip: every table on this page in full precision as CSV and Parquet, and manifest.json with the "
             "suite and the filters each was taken under (CSV: `# key: value` lines, read with "
             "`pandas.read_csv(f, comment='#')`).")


def offer(df: pd.DataFrame, name: str, about: dict[str, Any]) -> None:
    """Add ``df`` (full precision) to the page's download under ``name`` (recording ``about``)."""
    got = st.session_state.get(KEY)
    if got is not None:
        got["tables"][slug(name)] = (df, about)
