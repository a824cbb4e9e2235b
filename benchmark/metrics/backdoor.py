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
from torch.utils.data import Dataset

from benchmark.data import batches
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


def backdoor_asr(model: nn.Module, test: Dataset, target_class: int,
                 apply_trigger: Callable[[torch.Tensor], torch.Tensor]) -> ASRResult:
    """Paste the trigger on the target task's test images whose label ≠ `target_class`, predict with
    `model`, and count predictions of `target_class`. `example_id` indexes the test split, which is read
    batch by batch."""
    ids, labels, preds, start = [], [], [], 0
    for x, y in batches(test):
        keep = torch.nonzero(y != target_class).flatten()
        ids.append(keep + start)
        labels.append(y[keep])
        preds.append(predict(model, apply_trigger(x[keep])) if len(keep) else y[keep])
        start += len(y)
    example_id, label, pred = torch.cat(ids), torch.cat(labels), torch.cat(preds)
    asr, n = asr_from_predictions(pred, label, target_class)
    return ASRResult(asr, n, example_id, label, pred, pred == target_class)


def clean_accuracy(model: nn.Module, test: Dataset) -> float:
    """Top-1 accuracy in [0, 1] on clean images, read batch by batch."""
    correct = sum(int((predict(model, x) == y).sum()) for x, y in batches(test))
    return correct / len(test)


def mean_clean_accuracy(per_task: dict[str, float]) -> float:
    """The setting's clean accuracy: the unweighted mean over the merged tasks."""
    return float(sum(per_task.values()) / len(per_task))
