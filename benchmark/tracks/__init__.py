"""Benchmark tracks. Importing this package registers every built-in track."""

from benchmark.tracks import (
    backdoor,  # noqa: F401
    merge_eval,  # noqa: F401
    transfer,  # noqa: F401
)
from benchmark.tracks.base import TRACKS, Track, Unit, affinity_batches, get_track, register_track

__all__ = ["TRACKS", "Track", "Unit", "affinity_batches", "get_track", "register_track"]
