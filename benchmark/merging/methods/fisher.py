"""Fisher-weighted averaging."""

from __future__ import annotations

import warnings

import torch
from torch.func import grad, vmap

from benchmark.merging.context import MergeContext
from benchmark.merging.methods._models import WithEncoder, dev_images
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


def diagonal_fisher(
    ctx: MergeContext, task: int, n_examples: int, batch_size: int, generator: torch.Generator
) -> StateDict:
    """Diagonal Fisher of fine-tuned model `task` (with its own head) over its first `n_examples` dev images:
    F = (1/N) Σ_i (∇_θ log p_θ(y_i | x_i))², one label y_i ~ p_θ(· | x_i) sampled per image from the model's
    own predictive distribution (a one-sample Monte-Carlo estimate of the expectation over y that the paper
    takes exactly). Per-example gradients come from `torch.func.vmap(grad(...))` over `batch_size` images at
    a time. Dev labels are not used."""
    params = {k: v.detach() for k, v in ctx.finetuned[task].items()}
    model = WithEncoder(ctx.classifier_factory(ctx.finetuned[task], task), params)

    def log_likelihood(p: StateDict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(model(p, x[None]).float(), dim=-1)[0].gather(0, y[None]).sum()

    per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    fisher = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in params.items()}
    count = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is a performance drop")  # vmap's fallback notice
        for x in dev_images(ctx, task, batch_size=batch_size, n_examples=n_examples):
            with torch.no_grad():
                probs = torch.softmax(model(params, x).float(), dim=-1)
            labels = torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(x.device)
            for key, g in per_example(params, x, labels).items():
                fisher[key] += g.float().pow(2).sum(0)
            count += len(x)
    return {k: f / max(count, 1) for k, f in fisher.items()}


def fisher_weighted_average(models: list[StateDict], fishers: list[StateDict], fisher_floor: float) -> StateDict:
    """θ = Σ_k F̃_k θ_k / Σ_k F̃_k entry by entry, F̃_k = max(F_k, fisher_floor): where every Fisher is
    below the floor (e.g. tensors the head does not depend on) this is the simple average."""
    merged = {}
    for key, ref in models[0].items():
        weights = [f[key].clamp(min=fisher_floor) for f in fishers]
        numerator = sum(w * m[key].float() for w, m in zip(weights, models, strict=True))
        merged[key] = (numerator / sum(weights)).to(ref.dtype)
    return merged


@register_merge(
    "fisher",
    needs=("unlabelled_dev", "classifier_factory"),
    hparams={"n_examples": 256, "fisher_floor": 1e-6, "batch_size": 8},
    paper="Fisher merging (Matena & Raffel, NeurIPS 2022)",
    citation="Matena & Raffel. Merging models with Fisher-weighted averaging. NeurIPS 2022. arXiv:2111.09832",
)
def fisher(ctx: MergeContext, n_examples: int, fisher_floor: float, batch_size: int) -> StateDict:
    """Fisher-weighted average of the fine-tuned encoders, each Fisher estimated with its own task head on
    `n_examples` (256, FusionBench's default) unlabelled dev images, labels sampled from the model;
    sampling is seeded by `ctx.seed`. `fisher_floor` = 1e-6 as in the reference code. Fishers are not
    normalised. `batch_size` (8) bounds memory: that many per-example gradients are held at once."""
    generator = torch.Generator().manual_seed(ctx.seed)
    fishers = [diagonal_fisher(ctx, k, n_examples, batch_size, generator) for k in range(len(ctx.finetuned))]
    return fisher_weighted_average(ctx.finetuned, fishers, fisher_floor)
