"""Content-addressed artefact cache: models, adversarial examples, statistics.

An artefact's key is the hash of everything it depends on (suite hash, recipe, seed, upstream keys), so a
changed input never reuses a stale artefact and an unchanged one is never rebuilt. Artefacts are safetensors
files written atomically; a JSON sidecar records what the key was computed from.
"""

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.checkpoints import load_state, save_state
from benchmark.hashing import canonical_json, content_hash
from benchmark.types import StateDict

DEFAULT_CACHE = "cache"


def default_cache_dir() -> Path:
    """`$MERGESEC_CACHE`, else ./cache."""
    return Path(os.environ.get("MERGESEC_CACHE", DEFAULT_CACHE))


class Cache:
    """A folder of content-addressed safetensors artefacts."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.safetensors"

    def has(self, kind: str, spec: Any) -> bool:
        return self.path(kind, content_hash(spec)).exists()

    @contextmanager
    def building(self, kind: str, key: str) -> Iterator[None]:
        """Hold the artefact's build lock (an exclusive `flock` on a file beside it): processes on any node
        of a shared filesystem that need the same missing artefact build it once; the kernel releases the
        lock of a process that dies, so a killed builder never blocks the others."""
        lock = self.root / ".locks" / kind / f"{key}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get_or_build(self, kind: str, spec: Any, build: Callable[[], StateDict]) -> StateDict:
        """Load the artefact of `spec`, or build it, store it, and return it. Same spec, same tensors; built
        once however many workers ask for it at the same time (`building`)."""
        key = content_hash(spec)
        path = self.path(kind, key)
        if path.exists():
            return load_state(path)
        with self.building(kind, key):
            if path.exists():  # another worker built it while this one waited
                return load_state(path)
            state = build()
            save_state(path, state, metadata={"spec": canonical_json(spec)})
            sidecar = path.with_suffix(f".json.{os.getpid()}.tmp")
            sidecar.write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
            os.replace(sidecar, path.with_suffix(".json"))
        return state
