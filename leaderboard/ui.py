"""Shared page pieces: the current database and suite, tables with CSV/Parquet downloads, the empty page."""

import io
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from leaderboard import tables


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


def about(**choices: Any) -> dict[str, Any]:
    """What a download was taken under: the suite and the page's choices (empty filters = all)."""
    ctx = st.session_state.get("_ctx")
    out: dict[str, Any] = {"source": "mergesec leaderboard"}
    if ctx:
        out |= {"suite": ctx.suite, "suite_hash": ctx.suite_hash}
    for k, v in choices.items():
        if isinstance(v, dict | tuple) and k == "filters":
            items = dict(v) if isinstance(v, tuple) else v
            v = "; ".join(f"{f}={','.join(map(str, vals))}" for f, vals in items.items() if vals) or "none (all)"
        out[k] = v
    return out


def downloads(df: pd.DataFrame, name: str, about_: dict[str, Any] | None = None) -> None:
    """CSV and Parquet download buttons for ``df`` (the full-precision table, not the formatted view), each
    recording the suite and ``about_`` (metric, filters) it was taken under."""
    slug = _slug(name)
    ctx = st.session_state.get("_ctx")
    stem = f"mergesec_{ctx.suite}_{slug}" if ctx else f"mergesec_{slug}"
    info = about_ or about()
    with st.container(horizontal=True, gap="small"):
        st.download_button("CSV", lambda: csv_bytes(df, info), f"{stem}.csv", "text/csv", key=f"csv_{slug}",
                           icon=":material/download:", on_click="ignore", type="tertiary")
        st.download_button("Parquet", lambda: parquet_bytes(df, info), f"{stem}.parquet",
                           "application/vnd.apache.parquet", key=f"parquet_{slug}", icon=":material/download:",
                           on_click="ignore", type="tertiary")


def table(df: pd.DataFrame, name: str, shown: pd.DataFrame | None = None, about_: dict[str, Any] | None = None,
          **kwargs) -> None:
    """``shown`` (default ``df``) as a dataframe, then download buttons for ``df``."""
    st.dataframe(df if shown is None else shown, hide_index=True, **kwargs)
    downloads(df, name, about_)


MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: object) -> str:
    """Untrusted text (a submission's manifest) as literal Markdown: no HTML, links, images or formatting."""
    return MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


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


def busy_page() -> None:
    """Shown when a run holds the write lock and this server has no earlier copy of the database yet."""
    st.title("mergesec leaderboard")
    st.info("A benchmark run is writing to the results database right now, and this server has not read it "
            "before, so there is no earlier snapshot to show. Reload in a few seconds.", icon=":material/sync:")


def ranking_columns(spec, res: pd.DataFrame) -> dict:
    """Column configs of :func:`leaderboard.tables.ranking_display` for ``spec``'s metric."""
    better = "higher" if spec.higher_is_better else "lower"
    return {
        "rank": st.column_config.NumberColumn(
            "rank", width="small", help="CI-aware rank: 1 + the number of methods significantly better "
                                        "(paired tests); methods that cannot be told apart share a rank"),
        "method": st.column_config.LinkColumn("method", display_text=r"method=([^&]+)",
                                              help="opens the method's page"),
        "badge": st.column_config.TextColumn(
            "badge", help="built-in: mergesec's own implementation; reproduced: `mergesec reproduce` "
                          "matched every stored number on the submission's current code"),
        "mean": value_column(f"mean {spec.label}", spec.percent, f"{spec.help} ({better} is better)",
                             res.ci_low.min(), res.ci_high.max()),
        "95% CI": st.column_config.TextColumn("95% CI", help="paired percentile bootstrap over settings"),
        "settings": st.column_config.NumberColumn("settings", width="small",
                                                  help="complete settings every method has (seeds averaged)"),
        "paper": st.column_config.LinkColumn("paper", display_text="paper"),
        "code": st.column_config.LinkColumn("code", display_text="code"),
    }


def significance_note(res: pd.DataFrame, percent: bool, few: int = 10) -> None:
    """Say on the page when the data cannot separate the methods: ``attrs["separable"]`` is False
    (statistics 2.0) or there are fewer than ``few`` settings; quote the minimum detectable difference."""
    n = int(res.n_settings.iat[0]) if len(res) else 0
    separable = res.attrs.get("separable")
    mdd = res.attrs.get("mdd")
    mdd_text = f" Differences smaller than about {tables.fmt_value(mdd, percent).replace('%', ' pp')} cannot be " \
               "detected with these settings." if mdd is not None and not pd.isna(mdd) else ""
    if separable is False:
        st.warning("**These settings cannot separate the methods**: no method is significantly better than "
                   f"another, so every rank is shared.{mdd_text}", icon=":material/balance:")
    elif n < few:
        st.warning(f"**Low power**: only {n} settings. Ranks and intervals are wide; read close methods as "
                   f"ties.{mdd_text}", icon=":material/balance:")


def ranking(res: pd.DataFrame, spec, name: str, about_: dict[str, Any], **kwargs) -> None:
    """A ranking table: CI-aware rank, method link, badge, mean, CI, paper and code links; downloads."""
    from leaderboard import data

    ctx = context()
    shown = tables.ranking_display(res, spec.percent, ctx.suite_hash, data.method_table(ctx.db),
                                   data.badges(ctx.db, ctx.suite_hash))
    table(res.drop(columns=["top_group"], errors="ignore"), name, shown, about_, height=fit_height(len(res)),
          column_config=ranking_columns(spec, res), **kwargs)


def unranked(long: pd.DataFrame, spec, why: str, page: str, about_: dict[str, Any]) -> None:
    """When the selection leaves too little for a ranking: say why and what to change, show plain means."""
    if long.empty:
        st.info("No results match these filters. Clear a filter to see results.", icon=":material/filter_alt_off:")
        return
    cols = list(long.attrs.get("settings", []))
    per_setting = long.groupby(cols).method.nunique()
    n, n_complete = len(per_setting), int((per_setting == long.method.nunique()).sum())
    if n_complete == n:  # nothing is missing: the filters are too narrow (no unit to run)
        st.info(f"No ranking with intervals for this selection: the filters leave {n} setting"
                f"{'s' if n != 1 else ''}, and a ranking needs at least 2. Widen the filters (clear one) for "
                "intervals and tests; below are the plain means.", icon=":material/filter_alt:")
    else:
        st.info(f"No ranking with intervals for this selection: {why}. Below are the plain means.",
                icon=":material/filter_alt:")
    means = (long.groupby("method", as_index=False)[spec.name].mean()
             .sort_values(spec.name, ascending=not spec.higher_is_better, ignore_index=True))
    table(means, f"{page}_means_{spec.name}", means.rename(columns={spec.name: f"mean {spec.label}"}), about_,
          height=fit_height(len(means)))


def hardware_text(hardware: object) -> str:
    """A run's stored hardware JSON as one short line (CPU count, accelerator, platform)."""
    try:
        hw = json.loads(hardware) if isinstance(hardware, str) else dict(hardware or {})
    except (TypeError, ValueError):
        return str(hardware)
    parts = [f"{hw['cpu_count']} CPUs" if "cpu_count" in hw else None,
             hw.get("gpu") or hw.get("device") or hw.get("cuda"), hw.get("platform") or hw.get("machine")]
    return " · ".join(str(p) for p in parts if p) or "–"
