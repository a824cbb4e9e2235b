"""Fisher-weighted averaging."""

from __future__ import annotations

import torch

from benchmark.merging.context import MergeContext
from benchmark.merging.methods._models import WithEncoder, dev_images
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


def diagonal_fisher(ctx: MergeContext, task: int, n_examples: int, generator: torch.Generator) -> StateDict:
    """Diagonal Fisher of fine-tuned model `task` (with its own head) over its first `n_examples` dev
    images: F = (1/N) Σ_i (∇_θ log p_θ(y_i | x_i))², one label y_i ~ p_θ(· | x_i) sampled per image from
    the model's own predictive distribution (a one-sample Monte-Carlo estimate of the expectation over y
    that the paper takes exactly). Dev labels are not used."""
    params = {k: v.detach().requires_grad_() for k, v in ctx.finetuned[task].items()}
    model = WithEncoder(ctx.classifier_factory(ctx.finetuned[task], task), params)
    fisher = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in params.items()}
    count = 0
    with torch.enable_grad():
        for batch in dev_images(ctx, task, batch_size=32, n_examples=n_examples):
            for x in batch:
                log_probs = torch.log_softmax(model(params, x[None]).float(), dim=-1)[0]
                label = torch.multinomial(log_probs.detach().exp().cpu(), 1, generator=generator).item()
                grads = torch.autograd.grad(log_probs[label], list(params.values()), allow_unused=True)
                for f, g in zip(fisher.values(), grads, strict=True):
                    if g is not None:
                        f += g.float() ** 2
                count += 1
    return {k: f / max(count, 1) for k, f in fisher.items()}


def fisher_weighted_average(
    models: list[StateDict], fishers: list[StateDict], fisher_floor: float
) -> StateDict:
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
    hparams={"n_examples": 256, "fisher_floor": 1e-6},
    paper="Fisher merging (Matena & Raffel, NeurIPS 2022)",
    citation="Matena & Raffel. Merging models with Fisher-weighted averaging. NeurIPS 2022. arXiv:2111.09832",
)
def fisher(ctx: MergeContext, n_examples: int, fisher_floor: float) -> StateDict:
    """Fisher-weighted average of the fine-tuned encoders, each Fisher estimated with its own task head on
    `n_examples` (256, FusionBench's default) unlabelled dev images, labels sampled from the model;
    sampling is seeded by `ctx.seed`. `fisher_floor` = 1e-6 as in the reference code. Fishers are not
    normalised."""
    generator = torch.Generator().manual_seed(ctx.seed)
    fishers = [diagonal_fisher(ctx, k, n_examples, generator) for k in range(len(ctx.finetuned))]
    return fisher_weighted_average(ctx.finetuned, fishers, fisher_floor)
