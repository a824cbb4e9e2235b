"""Model Breadcrumbs (Davari & Belilovsky, ECCV 2024, arXiv:2312.06795), written for mergesec.

For every task vector τ_k = θ_k − θ_0 and every tensor (layer) of it, Breadcrumbs builds a mask that drops
both tails of the magnitude distribution: the largest-magnitude entries (outliers, fraction `top_fraction`)
and the smallest-magnitude ones (negligible perturbations, fraction `bottom_fraction`). The masked task
vectors are then added to the pretrained weights as in task arithmetic:

    θ = θ_0 + λ Σ_k m_k ⊙ τ_k

The entry point is a plain function over state dicts (dict[str, torch.Tensor]); it must not modify its
inputs and must return a tensor for every key of `pretrained`, with the same shape and dtype.
"""

import torch


def breadcrumbs_mask(tau: torch.Tensor, top_fraction: float, bottom_fraction: float) -> torch.Tensor:
    """Boolean mask of one tensor: False for the `top_fraction` largest and the `bottom_fraction` smallest
    magnitudes. Entries are ranked by a stable sort, so ties are broken by position and the result is
    deterministic."""
    n = tau.numel()
    n_top = int(top_fraction * n)
    n_bottom = int(bottom_fraction * n)
    if n_top + n_bottom >= n:  # tiny tensors (biases, scalars): keep the single middle entry
        n_bottom = max(0, min(n_bottom, n - n_top - 1))
    order = torch.argsort(tau.abs().flatten(), stable=True)  # ascending magnitude
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[n_bottom:n - n_top]] = True
    return keep.view(tau.shape)


def merge(pretrained, finetuned, scaling_coef=0.3, top_fraction=0.01, bottom_fraction=0.85):
    """θ_0 + λ Σ_k mask_k ⊙ (θ_k − θ_0), with the mask computed per tensor of each task vector."""
    if not (0 <= top_fraction < 1 and 0 <= bottom_fraction < 1 and top_fraction + bottom_fraction < 1):
        raise ValueError("need 0 <= top_fraction, bottom_fraction and top_fraction + bottom_fraction < 1")
    merged = {}
    for key, base in pretrained.items():
        total = torch.zeros_like(base)
        for model in finetuned:
            tau = model[key] - base
            total += torch.where(breadcrumbs_mask(tau, top_fraction, bottom_fraction), tau, torch.zeros_like(tau))
        merged[key] = base + scaling_coef * total
    return merged
