"""Entry point: `streamlit run leaderboard/app.py -- --db PATH` (or `mergesec leaderboard --db PATH`).

Resolves the database, shows a how-to page when it has no results, lets the reader pick a suite, and
routes to the pages in leaderboard/views/. No page ever shows a traceback: while a run holds the write lock
the pages read the last consistent copy of the database (and say so); anything else that fails is logged
on the server and shown as one sentence.
"""

import contextlib
import logging
from pathlib import Path

import streamlit as st

from leaderboard import data, downloads, snapshots, ui
from leaderboard.config import db_path

HERE = Path(__file__).parent
LOG = logging.getLogger("mergesec.leaderboard")

# an emoji favicon is drawn inline (a data: URL); a :material/…: one is fetched from fonts.gstatic.com on every page
st.set_page_config(page_title="mergesec leaderboard", page_icon="🛡️", layout="wide")
ui.wrap_tab_rows()
st.session_state["_stale"] = False
st.session_state.pop(downloads.KEY, None)  # a run that failed midway left its page's download

db = db_path()
try:
    status = data.status(db)
except data.DatabaseBusy:
    ui.busy_page()
    st.stop()
if not status["ok"]:
    ui.no_results_page(status, db)
    st.stop()
snapshots.refresh(db)

suites = data.suites(db)
labels = {r.suite_hash: f"{r.suite} {r.version} · {r.suite_hash[:8]}" for r in suites.itertuples()}
if len(labels) > 1:  # a choice of suites in the sidebar; with one suite there is no sidebar (its name is on
    with st.sidebar:  # each page), so the pages get the whole width, and no select box to load
        suite_hash = st.selectbox("Suite", list(labels), format_func=labels.get, key="suite", bind="query-params",
                                  help="Results of different suite versions (hashes) never mix.")
else:
    suite_hash = next(iter(labels))
row = suites.set_index("suite_hash").loc[suite_hash]
st.session_state["_ctx"] = ui.Context(db=db, suite_hash=suite_hash, suite=row.suite,
                                      label=f"{labels[suite_hash]} · last update {row.last_update:%Y-%m-%d %H:%M} UTC")

pages = [
    st.Page(HERE / "views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(HERE / "views/transfer.py", title="Transfer", icon=":material/leaderboard:"),
    st.Page(HERE / "views/backdoor.py", title="Backdoor", icon=":material/bug_report:"),
    st.Page(HERE / "views/tradeoff.py", title="Trade-off", icon=":material/scatter_plot:"),
    st.Page(HERE / "views/method.py", title="Method", icon=":material/person_search:"),
]
notice = st.empty()  # above the page: whether it read the last snapshot


def stale_notice() -> None:
    if st.session_state.get("_stale"):
        notice.info("A run is writing to the database: this page shows the last snapshot the leaderboard could "
                    "read; reload in a moment for newer results.", icon=":material/sync:")


stale_notice()  # known already when the status query found the lock (a page's st.stop() skips `finally`)
try:
    with contextlib.suppress(ui.PageEnd):  # a page that ended early (ui.end_page) still gets its download link
        st.navigation(pages, position="top").run()
    downloads.finish()
except data.DatabaseBusy:
    ui.busy_page()
except Exception as e:  # the one place that turns any failure into a sentence, never a traceback
    LOG.exception("leaderboard page failed")
    st.error(f"This page could not be shown ({type(e).__name__}). The other pages still work; the server log "
             "has the details.", icon=":material/error:")
finally:
    stale_notice()
