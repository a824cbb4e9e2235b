"""Read what the worker wrote without trusting it: regular files only (no symlinks, FIFOs or devices), a
size cap, and a safetensors header that must match the expected keys, dtypes and shapes, with the exact
total size, before any tensor data is read (format: https://github.com/huggingface/safetensors)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from benchmark.submissions.manifest import SubmissionError

MAX_HEADER_BYTES = 100 * 1024 * 1024
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
Spec = dict[str, tuple[str, tuple[int, ...]]]


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of `path` if it is a regular file (not followed if a symlink) of at most `max_bytes`, else
    None. Opened non-blocking, so a FIFO cannot hang the parent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        return f.read(max_bytes + 1)[:max_bytes]


def spec_of(path: Path) -> Spec:
    """Keys, dtypes and shapes of a safetensors file the parent wrote itself (the inputs)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        h = json.loads(f.read(n))
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in h.items() if k != "__metadata__"}


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    n = _ITEMSIZE[dtype]
    for s in shape:
        n *= s
    return n


def read_checked(path: Path, spec: Spec, head: str) -> bytes:
    """The bytes of the worker's safetensors output `path`, after checking that the file is regular, its size
    is exactly what `spec` implies, and the header holds exactly `spec`'s keys with those dtypes and shapes
    in contiguous data ranges. Raises `SubmissionError` (prefixed with `head`) otherwise."""
    expected = sum(_nbytes(d, s) for d, s in spec.values())
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise SubmissionError(f"{head}: the output {path.name} cannot be opened as a regular file ({e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SubmissionError(f"{head}: the output {path.name} is not a regular file")
        first = f.read(8)
        n = int.from_bytes(first, "little") if len(first) == 8 else -1
        if n < 0 or n > MAX_HEADER_BYTES or 8 + n > st.st_size:
            raise SubmissionError(f"{head}: the output {path.name} is not valid safetensors (header length {n})")
        raw = f.read(n)
        try:
            h = json.loads(raw)
            if not isinstance(h, dict):
                raise ValueError("the header is not a JSON object")
        except ValueError as e:
            raise SubmissionError(f"{head}: the output {path.name} is not valid safetensors ({e})") from None
        _check_header(h, spec, head)
        if st.st_size != 8 + n + expected:
            raise SubmissionError(f"{head}: the output {path.name} has {st.st_size - 8 - n} bytes of tensor data; "
                                  f"the header's tensors need {expected}")
        return first + raw + f.read(expected)


def _check_header(h: dict, spec: Spec, head: str) -> None:
    """Exactly `spec`'s keys, dtypes and shapes, in contiguous data ranges."""
    fix = "return exactly the input keys, each with the input's shape and dtype"
    h = {k: v for k, v in h.items() if k != "__metadata__"}
    missing, extra = [k for k in spec if k not in h], [k for k in h if k not in spec]
    if missing or extra:
        parts = [f"{len(missing)} missing key(s): {', '.join(map(repr, missing[:5]))}"] if missing else []
        parts += [f"{len(extra)} extra key(s): {', '.join(map(repr, extra[:5]))}"] if extra else []
        raise SubmissionError(f"{head}: key mismatch: {'; '.join(parts)}. Fix: {fix}")
    ranges = []
    for k, (dtype, shape) in spec.items():
        v = h[k]
        got = (v.get("dtype"), tuple(v.get("shape") or ())) if isinstance(v, dict) else (None, ())
        if got != (dtype, shape):
            raise SubmissionError(f"{head}: returned {k!r} as {got[0]} {got[1]}; the input is {dtype} {shape}. "
                                  f"Fix: {fix} (cast with .to(dtype))")
        ranges.append((tuple(v.get("data_offsets") or (0, 0)), _nbytes(dtype, shape)))
    pos = 0
    for (a, b), size in sorted(ranges):
        if a != pos or b - a != size:
            raise SubmissionError(f"{head}: overlapping or misplaced tensor data in the output")
        pos = b
