"""Batch sizes per suite and device kind (issue 15).

A suite may declare, per device kind, how many images go through the model at once:

    batch_sizes:
      cpu:  {eval: 512, grad: 512, craft: 256}
      cuda: {eval: 128, grad: 256, craft: 256}

- `eval`: forward passes that only read predictions (clean and adversarial accuracy, the zoo's accuracies,
  the backdoor ASR and its floor). A prediction is per example, so this batch size changes memory and speed,
  never a stored number (`tests/test_batch_sizes.py` stores the same rows at two sizes).
- `grad`: the transfer track's clean passes, which keep each example's features and input gradient (CKA,
  gradient cosines). Their floats depend on how the examples are chunked (matrix-product blocking; last-bit
  differences), so this size is part of those artefacts' cache keys and of the transfer units' version.
- `craft`: images per call of a transfer attack. DI and VMI draw their randomness per batch, so this is part
  of the adversarial sets' identity (their cache key) and of the transfer units' version; it overrides the
  older `transfer.craft_batch_size`.

Training batch sizes are not here: they are hyperparameters of the recipes (task vectors' fine-tuning batch
of 128, BadMerging's, the defenses'), the same on every device, because changing them changes what is trained.

Resolution: the run's device kind (`cpu`, `cuda`) picks its entry; a purpose the suite does not declare
takes the default (`eval` and `grad` 512, mergesec's evaluation batch since 1.0; `craft`
`transfer.craft_batch_size`, else 256). The resolved sizes are recorded in every run's `hardware` provenance.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.errors import MergesecError

DEVICE_KINDS = ("cpu", "cuda")
PURPOSES = ("eval", "grad", "craft")
VERSIONED = ("grad", "craft")  # the purposes whose batch size changes floats: part of the transfer units' version
EVAL_BATCH_SIZE = 512


class BatchSizeError(MergesecError):
    """A suite's `batch_sizes:` section mergesec cannot use."""


def check_batch_sizes(suite_name: str, raw: Any) -> None:
    """Raise `BatchSizeError` (problem + fix) unless `raw` maps device kinds to {purpose: positive int}."""
    where = f"suite {suite_name!r}: batch_sizes"
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise BatchSizeError(f"{where} must be a mapping like {{cpu: {{eval: 512, grad: 512, craft: 256}}}}")
    for kind, sizes in raw.items():
        if kind not in DEVICE_KINDS:
            raise BatchSizeError(f"{where}: unknown device kind {kind!r}; use one of {list(DEVICE_KINDS)}")
        if not isinstance(sizes, dict):
            raise BatchSizeError(f"{where}.{kind} must be a mapping like {{eval: 512, grad: 512, craft: 256}}")
        for purpose, n in sizes.items():
            if purpose == "train":
                raise BatchSizeError(
                    f"{where}.{kind}.train: training batch sizes are part of the recipe (they change what is "
                    "trained), not of the device; set recipe.finetune.batch_size instead")
            if purpose not in PURPOSES:
                raise BatchSizeError(f"{where}.{kind}: unknown purpose {purpose!r}; use {list(PURPOSES)}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise BatchSizeError(f"{where}.{kind}.{purpose} must be a positive integer (got {n!r})")


def resolve_batch_sizes(raw_suite: dict[str, Any], device: torch.device) -> dict[str, int]:
    """The batch size of every purpose for a run on `device`, from the suite's raw spec (see the module)."""
    from benchmark.attacks.transfer import CRAFT_BATCH_SIZE

    craft = int((raw_suite.get("transfer") or {}).get("craft_batch_size", CRAFT_BATCH_SIZE))
    declared = (raw_suite.get("batch_sizes") or {}).get(torch.device(device).type, {})
    return {"eval": EVAL_BATCH_SIZE, "grad": EVAL_BATCH_SIZE, "craft": craft,
            **{k: int(v) for k, v in declared.items()}}
