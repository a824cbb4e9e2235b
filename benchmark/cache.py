"""Content-addressed artefact cache: models, adversarial examples, statistics.

An artefact's key is the hash of everything it depends on (suite hash, recipe, seed, upstream keys, the
content digests of the weights it was computed from, the digests of the code that computed it), so a
changed input never reuses a stale artefact and an unchanged one is never rebuilt. Artefacts are safetensors
files written atomically; their metadata holds the spec and a sha256 checksum of the tensors, verified on
every load, and a JSON sidecar records the spec for humans. An artefact is built at most once, whatever the
number of processes: builders of the same key take a file lock, and the second one loads what the first one
wrote.
"""

import fcntl
import hashlib
import inspect
import json
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.checkpoints import load_state, save_state
from benchmark.errors import CheckpointError
from benchmark.hashing import canonical_json, content_hash
from benchmark.types import StateDict

DEFAULT_CACHE = "cache"
CHECKSUM = "sha256"  # metadata field of an artefact: `state_digest` of its tensors


def default_cache_dir() -> Path:
    """`$MERGESEC_CACHE`, else ./cache."""
    return Path(os.environ.get("MERGESEC_CACHE", DEFAULT_CACHE))


def state_digest(state: StateDict) -> str:
    """sha256 of the tensors' names, dtypes, shapes and bytes, in key order: the content identity of weights
    (two state dicts with equal digests hold identical numbers)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@cache
def _source_digest(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def code_digest(*objects: Any) -> dict[str, str]:
    """{qualified name: sha256 prefix of its source} of the modules, classes or functions that compute an
    artefact: part of its cache key, so an edit of that code rebuilds it (no hand-bumped version)."""
    return {f"{getattr(o, '__module__', '') or ''}.{getattr(o, '__qualname__', o.__name__)}".lstrip("."):
            _source_digest(o) for o in objects}


class Cache:
    """A folder of content-addressed safetensors artefacts."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.safetensors"

    def has(self, kind: str, spec: Any) -> bool:
        return self.path(kind, content_hash(spec)).exists()

    @contextmanager
    def lock(self, kind: str, spec: Any) -> Iterator[None]:
        """Exclusive lock on building `spec`'s artefact (a `.lock` file beside it, removed when released; a dead
        process's lock is released by the OS), so processes sharing the folder build it once: a waiter finds
        the artefact written when it gets the lock. (A waiter on a removed lock file may build concurrently
        with a newcomer only if the holder failed; atomic writes keep that correct.)"""
        path = self.path(kind, content_hash(spec))
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_suffix(".lock")
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                lock.unlink(missing_ok=True)
                fcntl.flock(f, fcntl.LOCK_UN)

    def load(self, path: Path) -> StateDict:
        """Read an artefact and verify its checksum (artefacts written before checksums existed are read as
        they are). A mismatch raises CheckpointError saying to delete the file so it is rebuilt."""
        from safetensors import safe_open

        state = load_state(path)
        with safe_open(str(path), "pt") as f:
            expected = (f.metadata() or {}).get(CHECKSUM)
        if expected is not None and state_digest(state) != expected:
            raise CheckpointError(
                f"cache artefact {path} is corrupt or was modified (its tensors do not match the checksum written "
                f"with it); delete it (rm {path}) and run again to rebuild it")
        return state

    def save(self, kind: str, spec: Any, state: StateDict) -> None:
        """Write `spec`'s artefact atomically, with its checksum, and its JSON sidecar."""
        path = self.path(kind, content_hash(spec))
        save_state(path, state, metadata={"spec": canonical_json(spec), CHECKSUM: state_digest(state)})
        sidecar = path.with_suffix(".json")
        tmp = sidecar.with_suffix(f".tmp{uuid.uuid4().hex}")  # unique across nodes sharing the cache
        tmp.write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
        os.replace(tmp, sidecar)

    def get_or_build(self, kind: str, spec: Any, build: Callable[[], StateDict]) -> StateDict:
        """Load the artefact of `spec`, or build it, store it, and return it. Same spec, same tensors; built
        at most once across processes sharing the folder."""
        path = self.path(kind, content_hash(spec))
        if path.exists():
            return self.load(path)
        with self.lock(kind, spec):
            if path.exists():  # another process built it while we waited
                return self.load(path)
            state = build()
            self.save(kind, spec, state)
        return state


def nbytes(value: Any) -> int:
    """Bytes held by the tensors in `value` (tensors, modules' parameters and buffers, containers, dataclasses)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, nn.Module):
        return sum(nbytes(t) for t in [*value.parameters(), *value.buffers()])
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(nbytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes(getattr(value, f)) for f in value.__dataclass_fields__)
    return 0


class ByteLRU(MutableMapping):
    """An in-memory memo bounded by the bytes of its values' tensors: least recently used entries are
    dropped beyond `max_bytes` (the newest entry is always kept). A mapping, so it can stand wherever a dict
    memo did; a dropped entry is rebuilt by whoever asks for it again (memos hold pure functions' values)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.bytes = 0

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: Any) -> Any:
        self._items.move_to_end(key)
        return self._items[key][0]

    def __delitem__(self, key: Any) -> None:
        self.bytes -= self._items.pop(key)[1]

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        size = nbytes(value)
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self._items) > 1:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped

    def get_or_set(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._items:
            self[key] = make()
        return self[key]
