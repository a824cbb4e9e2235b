"""Helpers for data-dependent methods: dev-data loaders and running a classifier with substituted encoder
tensors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Subset

from benchmark.data.loader import loader_options
from benchmark.errors import MergeInputError
from benchmark.merging.context import MergeContext
from benchmark.types import StateDict


def device_of(state_dict: StateDict) -> torch.device:
    return next(iter(state_dict.values())).device


def dev_images(
    ctx: MergeContext, task: int, *, batch_size: int, n_examples: int | None = None
) -> Iterator[torch.Tensor]:
    """Task `task`'s first `n_examples` dev images (all when None), in order, on the models' device; labels
    ignored."""
    data = ctx.dev_data[task]
    if n_examples is not None:
        data = Subset(data, range(min(n_examples, len(data))))
    device = device_of(ctx.pretrained)
    for batch in DataLoader(data, batch_size=batch_size, **loader_options()):
        yield _images(batch).to(device)


def endless_dev_images(ctx: MergeContext, task: int, *, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Shuffled batches of task `task`'s dev images, epoch after epoch, reproducible from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    device = device_of(ctx.pretrained)
    while True:
        for batch in DataLoader(ctx.dev_data[task], batch_size=batch_size, shuffle=True, generator=generator,
                                **loader_options()):
            yield _images(batch).to(device)


def _images(batch: object) -> torch.Tensor:
    return batch[0] if isinstance(batch, list | tuple) else batch  # type: ignore[return-value]


class WithEncoder:
    """Runs a classifier from `classifier_factory` (whole, or only its shared part `embed`) with its encoder's
    tensors replaced by `params` (a state dict with the merged keys), through `torch.func.functional_call`:
    gradients flow to `params`, the module is untouched. The module's tied tensors (one tensor under two
    names) are looked for once, here: without any, each call skips `functional_call`'s search for them
    (`tie_weights=False`; a third of a small forward's time), computing bitwise the same."""

    def __init__(self, model: nn.Module, keys: Iterable[str]):
        encoder = getattr(model, "encoder", None)
        prefix = next((name for name, m in model.named_modules() if m is encoder), None)
        if prefix is None:
            raise MergeInputError(
                "classifier_factory must return an nn.Module with an .encoder submodule; "
                f"got {type(model).__name__} without one"
            )
        known = set(encoder.state_dict())
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise MergeInputError(
                f"the classifier's encoder has no tensor(s) {unknown[:5]}; classifier_factory must load "
                "the merged state dict into .encoder, whose state-dict keys must be the merged keys"
            )
        self.model, self._prefix = model, f"{prefix}." if prefix else ""
        self._tied = _has_tied_tensors(model)
        self._embedder = _Embedder(model)

    def __call__(self, params: StateDict, x: torch.Tensor) -> torch.Tensor:
        """Logits of the classifier on `x` with encoder tensors `params`."""
        return functional_call(self.model, {self._prefix + k: v for k, v in params.items()}, (x,),
                               tie_weights=self._tied)

    def embed(self, params: StateDict, x: torch.Tensor) -> torch.Tensor:
        """`model.embed(x)` (the task-independent part, see `require_split`) with encoder tensors `params`."""
        return functional_call(self._embedder, {f"model.{self._prefix}{k}": v for k, v in params.items()}, (x,),
                               tie_weights=self._tied)


class _Embedder(nn.Module):
    """`model.embed` as a module's forward, so that `functional_call` can run it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def require_split(model: nn.Module) -> None:
    """Raise `MergeInputError` unless `model` has `ImageClassifier`'s split API: `embed(x)` (normalisation +
    encoder, the same for every task) and `classify(features)` (the per-task part: adapter and head)."""
    missing = [name for name in ("embed", "classify") if not callable(getattr(model, name, None))]
    if missing:
        raise MergeInputError(
            f"classifier_factory returned a {type(model).__name__} without {' and '.join(missing)}(); return a "
            "benchmark.zoo.model.ImageClassifier (embed(x): normalise + encoder; classify(features): adapter + "
            "head; forward = classify(embed(x))), as benchmark.defenses.api.TaskClassifiers does"
        )


def _has_tied_tensors(model: nn.Module) -> bool:
    """Whether a parameter or buffer of `model` is registered under more than one name."""
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return len({id(t) for _, t in named}) != len(named)
