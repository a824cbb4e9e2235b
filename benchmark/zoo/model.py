"""Classifiers: an image encoder with a frozen per-task head; normalisation lives inside the model."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from benchmark.batch_sizes import EVAL_BATCH_SIZE


class ClassificationHead(nn.Linear):
    """Linear head on L2-normalised features (the task-vectors recipe's zero-shot head shape)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(F.normalize(features, dim=-1))


class ImageClassifier(nn.Module):
    """encoder -> (optional per-task adapter) -> head, on inputs in [0, 1].

    Attacks work in [0, 1] pixel space and never see the normalisation, as the protocol fixes. The head and
    adapter are moved (in place) to the encoder's device; inputs may live on any device: they are moved to the
    model's (differentiably, so input gradients still reach them) and the logits come back on the input's
    device, so CPU-side code (labels, losses, `.numpy()`) works unchanged when the model is on an accelerator.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        adapter: nn.Module | None = None,
    ):
        super().__init__()
        device = next(encoder.parameters()).device
        self.encoder, self.head = encoder, head.to(device)
        self.adapter = adapter.to(device) if adapter is not None else None
        self.register_buffer("mean", torch.tensor(mean, device=device).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, device=device).view(1, -1, 1, 1), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The shared, task-independent part: the encoder's output on normalised `x`, on the model's device."""
        return self.encoder((x.to(self.mean.device) - self.mean) / self.std)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The per-task part: logits from `embed`'s output (adapter, if any, then head), on the model's device."""
        return self.head(self._adapt(features))

    def _adapt(self, features: torch.Tensor) -> torch.Tensor:
        return self.adapter(features) if self.adapter is not None else features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The features the head sees (after the adapter, before normalisation by the head), on x's device."""
        return self._adapt(self.embed(x)).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`classify(embed(x))`, on x's device."""
        return self.classify(self.embed(x)).to(x.device)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Predicted labels of `model` on `x`, in eval mode, batched."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return (predict(model, x) == y).float().mean().item()


def dataset_accuracy(model: nn.Module, ds: Dataset, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Top-1 accuracy in [0, 1] on a whole dataset, read `batch_size` images at a time (any split size; the
    same value as `accuracy` on its tensors)."""
    from benchmark.data import batches

    correct = [predict(model, x, batch_size) == y for x, y in batches(ds, batch_size)]
    return torch.cat(correct).float().mean().item()
