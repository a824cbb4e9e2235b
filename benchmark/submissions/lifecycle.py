"""Process lifecycle of the CLI: a SIGTERM handler (a CI cancel, `kill`) that kills running sandbox workers
and unwinds (so every temporary folder is removed), and one clear message for a full disk or a read-only
folder instead of a traceback."""

from __future__ import annotations

import errno
import signal
import sys
from types import FrameType

_DISK = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
         errno.EROFS: "the folder is on a read-only file system", errno.EACCES: "permission denied"}
_DISK_TEXT = {"no space left on device": errno.ENOSPC, "read-only file system": errno.EROFS,
              "disk quota exceeded": errno.EDQUOT}


def _terminate(signum: int, frame: FrameType | None) -> None:
    from benchmark.submissions.sandbox import close_all

    close_all()
    sys.exit(128 + signum)  # SystemExit unwinds every `with` block: temporary folders are removed


def on_sigterm() -> None:
    """Install the SIGTERM handler (main thread only)."""
    signal.signal(signal.SIGTERM, _terminate)


def os_error_message(e: BaseException) -> str | None:
    """'<what> (<file>): <fix>' for a full disk, an exceeded quota, a read-only folder or a permission
    problem (an OSError, or a DuckDB error that says so); None for any other error."""
    code = e.errno if isinstance(e, OSError) else None
    if code is None:
        text = str(e).lower()
        code = next((c for t, c in _DISK_TEXT.items() if t in text), None)
    if code not in _DISK:
        return None
    where = getattr(e, "filename", None) or str(e).strip().splitlines()[0][:300]
    return (f"{_DISK[code]} ({where}); free space or pass writable locations (--db, --cache, $TMPDIR), then run "
            "the command again: finished units are kept and resume")
