"""Entry point: `streamlit run leaderboard/app.py -- --db PATH` (or `mergesec leaderboard --db PATH`).

Resolves the database, shows a how-to page when it has no results, lets the reader pick a suite, and
routes to the pages in leaderboard/views/.
"""

from pathlib import Path

import streamlit as st

from leaderboard import data, ui
from leaderboard.config import db_path

HERE = Path(__file__).parent

st.set_page_config(page_title="mergesec leaderboard", page_icon=":material/shield:", layout="wide")
st.session_state["_stale"] = False

db = db_path()
try:
    status = data.status(db)
except data.DatabaseBusy:
    status = {"ok": False, "reason": "unreadable",
              "detail": f"`{db}` is locked by a running benchmark; reload in a moment."}
if not status["ok"]:
    ui.no_results_page(status, db)
    st.stop()

suites = data.suites(db)
with st.sidebar:
    st.markdown("### :material/shield: mergesec")
    labels = {r.suite_hash: f"{r.suite} {r.version} · {r.suite_hash[:8]}" for r in suites.itertuples()}
    suite_hash = st.selectbox("Suite", list(labels), format_func=labels.get, key="suite",
                              help="Results of different suite versions (hashes) never mix.")
    row = suites.set_index("suite_hash").loc[suite_hash]
    st.caption(f"Database `{db}`  \nLast update {row.last_update:%Y-%m-%d %H:%M} UTC")
st.session_state["_ctx"] = ui.Context(db=db, suite_hash=suite_hash, suite=row.suite)

pages = [
    st.Page(HERE / "views/overview.py", title="Overview", icon=":material/home:", default=True),
    st.Page(HERE / "views/transfer.py", title="Transfer attacks", icon=":material/leaderboard:"),
    st.Page(HERE / "views/backdoor.py", title="Backdoors", icon=":material/bug_report:"),
    st.Page(HERE / "views/tradeoff.py", title="Accuracy vs security", icon=":material/scatter_plot:"),
    st.Page(HERE / "views/method.py", title="Method", icon=":material/person_search:"),
]
st.navigation(pages, position="top").run()

if st.session_state.get("_stale"):
    st.sidebar.info("A run is writing to the database; showing the last committed results.",
                    icon=":material/sync:")
