"""Content hashes: the identity of suites, models, units of work and cached artefacts."""

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content always serialises identically."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(obj: Any, length: int = 16) -> str:
    """Hex sha256 prefix of `obj`'s canonical JSON; stable across runs, processes and machines."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
