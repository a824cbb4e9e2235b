"""`python -m leaderboard run leaderboard/app.py [options] -- --db PATH`: `streamlit run`, in a process that
imports everything the pages need (pandas, DuckDB, matplotlib, the statistics stack) before the server starts
and runs every page once before its health check answers (:mod:`leaderboard.warmup`), so that no visitor's
first page waits for imports or cold caches; it also creates and prunes the static folder that the pages
publish their figures and downloads in (:mod:`leaderboard.static`). `leaderboard.serve.streamlit_command`
builds the line."""

import importlib
import logging
import sys

from streamlit.web import cli

from leaderboard import static, warmup

PRELOAD = ("analysis.stats", "analysis.report", "analysis.figures", "leaderboard.data", "leaderboard.export",
           "leaderboard.plots", "leaderboard.tables", "leaderboard.ui")


def preload() -> None:
    """Import the pages' modules now. Their `st.cache_data` decorators check their options against a storage
    manager before the runtime exists and warn about it; the caches themselves use the runtime's storage."""
    caching_log = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = caching_log.level
    caching_log.setLevel(logging.ERROR)
    try:
        for module in PRELOAD:
            importlib.import_module(module)
    finally:
        caching_log.setLevel(level)


if __name__ == "__main__":
    static.DIR.mkdir(exist_ok=True)  # Streamlit serves it (server.enableStaticServing) if it exists at start
    static.prune()
    preload()
    warmup.install()
    sys.exit(cli.main(sys.argv[1:], prog_name="streamlit"))
