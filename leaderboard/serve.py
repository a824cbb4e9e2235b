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
from typing import IO

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_command(db: str | Path, port: int, headless: bool = True, address: str | None = None) -> list[str]:
    """The `streamlit run` command line (by way of `python -m leaderboard`, which preloads the pages'
    imports) serving the leaderboard on `db` (read-only) at `port`."""
    cmd = [sys.executable, "-m", "leaderboard", "run", str(APP), "--server.port", str(port),
           "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer"]
    if address:
        cmd += ["--server.address", address, "--server.fileWatcherType", "none"]
    return [*cmd, "--", "--db", str(db)]


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
def serving(db: str | Path, log: IO[str] | None = None, timeout: float = 60) -> Iterator[str]:
    """Serve the leaderboard on `db` at a free loopback port; yields its URL once healthy, stops it after."""
    port = free_port()
    proc = subprocess.Popen(streamlit_command(db, port, address="127.0.0.1"), stdin=subprocess.DEVNULL,
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
