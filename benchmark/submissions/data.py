"""What a merge submission receives besides the weights, as files the sandboxed worker reads.

The parent passes exactly what the manifest's `needs` declare (the built-in needs of
`benchmark.merging.registry`), never the cache, the results database or anything of the attack:

- `seed`: the unit's merge seed (in the request; the worker also seeds `random`, numpy and torch with it);
- `unlabelled_dev`: per task `dev_<i>.safetensors` with the dev images `x` only (the worker's datasets yield
  `(x, -1)`: the labels never enter the sandbox);
- `labelled_dev`: the same with the labels `y`;

A dev split is never held whole on either side: the parent writes its file batch by batch (`DevSplit.write`)
and the worker reads the items it is asked for from the memory-mapped file (`worker._DevFile`).
- `classifier_factory`: `heads.safetensors` (`<i>.weight`, `<i>.bias`: task i's frozen head) and the
  backbone's config (in the request), from which the worker builds the classifiers with mergesec's own
  `TaskClassifiers`, read-only in the sandbox.

The parent holds numpy arrays only, so `validate` (which never imports torch) uses the same path.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEV_NEEDS = frozenset({"unlabelled_dev", "labelled_dev"})
FACTORY = "classifier_factory"
HEADS_FILE = "heads.safetensors"
ORDER = "mergesec.order"


def order_metadata(state: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata recording a state dict's key order (the format sorts keys; the worker restores
    the order, so a method that iterates keys sees them as in process)."""
    return {ORDER: json.dumps(list(state))}


def dev_file(i: int) -> str:
    return f"dev_{i}.safetensors"


Batches = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class DevSplit:
    """One task's dev data for the sandbox: `n` float32 images of `shape` (and int64 labels if `labelled`),
    produced in order by `batches()` as (x, y) numpy batches, so any split size is written a batch at a time."""

    n: int
    shape: tuple[int, ...]
    labelled: bool
    batches: Batches

    @classmethod
    def of_arrays(cls, x: np.ndarray, y: np.ndarray | None = None) -> DevSplit:
        """A split already in memory (validate's smoke data)."""
        labels = np.zeros(len(x), np.int64) if y is None else y
        return cls(len(x), tuple(x.shape[1:]), y is not None, lambda: iter([(x, labels)]))

    @classmethod
    def of_dataset(cls, ds: Any, labelled: bool) -> DevSplit:
        """A torch dataset of (x, y) items, read by `benchmark.data.batches` (a DataLoader) when written."""
        from benchmark.data.loader import batches

        return cls(len(ds), tuple(ds[0][0].shape), labelled,
                   lambda: ((_np(x), _np(y)) for x, y in batches(ds)))

    def write(self, path: Path) -> None:
        """Write the split as a safetensors file (`x` F32, then `y` I64 if labelled) batch by batch. The
        safetensors library writes only whole in-memory tensors, so the header (format: 8-byte little-endian
        length, JSON, space padding to 8 bytes; https://github.com/huggingface/safetensors) is written here
        and the batches' bytes appended; `safe_open` reads it as any safetensors file."""
        nx = self.n * int(np.prod(self.shape)) * 4
        header: dict[str, Any] = {"x": {"dtype": "F32", "shape": [self.n, *self.shape], "data_offsets": [0, nx]}}
        if self.labelled:
            header["y"] = {"dtype": "I64", "shape": [self.n], "data_offsets": [nx, nx + 8 * self.n]}
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        labels, written = [], 0
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for x, y in self.batches():
                x = np.ascontiguousarray(x, dtype=np.float32)
                if tuple(x.shape[1:]) != self.shape:
                    raise ValueError(f"a dev batch of shape {x.shape[1:]} in a split of images {self.shape}")
                f.write(x.tobytes())
                written += len(x)
                labels.append(np.asarray(y, dtype=np.int64))
            if written != self.n:
                raise ValueError(f"a dev split of {self.n} images yielded {written}")
            if self.labelled:
                f.write(np.ascontiguousarray(np.concatenate(labels)).tobytes())


@dataclass(frozen=True)
class CallData:
    """The declared data of one sandboxed call: `dev[i]` = task i's `DevSplit`, `heads` =
    {"<i>.weight", "<i>.bias"}, `backbone` = a `BackboneSpec` as JSON (for `classifier_factory`)."""

    needs: frozenset[str] = frozenset()
    tasks: tuple[str, ...] = ()
    seed: int = 0
    dev: tuple[DevSplit, ...] = ()
    heads: dict[str, np.ndarray] = field(default_factory=dict)
    backbone: dict[str, Any] | None = None

    def request(self) -> dict[str, Any]:
        """The request's part describing the data (the files themselves are written by `write`)."""
        return {"needs": sorted(self.needs), "tasks": list(self.tasks), "n_dev": len(self.dev),
                "backbone": self.backbone}

    def write(self, folder: Path) -> None:
        """Write the dev sets and heads as safetensors into the call's (read-only to the worker) input folder."""
        from safetensors.numpy import save_file

        for i, d in enumerate(self.dev):
            d.write(folder / dev_file(i))
        if self.heads:
            save_file({k: np.ascontiguousarray(v) for k, v in self.heads.items()}, str(folder / HEADS_FILE))


def from_context(ctx: Any, needs: frozenset[str], slug: str) -> CallData:
    """The `CallData` of a `MergeContext` for a submission that declares `needs`: exactly those (the dev
    splits as `DevSplit`s, read when the call's files are written).
    Raises `SubmissionError` if the context's classifier factory is not one the sandbox can rebuild."""
    from benchmark.submissions.manifest import SubmissionError

    dev: tuple[DevSplit, ...] = ()
    if needs & DEV_NEEDS:
        dev = tuple(DevSplit.of_dataset(ds, "labelled_dev" in needs) for ds in ctx.dev_data)
    heads: dict[str, np.ndarray] = {}
    backbone = None
    if FACTORY in needs:
        from benchmark.defenses.api import TaskClassifiers

        f = ctx.classifier_factory
        if not isinstance(f, TaskClassifiers):
            raise SubmissionError(
                f"submission {slug!r} needs classifier_factory, but this context's factory is a "
                f"{type(f).__name__}; the sandbox rebuilds only mergesec's TaskClassifiers (backbone + heads), "
                "so pass context.classifier_factory=TaskClassifiers(suite.backbone, heads)")
        heads = {f"{i}.{k}": _np(v) for i, h in enumerate(f.heads) for k, v in h.state_dict().items()}
        backbone = dataclasses.asdict(f.backbone)
    return CallData(frozenset(needs), tuple(ctx.tasks), int(ctx.seed), dev, heads, backbone)


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()
