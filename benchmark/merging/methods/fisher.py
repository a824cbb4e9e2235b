"""Fisher-weighted averaging."""

from __future__ import annotations

import warnings

import torch
from torch.func import grad, vmap

from benchmark.merging.context import MergeContext
from benchmark.merging.methods._models import WithEncoder, dev_images
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


def diagonal_fisher(ctx: MergeContext, task: int, n_examples: int, batch_size: int) -> StateDict:
    """Diagonal Fisher of fine-tuned model `task` (with its own head) over its first `n_examples` dev images,
    the exact expectation over the model's predictive distribution (Matena & Raffel, eq. 3):
    F = (1/N) Σ_i Σ_y p_θ(y | x_i) (∇_θ log p_θ(y | x_i))². Per-example gradients come from
    `torch.func.vmap(grad(...))`, one class at a time over `batch_size` images. Dev labels are not used."""
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
            for label in range(probs.shape[1]):
                labels = torch.full((len(x),), label, dtype=torch.long, device=x.device)
                weight = probs[:, label]
                for key, g in per_example(params, x, labels).items():
                    fisher[key] += torch.tensordot(weight, g.float().pow(2), dims=1)
            count += len(x)
    return {k: f / max(count, 1) for k, f in fisher.items()}


def fisher_weighted_average(
    models: list[StateDict], fishers: list[StateDict], fisher_floor: float, normalize: bool
) -> StateDict:
    """θ = Σ_k c_k (F_k + ε) θ_k / Σ_k c_k (F_k + ε) entry by entry, ε = `fisher_floor`, as FusionBench's
    `merging_with_fisher_weights`: with `normalize`, c_k ∝ 1 / (‖F_k‖ + ε) (‖·‖ the L2 norm of model k's
    whole Fisher, c summing to 1), so no model dominates by the scale of its Fisher; else c_k = 1. Where
    every Fisher is ≈ 0 (tensors the head does not depend on) this is the c-weighted average."""
    if normalize:
        norms = torch.stack([torch.linalg.vector_norm(torch.stack([v.norm() for v in f.values()])) for f in fishers])
        inverse = 1.0 / (norms + fisher_floor)
        coefs = (inverse / inverse.sum()).tolist()
    else:
        coefs = [1.0] * len(fishers)
    merged = {}
    for key, ref in models[0].items():
        weights = [c * (f[key] + fisher_floor) for c, f in zip(coefs, fishers, strict=True)]
        numerator = sum(w * m[key].float() for w, m in zip(weights, models, strict=True))
        merged[key] = (numerator / sum(weights)).to(ref.dtype)
    return merged


@register_merge(
    "fisher",
    needs=("unlabelled_dev", "classifier_factory"),
    hparams={"n_examples": 256, "fisher_floor": 1e-6, "normalize": True, "batch_size": 8},
    seed_free=True,  # the first n_examples dev images in order, nothing random: one merge for every seed
    paper="Fisher merging (Matena & Raffel, NeurIPS 2022)",
    citation="Matena & Raffel. Merging models with Fisher-weighted averaging. NeurIPS 2022. arXiv:2111.09832",
)
def fisher(ctx: MergeContext, n_examples: int, fisher_floor: float, normalize: bool, batch_size: int) -> StateDict:
    """Fisher-weighted average (`fisher_weighted_average`) of the fine-tuned encoders, each model's exact
    diagonal Fisher (`diagonal_fisher`) computed with its own task head on its first `n_examples` unlabelled
    dev images. Defaults (FusionBench's clip_fisher_merging.yaml): 256 examples, floor 1e-6, Fishers
    normalised. `batch_size` bounds memory (that many per-example gradients are held at once). Deterministic and
    seed-free (`seed_free`)."""
    fishers = [diagonal_fisher(ctx, k, n_examples, batch_size) for k in range(len(ctx.finetuned))]
    return fisher_weighted_average(ctx.finetuned, fishers, fisher_floor, normalize)
