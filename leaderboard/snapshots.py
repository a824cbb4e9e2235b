"""The last readable copy of the results database, for while a run holds DuckDB's write lock.

DuckDB allows one writer *or* any number of readers. A run opens the database for a moment every few
seconds; a page that reads in that moment would have to wait or fail. :func:`refresh` copies the database
(file and write-ahead log) to a private temporary folder while holding a read-only connection, so no writer
can change it mid-copy; :func:`latest` names that copy. The leaderboard reads the copy only while the live
file is locked, and says so on the page. Guarantee: a copy is a consistent, committed state of the database.
"""

import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

import duckdb

REFRESH_EVERY_S = 10.0
_DIR = Path(tempfile.mkdtemp(prefix="mergesec-leaderboard-"))
_LOCK = threading.Lock()
_COPIES: dict[str, tuple[Path, tuple, float]] = {}  # resolved db -> (copy, db state copied, when)


def file_state(db: str | Path) -> tuple:
    """The database file's and its write-ahead log's (mtime, size): what changes when a writer commits."""
    out = []
    for f in (Path(db), Path(f"{db}.wal")):
        try:
            s = f.stat()
            out.append((s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def refresh(db: str | Path, force: bool = False) -> Path | None:
    """Copy ``db`` if it changed since the last copy (at most every ``REFRESH_EVERY_S``); returns the newest
    copy, or None when there is none yet. Never raises: a locked or unreadable database keeps the old copy."""
    db = Path(db).resolve()
    key = str(db)
    with _LOCK:
        old = _COPIES.get(key)
        state = file_state(db)
        if old and (old[1] == state or (not force and time.monotonic() - old[2] < REFRESH_EVERY_S)):
            return old[0]
        target = _DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:12]}-{time.monotonic_ns()}.duckdb"
        try:
            with duckdb.connect(key, read_only=True):  # a shared lock: no writer while we copy
                state = file_state(db)
                shutil.copyfile(db, target)
                if Path(f"{db}.wal").exists():
                    shutil.copyfile(f"{db}.wal", f"{target}.wal")
        except (duckdb.Error, OSError):
            target.unlink(missing_ok=True)
            Path(f"{target}.wal").unlink(missing_ok=True)
            return old[0] if old else None
        _COPIES[key] = (target, state, time.monotonic())
        if old:  # sessions reading the old copy right now keep their open file handles (POSIX)
            old[0].unlink(missing_ok=True)
            Path(f"{old[0]}.wal").unlink(missing_ok=True)
        return target


def latest(db: str | Path) -> Path | None:
    """The newest copy of ``db`` taken by :func:`refresh`, if any."""
    with _LOCK:
        hit = _COPIES.get(str(Path(db).resolve()))
    return hit[0] if hit else None
