"""What a merge submission receives besides the weights, as files the sandboxed worker reads.

The parent passes exactly what the manifest's `needs` declare (the built-in needs of
`benchmark.merging.registry`), never the cache, the results database or anything of the attack:

- `seed`: the unit's merge seed (in the request; the worker also seeds `random`, numpy and torch with it);
- `unlabelled_dev`: per task `dev_<i>.safetensors` with the dev images `x` only (the worker's datasets yield
  `(x, -1)`: the labels never enter the sandbox);
- `labelled_dev`: the same with the labels `y`;
- `classifier_factory`: `heads.safetensors` (`<i>.weight`, `<i>.bias`: task i's frozen head) and the
  backbone's config (in the request), from which the worker builds the classifiers with mergesec's own
  `TaskClassifiers`, read-only in the sandbox.

The parent holds numpy arrays only, so `validate` (which never imports torch) uses the same path.
"""

from __future__ import annotations

import dataclasses
import json
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


@dataclass(frozen=True)
class CallData:
    """The declared data of one sandboxed call: `dev[i]` = {"x": images[, "y": labels]} of task i, `heads` =
    {"<i>.weight", "<i>.bias"}, `backbone` = a `BackboneSpec` as JSON (for `classifier_factory`)."""

    needs: frozenset[str] = frozenset()
    tasks: tuple[str, ...] = ()
    seed: int = 0
    dev: tuple[dict[str, np.ndarray], ...] = ()
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
            save_file({k: np.ascontiguousarray(v) for k, v in d.items()}, str(folder / dev_file(i)))
        if self.heads:
            save_file({k: np.ascontiguousarray(v) for k, v in self.heads.items()}, str(folder / HEADS_FILE))


def from_context(ctx: Any, needs: frozenset[str], slug: str) -> CallData:
    """The `CallData` of a `MergeContext` for a submission that declares `needs`: exactly those, as arrays.
    Raises `SubmissionError` if the context's classifier factory is not one the sandbox can rebuild."""
    from benchmark.submissions.manifest import SubmissionError

    dev: tuple[dict[str, np.ndarray], ...] = ()
    if needs & DEV_NEEDS:
        from benchmark.data.loader import tensors

        labelled = "labelled_dev" in needs
        pairs = [tensors(ds) for ds in ctx.dev_data]
        dev = tuple({"x": _np(x), **({"y": _np(y)} if labelled else {})} for x, y in pairs)
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
