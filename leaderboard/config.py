"""Where the leaderboard's database is: `--db` after `--` on the streamlit command line, else $MERGESEC_DB,
else results/mergesec.duckdb."""

import os
import sys

from benchmark.store import DEFAULT_DB


def db_path(argv: list[str] | None = None) -> str:
    """The results database path the app reads (never writes)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--db" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--db="):
            return arg.split("=", 1)[1]
    return os.environ.get("MERGESEC_DB", DEFAULT_DB)
