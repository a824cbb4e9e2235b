"""Backdoor metrics, exactly as BadMerging defines them (Zhang et al., CCS 2024, §5.1; official code
`test_patch`): docs/backdoor.md.

- Backdoor ASR: among the test images of the target task whose true label is *not* the target class, the
  fraction the (merged) model classifies as the target class once the trigger is pasted. Images of the
  target class are excluded from numerator and denominator.
- ASR floor: the same fraction on the same images *without* the trigger (the target-class rate the merged
  model gives anyway; BadMerging-attacked merges predict the target on many untriggered images, and a
  3-class target is hit a third of the time by chance). "ASR − floor" is what the trigger adds.
- Clean accuracy: top-1 accuracy on each merged task's clean test split; `clean_acc` of a setting is the
  unweighted mean over the merged tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from benchmark.batch_sizes import EVAL_BATCH_SIZE
from benchmark.data import batches
from benchmark.zoo import predict


@dataclass
class ASRResult:
    """ASR, its untriggered floor and the per-example outcomes behind them (only the counted,
    non-target-class examples; `clean_pred` is the prediction on the same image without the trigger)."""

    asr: float
    n: int
    example_id: torch.Tensor
    label: torch.Tensor
    triggered_pred: torch.Tensor
    hit: torch.Tensor
    floor: float = float("nan")
    clean_pred: torch.Tensor | None = None


def asr_from_predictions(triggered_pred: torch.Tensor, labels: torch.Tensor, target_class: int) -> tuple[float, int]:
    """(ASR, number of counted examples) from predictions on triggered images: counted = label ≠ target;
    ASR = mean(pred == target) over the counted. NaN when nothing is counted."""
    counted = labels != target_class
    n = int(counted.sum())
    if n == 0:
        return float("nan"), 0
    return int((triggered_pred[counted] == target_class).sum()) / n, n


def backdoor_asr(model: nn.Module, test: Dataset, target_class: int,
                 apply_trigger: Callable[[torch.Tensor], torch.Tensor],
                 clean_pred: torch.Tensor | None = None, batch_size: int = EVAL_BATCH_SIZE) -> ASRResult:
    """Paste the trigger on the target task's test images whose label ≠ `target_class`, predict with
    `model`, and count predictions of `target_class` (ASR); the floor counts them on the same images
    without the trigger. `clean_pred` (the model's predictions on the whole clean split, e.g. from
    `clean_predictions`) saves the untriggered forward pass. `example_id` indexes the test split, which is
    read `batch_size` images at a time."""
    ids, labels, preds, start = [], [], [], 0
    own_clean = []
    for x, y in batches(test, batch_size):
        keep = torch.nonzero(y != target_class).flatten()
        ids.append(keep + start)
        labels.append(y[keep])
        preds.append(predict(model, apply_trigger(x[keep]), batch_size) if len(keep) else y[keep])
        if clean_pred is None:
            own_clean.append(predict(model, x[keep], batch_size) if len(keep) else y[keep])
        start += len(y)
    example_id, label, pred = torch.cat(ids), torch.cat(labels), torch.cat(preds)
    cpred = torch.cat(own_clean) if clean_pred is None else clean_pred[example_id]
    asr, n = asr_from_predictions(pred, label, target_class)
    floor, _ = asr_from_predictions(cpred, label, target_class)
    return ASRResult(asr, n, example_id, label, pred, pred == target_class, floor, cpred)


def clean_predictions(model: nn.Module, test: Dataset, batch_size: int = EVAL_BATCH_SIZE
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, labels) of `model` on the whole clean split, read `batch_size` images at a time."""
    preds, labels = [], []
    for x, y in batches(test, batch_size):
        preds.append(predict(model, x, batch_size))
        labels.append(y)
    return torch.cat(preds), torch.cat(labels)


def clean_accuracy(model: nn.Module, test: Dataset) -> float:
    """Top-1 accuracy in [0, 1] on clean images, read batch by batch."""
    pred, y = clean_predictions(model, test)
    return int((pred == y).sum()) / len(y)


def mean_clean_accuracy(per_task: dict[str, float]) -> float:
    """The setting's clean accuracy: the unweighted mean over the merged tasks."""
    return float(sum(per_task.values()) / len(per_task))
