"""Shared page pieces: the current database and suite, tables with CSV/Parquet downloads, the empty page."""

import io
import re
import shlex
from dataclasses import dataclass

import pandas as pd
import streamlit as st


@dataclass(frozen=True)
class Context:
    """What every page reads: the database path and the chosen suite's hash and name."""

    db: str
    suite_hash: str
    suite: str


def context() -> Context:
    return st.session_state["_ctx"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "table"


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame = df.copy()
    for c in frame.columns:  # objects pyarrow cannot type (lists of mixed things, dicts) go as text
        if frame[c].dtype == object:
            frame[c] = frame[c].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def downloads(df: pd.DataFrame, name: str) -> None:
    """CSV and Parquet download buttons for ``df`` (the full-precision table, not the formatted view)."""
    slug = _slug(name)
    ctx = st.session_state.get("_ctx")
    stem = f"mergesec_{ctx.suite}_{slug}" if ctx else f"mergesec_{slug}"
    with st.container(horizontal=True, gap="small"):
        st.download_button("CSV", df.to_csv(index=False).encode(), f"{stem}.csv", "text/csv", key=f"csv_{slug}",
                           icon=":material/download:", on_click="ignore", type="tertiary")
        st.download_button("Parquet", parquet_bytes(df), f"{stem}.parquet", "application/vnd.apache.parquet",
                           key=f"parquet_{slug}", icon=":material/download:", on_click="ignore", type="tertiary")


def table(df: pd.DataFrame, name: str, shown: pd.DataFrame | None = None, **kwargs) -> None:
    """``shown`` (default ``df``) as a dataframe, then download buttons for ``df``."""
    st.dataframe(df if shown is None else shown, hide_index=True, **kwargs)
    downloads(df, name)


def fit_height(n_rows: int, cap: int = 30) -> int:
    """Pixel height that shows ``n_rows`` rows (up to ``cap``) without a scrollbar."""
    return 38 + 35 * min(n_rows, cap)


def value_column(label: str, percent: bool, help: str = "", lo: float | None = None, hi: float | None = None):
    """A column config for a metric: a bar for rates in [0, 1], a plain number otherwise."""
    if percent and lo is not None and hi is not None and lo >= 0 and hi <= 1:
        return st.column_config.ProgressColumn(label, help=help, format="percent", min_value=0.0, max_value=1.0)
    return st.column_config.NumberColumn(label, help=help, format="percent" if percent else "%.3f")


def no_results_page(status: dict, db: str) -> None:
    """The page shown instead of the leaderboard when the database is missing, unreadable or empty."""
    st.title("mergesec leaderboard")
    st.header("No results yet" if status["reason"] != "unreadable" else "Cannot read the results database")
    st.warning(status["detail"], icon=":material/database:")
    db = shlex.quote(db)
    cmds = [(f"make demo DB={db}", "the digits suite on a CPU (sets up .venv first)"),
            (f"mergesec run --suite digits --db {db}", "the same, by hand"),
            (f"mergesec leaderboard --db {db}", "open this app on that database")]
    width = max(len(c) for c, _ in cmds) + 3
    lines = "\n".join(f"{c:<{width}}# {note}" for c, note in cmds)
    st.markdown(f"Produce results with the benchmark, then reload this page:\n\n```bash\n{lines}\n```")
    st.markdown("Another database: `mergesec leaderboard --db PATH` or `MERGESEC_DB=PATH`. The leaderboard only "
                "reads the database; a run may write to it while the app is open.")
