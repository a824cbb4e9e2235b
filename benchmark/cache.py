"""Content-addressed artefact cache: models, adversarial examples, statistics.

An artefact's key is the hash of everything it depends on (suite hash, recipe, seed, upstream keys), so a
changed input never reuses a stale artefact and an unchanged one is never rebuilt. Artefacts are safetensors
files written atomically; a JSON sidecar records what the key was computed from.
"""

import json
import os
from collections.abc import Callable
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

    def get_or_build(self, kind: str, spec: Any, build: Callable[[], StateDict]) -> StateDict:
        """Load the artefact of `spec`, or build it, store it, and return it. Same spec, same tensors."""
        key = content_hash(spec)
        path = self.path(kind, key)
        if path.exists():
            return load_state(path)
        state = build()
        save_state(path, state, metadata={"spec": canonical_json(spec)})
        path.with_suffix(".json").write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
        return state
