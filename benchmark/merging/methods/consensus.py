"""Consensus merging with TALL masks."""

from __future__ import annotations

import torch

from benchmark.merging.methods._common import add_scaled, sum_vectors, task_vectors
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


def tall_masks(vectors: list[StateDict], mtl: StateDict, tall_mask_lambda: float) -> list[dict[str, torch.Tensor]]:
    """TALL mask of each task: m_t = |τ_t| > λ · |τ_MTL − τ_t| (strict, as in the reference code)."""
    return [{k: v[k].abs() > tall_mask_lambda * (mtl[k] - v[k]).abs() for k in mtl} for v in vectors]


@register_merge(
    "consensus_ta",
    hparams={"scaling_coef": 0.3, "tall_mask_lambda": 0.4, "min_agreement": 2},
    paper="Consensus merging / TALL masks (Wang et al., ICML 2024)",
    citation="Wang et al. Localizing task information for improved model merging and compression. ICML 2024. "
    "arXiv:2405.07813",
)
def consensus_ta(
    pretrained: StateDict,
    finetuned: list[StateDict],
    scaling_coef: float,
    tall_mask_lambda: float,
    min_agreement: int,
) -> StateDict:
    """Consensus Task Arithmetic: τ_MTL = Σ_t τ_t; keep the entries that at least `min_agreement` (k = 2,
    the paper's default: drops "selfish" and "catastrophic" weights) tasks' TALL masks select; θ = θ_0 + λ
    (mask ⊙ τ_MTL).

    Deviation: the paper picks each task's TALL-mask λ_t from {0.2, …, 0.6} on validation data and tunes
    the scaling coefficient; this data-free version uses one fixed λ_t = `tall_mask_lambda` = 0.4 (the
    middle of that grid) for every task and the task-arithmetic λ = 0.3.
    """
    vectors = task_vectors(pretrained, finetuned)
    mtl = sum_vectors(vectors)
    masks = tall_masks(vectors, mtl, tall_mask_lambda)
    kept = {k: sum(m[k].int() for m in masks) >= min_agreement for k in mtl}
    return add_scaled(
        pretrained, {k: torch.where(kept[k], t, torch.zeros_like(t)) for k, t in mtl.items()}, scaling_coef
    )
