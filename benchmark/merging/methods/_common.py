"""State-dict arithmetic shared by the built-in methods. Every function returns new tensors."""

from __future__ import annotations

from collections.abc import Callable

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


def per_matrix(vectors: list[StateDict], merge_matrix: Callable[[list[torch.Tensor]], torch.Tensor]) -> StateDict:
    """A merged task vector built matrix by matrix, as FusionBench's TSV-M, Iso-C/CTS and WUDI do: every 2-D
    tensor (linear and attention weights, open_clip's `proj` and `positional_embedding`) is
    `merge_matrix([τ_1[key], …, τ_K[key]])`, computed in float32 at least; every other tensor (biases,
    LayerNorms, `class_embedding`, the 4-D `conv1` patch embedding) is the mean of the task vectors."""
    merged: StateDict = {}
    for key, ref in vectors[0].items():
        stacked = [v[key] for v in vectors]
        if ref.dim() == 2:
            compute = torch.promote_types(ref.dtype, torch.float32)
            merged[key] = merge_matrix([t.to(compute) for t in stacked]).to(ref.dtype)
        else:
            merged[key] = torch.stack(stacked).mean(0)
    return merged
