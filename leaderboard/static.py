"""Files the browser fetches as plain links: Streamlit's documented static file serving
(``server.enableStaticServing``; https://docs.streamlit.io/develop/concepts/configuration/serving-static-files)
serves ``leaderboard/static/`` (beside ``app.py``, git-ignored) at ``app/static/``. The pages put their figures
and their download zip there, so that a new visitor's browser loads no image data inside the page's Markdown
and no download-button code (``benchmarks/leaderboard.py`` measures both).

A file is published under a folder named by a digest of what determines its bytes, so one name always means
one content: servers of the same checkout can share the folder, a new result gets a new name, and a file is
written once (atomically: written beside, then renamed). :func:`prune` removes folders untouched for a day.
Where the server was started without static serving (a bare ``streamlit run``) or the folder cannot be
written, :func:`enabled` is False and the pages fall back to inline images and a download button.
"""

import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

DIR = Path(__file__).resolve().parent / "static"
URL = "app/static"  # relative to a page's URL (every page lives at the server's root)
KEEP_S = 24 * 3600.0


def enabled() -> bool:
    """Whether this server serves ``DIR`` (``server.enableStaticServing``, as `mergesec leaderboard` starts it)
    and it can be written."""
    import streamlit as st

    return bool(st.get_option("server.enableStaticServing")) and DIR.is_dir() and os.access(DIR, os.W_OK)


def digest(*parts: bytes | str) -> str:
    """A short hex digest of ``parts`` (in order): the folder name of what they determine."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()[:20]


def path(key: str, name: str) -> Path:
    """Where the file ``name`` of digest ``key`` lives."""
    if not re.fullmatch(r"[0-9a-f]{20}", key) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"not a static file name: {key}/{name}")
    return DIR / key / name


def url(key: str, name: str) -> str:
    """The link the browser follows for :func:`path` ``(key, name)``."""
    path(key, name)
    return f"{URL}/{key}/{name}"


def exists(key: str, name: str) -> bool:
    return path(key, name).exists()


def write(key: str, name: str, data: bytes) -> str:
    """Publish ``data`` as ``name`` under ``key`` unless it is there already; returns its link."""
    target = path(key, name)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return url(key, name)


def publish(data: bytes, name: str) -> str:
    """Publish ``data`` under the digest of its own bytes (figures); returns its link."""
    return write(digest(data), name, data)


def prune(keep_s: float = KEEP_S) -> int:
    """Remove published folders not modified for ``keep_s`` seconds (the server calls it at its start, so
    the folder stays far below Streamlit's 1 GB limit for static serving); returns how many it removed."""
    if not DIR.is_dir():
        return 0
    old, removed = time.time() - keep_s, 0
    for entry in DIR.iterdir():
        if entry.is_dir() and re.fullmatch(r"[0-9a-f]{20}", entry.name) and entry.stat().st_mtime < old:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
