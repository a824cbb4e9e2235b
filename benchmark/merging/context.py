"""The data a data-dependent merge method receives, and the richer output some methods return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn
from torch.utils.data import Dataset

from benchmark.types import StateDict

ClassifierFactory = Callable[..., nn.Module]
"""`factory(state_dict, task_index, adapter=None) -> nn.Module`: maps images x in [0, 1] of shape (N, 3, H, W)
to task `task_index`'s logits; has `.features(x)` (encoder features after the adapter, before the head), the
split `forward = classify(embed(x))` (`embed`: normalisation + encoder, the same for every task; `classify`:
adapter + head) and an `.encoder` submodule whose state-dict keys are the merged state dict's keys
(`benchmark.zoo.model.ImageClassifier`, as `benchmark.defenses.api.TaskClassifiers` returns)."""


@dataclass
class MergeContext:
    """Everything a data-dependent method may use besides its hyperparameters.

    `merge()` fills `pretrained` and `finetuned` from its own arguments (the arguments win) and `tasks` with
    `task0, task1, ...` when empty, so callers usually pass only `classifier_factory`, `dev_data` and `seed`.
    `dev_data[i]` is task i's development set yielding `(x, y)`; methods that need only unlabelled data must
    ignore `y`. Inside a method, `pretrained`/`finetuned` hold floating tensors only (see `validate.py`).
    """

    pretrained: StateDict = field(default_factory=dict)
    finetuned: list[StateDict] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    classifier_factory: ClassifierFactory | None = None
    dev_data: list[Dataset] | None = None
    seed: int = 0


@dataclass
class MergeOutput:
    """A merged encoder plus one optional module per task applied to the encoder's features before the head
    (e.g. Representation Surgery's adapters). A plain `StateDict` result means no adapters."""

    state_dict: StateDict
    adapters: list[nn.Module | None]
