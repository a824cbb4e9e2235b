"""AdaMerging: merging coefficients learned by test-time entropy minimisation (task-wise and layer-wise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.merging.context import MergeContext
from benchmark.merging.methods._models import WithEncoder, endless_dev_images, require_split
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict

_HPARAMS = {"init_coef": 0.3, "lr": 1e-3, "steps": 500, "batch_size": 16, "batches_per_step": 2}
_PAPER = "AdaMerging (Yang et al., ICLR 2024)"
_CITATION = "Yang et al. AdaMerging: Adaptive model merging for multi-task learning. ICLR 2024. arXiv:2310.02575"


@dataclass
class Coefficients:
    """Learned λ, shape (tasks, groups): groups = 1 (task-wise) or one per floating tensor (layer-wise), in
    the state dict's key order; `losses[i]` is the summed mean prediction entropy before step i."""

    lambdas: torch.Tensor
    losses: list[float]


def stacked_task_vectors(pretrained: StateDict, finetuned: list[StateDict]) -> StateDict:
    """τ_k stacked per key: key -> tensor of shape (tasks, *shape)."""
    return {k: torch.stack([sd[k] - p for sd in finetuned]) for k, p in pretrained.items()}


def merged_state(pretrained: StateDict, stacked: StateDict, lambdas: torch.Tensor) -> StateDict:
    """θ = θ_0 + Σ_k λ_k^(g) τ_k, with group g = 0 for every key (task-wise) or the key's index
    (layer-wise)."""
    layerwise = lambdas.shape[1] > 1
    return {
        key: p + torch.tensordot(lambdas[:, g if layerwise else 0], stacked[key], dims=1)
        for g, (key, p) in enumerate(pretrained.items())
    }


def learn_coefficients(
    ctx: MergeContext, *, layerwise: bool, init_coef: float, lr: float, steps: int, batch_size: int,
    batches_per_step: int, on_step: Callable[[int, float, torch.Tensor], None] | None = None,
) -> Coefficients:
    """The official AdaMerging loop (EnnengYang/AdaMerging `main_*_adamerging.py`): per Adam step, the loss
    is Σ_k Σ_b mean entropy of task k's predictions (its own head) on `batches_per_step` shuffled batches of
    `batch_size` of its unlabelled dev data (the official loop breaks after batch index 1: 2 batches);
    λ starts at `init_coef` and is projected onto [0, 1] after every step. Batches are shuffled
    reproducibly from `ctx.seed`; the fine-tuned models' λ are all that is trained. `on_step(i, loss, λ)`,
    if given, is called after every step (progress reporting; λ must not be modified).

    The loss is the official one, computed in one batched pass: every task's batches of a step are
    concatenated through the shared encoder (`embed`, with the merged tensors) once, then split back, each
    batch's mean entropy taken with its own task's `classify`. Batching changes only the floating-point
    summation order inside the encoder, not the draws or the loss. The factory's classifiers must have that
    split API (`require_split`; `ImageClassifier` has it), else `MergeInputError`."""
    stacked = stacked_task_vectors(ctx.pretrained, ctx.finetuned)
    n_tasks = len(ctx.finetuned)
    groups = len(ctx.pretrained) if layerwise else 1
    lambdas = torch.full((n_tasks, groups), float(init_coef), device=next(iter(ctx.pretrained.values())).device)
    lambdas.requires_grad_()
    optimizer = torch.optim.Adam([lambdas], lr=lr)
    classifiers = [ctx.classifier_factory(ctx.pretrained, k) for k in range(n_tasks)]
    for model in classifiers:
        require_split(model)
    encoder = WithEncoder(classifiers[0], ctx.pretrained)  # embed is task-independent: one encoder for all
    batches = [endless_dev_images(ctx, k, batch_size=batch_size, seed=ctx.seed + k) for k in range(n_tasks)]
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            params = merged_state(ctx.pretrained, stacked, lambdas)
            drawn = [(k, next(data)) for k, data in enumerate(batches) for _ in range(batches_per_step)]
            features = encoder.embed(params, torch.cat([x for _, x in drawn]))
            parts = features.split([len(x) for _, x in drawn])
            loss = sum(_entropy(classifiers[k].classify(f)) for (k, _), f in zip(drawn, parts, strict=True))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                lambdas.clamp_(0.0, 1.0)
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses), losses[-1], lambdas.detach())
    return Coefficients(lambdas.detach(), losses)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1).mean()


def _adamerging(ctx: MergeContext, layerwise: bool, **hparams: float) -> StateDict:
    learned = learn_coefficients(ctx, layerwise=layerwise, **hparams)
    merged = merged_state(ctx.pretrained, stacked_task_vectors(ctx.pretrained, ctx.finetuned), learned.lambdas)
    return {k: v.to(ctx.pretrained[k].dtype) for k, v in merged.items()}


def _register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`register_merge(name)` with what both AdaMerging variants share: needs, defaults, paper and citation."""
    return register_merge(name, needs=("unlabelled_dev", "classifier_factory"), hparams=_HPARAMS, paper=_PAPER,
                          citation=_CITATION)


@_register("adamerging_task")
def adamerging_task(
    ctx: MergeContext, init_coef: float, lr: float, steps: int, batch_size: int, batches_per_step: int
) -> StateDict:
    """Task-wise AdaMerging: one λ_k per task, θ = θ_0 + Σ_k λ_k τ_k (`learn_coefficients`). Published
    setting: λ init 0.3, Adam lr 1e-3, 500 steps, 2 batches of 16 per task per step (all defaults here)."""
    return _adamerging(ctx, False, init_coef=init_coef, lr=lr, steps=steps, batch_size=batch_size,
                       batches_per_step=batches_per_step)


@_register("adamerging_layer")
def adamerging_layer(
    ctx: MergeContext, init_coef: float, lr: float, steps: int, batch_size: int, batches_per_step: int
) -> StateDict:
    """Layer-wise AdaMerging: one λ_k^(l) per task per floating tensor of the state dict (as the official
    code, which has one coefficient per parameter tensor), θ^(l) = θ_0^(l) + Σ_k λ_k^(l) τ_k^(l). Same
    defaults as task-wise. λ is projected onto [0, 1] after each step (the official code clamps λ where it
    is used).
    """
    return _adamerging(ctx, True, init_coef=init_coef, lr=lr, steps=steps, batch_size=batch_size,
                       batches_per_step=batches_per_step)
