"""Shared page pieces: the current database and suite, tables with CSV/Parquet downloads, the empty page."""

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, NoReturn

import pandas as pd
import streamlit as st

from leaderboard import downloads, markdown, tables


@dataclass(frozen=True)
class Context:
    """What every page reads: the database path and the chosen suite's hash and name."""

    db: str
    suite_hash: str
    suite: str
    label: str = ""  # "name version · hash · last update", shown under each page's title


def context() -> Context:
    return st.session_state["_ctx"]


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


class PageEnd(Exception):
    """Raised by :func:`end_page`; app.py catches it and finishes the page (its download link)."""


def end_page() -> NoReturn:
    """End the page here, like ``st.stop()``, but let app.py still publish the page's download
    (:func:`leaderboard.downloads.finish`), which ``st.stop()`` would prevent."""
    raise PageEnd


def page(title: str, name: str, intro: str | None = None) -> None:
    """A page's head: its title, the place of the one download link of its tables
    (:mod:`leaderboard.downloads`) and an introduction, as few elements as possible."""
    st.title(title)
    downloads.start(name)
    ctx = st.session_state.get("_ctx")
    suite = f"Suite **{ctx.label}**." if ctx and ctx.label else ""
    if intro or suite:
        st.caption(" ".join(t for t in (intro, suite) if t))


def wrap_tab_rows() -> None:
    """Rows of tabs wrap onto a second line instead of scrolling sideways, so a choice among many (the method
    page's opponents) shows every option at any window width (`tests/test_browser.py` checks 1024 px)."""
    st.html('<style>div[role="tablist"] { flex-wrap: wrap; row-gap: 0.25rem; }</style>')


def choice(label: str, options: dict[str, str], key: str, default: str | None = None) -> str:
    """The reader's pick among ``options`` (value -> label shown), as a row of tabs under ``label`` bound to
    the URL (``?key=<label shown>``, like every choice): tabs are drawn by the code every page loads, while a
    segmented control or pills make a new visitor's browser load their own code first (the largest cost left
    on the pages, ``benchmarks/leaderboard.py``). Returns the chosen value (``default``, else the first)."""
    st.caption(label)
    labels = list(options.values())
    tabs = st.tabs(labels, key=key, bind="query-params", on_change="rerun",
                   default=options[default] if default is not None else None)
    return next((v for v, tab in zip(options, tabs, strict=True) if tab.open), default or next(iter(options)))


def table(df: pd.DataFrame, name: str, shown: pd.DataFrame | None = None, about_: dict[str, Any] | None = None,
          right: tuple[str, ...] = ()) -> None:
    """``shown`` (default ``df``), already formatted as text, as one Markdown table (``right``: right-aligned
    columns); ``df`` joins the page's download under ``name``."""
    st.markdown(markdown.table(df if shown is None else shown, right))
    downloads.offer(df, name, about_ or about())


def grid(df: pd.DataFrame, name: str, shown: pd.DataFrame | None = None, about_: dict[str, Any] | None = None,
         **kwargs) -> None:
    """A long table (per-setting rows) as a scrollable, sortable data grid; ``df`` joins the download.
    Costly for the browser: only inside an expander that is computed when opened."""
    st.dataframe(df if shown is None else shown, hide_index=True, **kwargs)
    downloads.offer(df, name, about_ or about())


MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: object) -> str:
    """Untrusted text (a submission's manifest) as literal Markdown: no HTML, links, images or formatting."""
    return MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


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


def rank_help(res: pd.DataFrame) -> str:
    """The caption under a ranking: what its rank, badge and interval mean, the interval's resampling unit
    taken from the ranking itself (``attrs["resampling"]``), so the page never claims another design."""
    return ("**rank**: CI-aware, 1 + the number of methods significantly better (paired tests), so methods the "
            "data cannot tell apart share a rank · **badge**: *built-in* is mergesec's own implementation, "
            "*reproduced* means `mergesec reproduce` matched every stored number on the submission's current "
            "code · **95% CI**: paired percentile bootstrap, resampling "
            + res.attrs.get("resampling", "the settings"))


def significance_note(res: pd.DataFrame, percent: bool, few: int = 10) -> None:
    """Say on the page when the data cannot separate the methods: ``attrs["separable"]`` is False
    (statistics 2.0), or the intervals resample settings (no common image set, ``attrs["n_common"]`` None)
    and there are fewer than ``few`` of them; quote the minimum detectable difference. A ranking that
    resamples test images has its power in its images, not its settings: one setting can separate methods."""
    n = int(res.n_settings.iat[0]) if len(res) else 0
    separable = res.attrs.get("separable")
    mdd = res.attrs.get("mdd")
    mdd_text = f" Differences smaller than about {tables.fmt_value(mdd, percent).replace('%', ' pp')} cannot be " \
               "detected with these settings." if mdd is not None and not pd.isna(mdd) else ""
    if separable is False:
        st.warning("**These settings cannot separate the methods**: no method is significantly better than "
                   f"another, so every rank is shared.{mdd_text}", icon=":material/balance:")
    elif n < few and res.attrs.get("n_common") is None:
        st.warning(f"**Low power**: only {n} settings. Ranks and intervals are wide; read close methods as "
                   f"ties.{mdd_text}", icon=":material/balance:")
    gated = res.attrs.get("not_ranked") or {}
    if gated:
        st.markdown("**Not ranked** (utility gate: a merge no better than chance on a task would empty every "
                    "method's common set; filter that task out to rank it on the others): "
                    + "; ".join(f"`{m}`, {why}" for m, why in gated.items()) + ".")


def ranking(res: pd.DataFrame, spec, name: str, about_: dict[str, Any]) -> None:
    """A ranking table: CI-aware rank, method link, badge, mean, CI, settings, paper and code links; the
    full-precision ranking joins the page's download."""
    from leaderboard import data

    ctx = context()
    better = "higher" if spec.higher_is_better else "lower"
    shown = tables.ranking_display(res, spec.percent, ctx.suite_hash, data.method_table(ctx.db),
                                   data.badges(ctx.db, ctx.suite_hash))
    table(res.drop(columns=["top_group"], errors="ignore"), name,
          shown.rename(columns={"mean": f"mean {spec.label} ({better} is better)"}), about_,
          right=("rank", "settings"))


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
    shown = pd.DataFrame({"method": means.method,
                          f"mean {spec.label}": [tables.fmt_value(v, spec.percent) for v in means[spec.name]]})
    table(means, f"{page}_means_{spec.name}", shown, about_)


def hardware_text(hardware: object) -> str:
    """A run's stored hardware JSON as one short line (CPU count, accelerator, platform)."""
    try:
        hw = json.loads(hardware) if isinstance(hardware, str) else dict(hardware or {})
    except (TypeError, ValueError):
        return str(hardware)
    parts = [f"{hw['cpu_count']} CPUs" if "cpu_count" in hw else None,
             hw.get("gpu") or hw.get("device") or hw.get("cuda"), hw.get("platform") or hw.get("machine")]
    return " · ".join(str(p) for p in parts if p) or "–"
