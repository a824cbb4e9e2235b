"""Backdoor metrics, exactly as BadMerging defines them (Zhang et al., CCS 2024, §5.1; official code
`test_patch`): docs/backdoor.md.

- Backdoor ASR: among the test images of the target task whose true label is *not* the target class, the
  fraction the (merged) model classifies as the target class once the trigger is pasted. Images of the
  target class are excluded from numerator and denominator.
- Clean accuracy: top-1 accuracy on each merged task's clean test split; `clean_acc` of a setting is the
  unweighted mean over the merged tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.zoo import predict


@dataclass
class ASRResult:
    """ASR and the per-example outcomes behind it (only the counted, non-target-class examples)."""

    asr: float
    n: int
    example_id: torch.Tensor
    label: torch.Tensor
    triggered_pred: torch.Tensor
    hit: torch.Tensor


def asr_from_predictions(triggered_pred: torch.Tensor, labels: torch.Tensor, target_class: int) -> tuple[float, int]:
    """(ASR, number of counted examples) from predictions on triggered images: counted = label ≠ target;
    ASR = mean(pred == target) over the counted. NaN when nothing is counted."""
    counted = labels != target_class
    n = int(counted.sum())
    if n == 0:
        return float("nan"), 0
    return int((triggered_pred[counted] == target_class).sum()) / n, n


def backdoor_asr(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target_class: int,
                 apply_trigger: Callable[[torch.Tensor], torch.Tensor]) -> ASRResult:
    """Paste the trigger on the target task's test images whose label ≠ `target_class`, predict with
    `model`, and count predictions of `target_class`. `example_id` indexes the test split."""
    ids = torch.nonzero(y != target_class).flatten()
    pred = predict(model, apply_trigger(x[ids]))
    labels = y[ids]
    asr, n = asr_from_predictions(pred, labels, target_class)
    return ASRResult(asr, n, ids, labels, pred, pred == target_class)


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] on clean images."""
    return int((predict(model, x) == y).sum()) / len(y)


def mean_clean_accuracy(per_task: dict[str, float]) -> float:
    """The setting's clean accuracy: the unweighted mean over the merged tasks."""
    return float(sum(per_task.values()) / len(per_task))
