"""Weight averaging (model soups) and task arithmetic."""

from __future__ import annotations

import torch

from benchmark.merging.methods._common import add_scaled, sum_vectors, task_vectors
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


@register_merge(
    "weight_averaging",
    paper="Model soups (Wortsman et al., ICML 2022)",
    citation="Wortsman et al. Model soups: averaging weights of multiple fine-tuned models improves accuracy "
    "without increasing inference time. ICML 2022. arXiv:2203.05482",
)
def weight_averaging(pretrained: StateDict, finetuned: list[StateDict]) -> StateDict:
    """θ = (1/K) Σ_k θ_k, the uniform soup. The pretrained model is not part of the average."""
    return {k: torch.stack([sd[k] for sd in finetuned]).mean(0) for k in pretrained}


@register_merge(
    "task_arithmetic",
    hparams={"scaling_coef": 0.3},
    paper="Task arithmetic (Ilharco et al., ICLR 2023)",
    citation="Ilharco et al. Editing models with task arithmetic. ICLR 2023. arXiv:2212.04089",
)
def task_arithmetic(pretrained: StateDict, finetuned: list[StateDict], scaling_coef: float) -> StateDict:
    """θ = θ_0 + λ Σ_k τ_k with τ_k = θ_k − θ_0; λ = `scaling_coef` (0.3, the value used by AdaMerging,
    FusionBench and BadMerging for 8-task ViT-B/32 merges)."""
    return add_scaled(pretrained, sum_vectors(task_vectors(pretrained, finetuned)), scaling_coef)
