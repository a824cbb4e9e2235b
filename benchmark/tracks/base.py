"""Units of work and the track registry.

A unit is one independent setting of a track (e.g. method × task × attack × surrogate × seed). It is
described by JSON-able data only (so it can be shipped to a Ray worker), and its key is the content hash of
that description, which always includes the suite hash and the code identity of the method it evaluates.
"""

from collections.abc import Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from benchmark.errors import UnknownNameError
from benchmark.hashing import content_hash

if TYPE_CHECKING:
    from benchmark.context import RunContext


@dataclass(frozen=True)
class Unit:
    track: str
    description: dict[str, Any] = field(hash=False)

    @cached_property
    def key(self) -> str:
        return content_hash({"track": self.track, **self.description}, length=24)

    @cached_property
    def setting(self) -> str:
        """Hash of what the unit measures, whatever the versions of the code and hyperparameters it runs
        (`Track.setting`): a stored unit with the same setting and another key is an earlier version."""
        return content_hash({"track": self.track, **get_track(self.track).setting(self.description)}, length=24)

    def label(self) -> str:
        skip = {"suite_hash", "hparams", "code", "inputs"}
        return " ".join(f"{v}" for k, v in self.description.items() if k not in skip)


class Track:
    """A track plans its units and runs one unit into result tables (see benchmark.store.schema)."""

    name: ClassVar[str]

    def plan(self, ctx: "RunContext", methods: list[str]) -> list[Unit]:
        raise NotImplementedError

    def run_unit(self, unit: Unit, ctx: "RunContext") -> dict[str, pd.DataFrame]:
        raise NotImplementedError

    def setting(self, description: dict[str, Any]) -> dict[str, Any]:
        """The part of a unit's description that names its setting: all but the versions of the code
        (`code`) and of the hyperparameters (`hparams`) it runs."""
        return {k: v for k, v in description.items() if k not in ("code", "hparams")}

    def affinity(self, description: dict[str, Any]) -> Hashable | None:
        """Units with the same (non-None) affinity share an expensive in-process memo (e.g. one merged model
        evaluated under several defenses): executors run consecutive ones in one worker (`affinity_batches`).
        It only decides where a unit runs, never its result. Default: none."""
        return None


MAX_BATCH = 32
"""Most units in one affinity batch (what an interrupted worker loses at most)."""


def affinity_batches(units: list[Unit]) -> list[list[Unit]]:
    """`units` in order, cut into runs of consecutive units with the same non-None `Track.affinity` (at most
    `MAX_BATCH` each); a unit without affinity is a batch of its own. A worker given a batch computes each
    shared memo once, where units dealt out one by one would have every worker compute it again."""
    batches: list[list[Unit]] = []
    last: Hashable | None = None
    for unit in units:
        key = get_track(unit.track).affinity(unit.description)
        key = None if key is None else (unit.track, key)
        if key is not None and key == last and len(batches[-1]) < MAX_BATCH:
            batches[-1].append(unit)
        else:
            batches.append([unit])
        last = key
    return batches


TRACKS: dict[str, Track] = {}


def register_track(cls: type[Track]) -> type[Track]:
    """Class decorator: make a track available to the runner and the CLI under `cls.name`."""
    TRACKS[cls.name] = cls()
    return cls


def get_track(name: str) -> Track:
    import benchmark.tracks  # noqa: F401  (registers the built-in tracks)

    if name not in TRACKS:
        raise UnknownNameError("track", name, list(TRACKS))
    return TRACKS[name]
