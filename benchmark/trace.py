"""Work counters across processes: with `$MERGESEC_TRACE` set to a file, `record` appends one JSON line per
event (a merge, a batch of forward passes), from every worker process; unset, it does nothing.

`benchmarks/transfer.py` counts merges and forward passes per method with 1 and 2 workers from these lines.
"""

import json
import os
from typing import Any

ENV = "MERGESEC_TRACE"


def record(event: str, **fields: Any) -> None:
    """Append {"event": event, **fields} to `$MERGESEC_TRACE` (one small O_APPEND write: lines never interleave)."""
    path = os.environ.get(ENV)
    if path:
        line = json.dumps({"event": event, **fields}, sort_keys=True, default=str) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events recorded in `path` (empty if none were)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
