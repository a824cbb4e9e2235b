"""Start the Streamlit app as a subprocess: the command `mergesec leaderboard` runs, and a context manager
that serves it on a free loopback port until the block ends (used by the browser test and the benchmark)."""

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

APP = Path(__file__).resolve().parent / "app.py"


class Served(NamedTuple):
    """A running leaderboard server: its base URL and process id."""

    url: str
    pid: int


DEFAULT_ADDRESS = "127.0.0.1"


def streamlit_command(db: str | Path, port: int, headless: bool = True, address: str = DEFAULT_ADDRESS,
                      app: Path = APP) -> list[str]:
    """The `streamlit run` command line (by way of `python -m leaderboard`, which preloads the pages'
    imports) serving the leaderboard on `db` (read-only) at `address:port` (loopback unless told otherwise).
    Error details are off: a failure the pages do not catch shows a message, never a traceback. Static file
    serving is on (the pages' figures and download zips: :mod:`leaderboard.static`). No forced
    garbage collection after each script run (it holds the interpreter for up to a second on a busy machine,
    delaying the page it follows) and no "magic" (the pages write every element explicitly)."""
    cmd = [sys.executable, "-m", "leaderboard", "run", str(app), "--server.port", str(port),
           "--server.address", address, "--server.headless", str(headless).lower(),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
           "--client.showErrorDetails", "none", "--server.fileWatcherType", "none",
           "--server.enableStaticServing", "true",
           "--runner.postScriptGC", "false", "--runner.magicEnabled", "false"]
    return [*cmd, "--", "--db", str(db)]


class CacheStats(NamedTuple):
    """The server's `st.cache_data` totals so far: misses (computed calls) and the seconds they took."""

    misses: int
    compute_s: float


def cache_stats(url: str) -> CacheStats:
    """:class:`CacheStats` from Streamlit's Prometheus endpoint ``/_stcore/metrics``."""
    with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()

    def total(prefix: str, label: str = "") -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix) and label in line)

    return CacheStats(int(total("cache_lookups_total{", 'result="miss"')),
                      total("cache_compute_duration_seconds_sum{"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Block until Streamlit's health endpoint answers `ok`; raise if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@contextmanager
def serving(db: str | Path, log: IO[str] | None = None, timeout: float = 180, app: Path = APP) -> Iterator[Served]:
    """Serve the leaderboard (or another Streamlit `app`) on `db` at a free loopback port; yields its URL and
    PID once healthy (its warm-up done: :mod:`leaderboard.warmup`), stops it after."""
    port = free_port()
    proc = subprocess.Popen(streamlit_command(db, port, app=app), stdin=subprocess.DEVNULL,
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout)
        yield Served(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def exec_streamlit(db: str | Path | None, port: int, address: str = DEFAULT_ADDRESS, headless: bool = True) -> None:
    """Replace this process by the Streamlit server (`mergesec leaderboard`): one process, no wrapper.
    Stdin is closed first, so that Streamlit's first-run e-mail prompt can never block."""
    import os

    from benchmark.store import default_db_path

    cmd = streamlit_command(db or default_db_path(), port, headless, address)
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.execv(cmd[0], cmd)
