"""State-dict arithmetic shared by the built-in methods. Every function returns new tensors."""

from __future__ import annotations

import torch

from benchmark.types import StateDict


def task_vectors(pretrained: StateDict, finetuned: list[StateDict]) -> list[StateDict]:
    """τ_k = θ_k − θ_0 for every fine-tuned model (Ilharco et al., ICLR 2023)."""
    return [{k: sd[k] - p for k, p in pretrained.items()} for sd in finetuned]


def sum_vectors(vectors: list[StateDict]) -> StateDict:
    """Σ_k τ_k, key by key."""
    return {k: torch.stack([v[k] for v in vectors]).sum(0) for k in vectors[0]}


def add_scaled(pretrained: StateDict, vector: StateDict, scaling_coef: float) -> StateDict:
    """θ_0 + λ·τ."""
    return {k: p + scaling_coef * vector[k] for k, p in pretrained.items()}
