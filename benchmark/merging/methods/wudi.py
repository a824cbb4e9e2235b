"""WUDI merging: the merged task vector that minimises its interference with every task vector, data-free."""

from __future__ import annotations

import torch

from benchmark.merging.methods._common import per_matrix, task_vectors
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


def wudi_matrix(deltas: list[torch.Tensor], steps: int, lr: float) -> torch.Tensor:
    """WUDI's merged matrix (Cheng et al., eq. 9): starting from Σ_k τ_k, `steps` Adam steps (lr `lr`, no
    weight decay) on Σ_k ‖(τ_m − τ_k) τ_kᵀ‖²_F / ‖τ_k‖²_F, the task vectors standing in for their inputs.
    A task vector that is 0 (an untouched matrix) is left out of the loss."""
    stacked = torch.stack(deltas)
    norms = stacked.flatten(1).pow(2).sum(1)
    stacked, norms = stacked[norms > 0], norms[norms > 0]
    merged = torch.nn.Parameter(stacked.sum(0) if len(stacked) else torch.zeros_like(deltas[0]))
    if not len(stacked):
        return merged.detach()
    optimizer = torch.optim.Adam([merged], lr=lr, weight_decay=0.0)
    with torch.enable_grad():
        for _ in range(steps):
            interference = (merged.unsqueeze(0) - stacked) @ stacked.transpose(1, 2)
            loss = (interference.pow(2).sum((1, 2)) / norms).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return merged.detach()


@register_merge(
    "wudi",
    hparams={"steps": 400, "lr": 1e-5},
    paper="WUDI merging (Cheng et al., ICML 2025)",
    citation="Cheng et al. Whoever started the interference should end it: Guiding data-free model merging via "
    "task vectors. ICML 2025. arXiv:2503.08099",
)
def wudi(pretrained: StateDict, finetuned: list[StateDict], steps: int, lr: float) -> StateDict:
    """θ = θ_0 + τ_m (no scaling coefficient): `wudi_matrix` per 2-D tensor, the mean task vector elsewhere.
    Defaults: 400 steps (FusionBench config/method/wudi/wudi.yaml), Adam lr 1e-5 (FusionBench `wudi_merging`).
    Deterministic."""
    merged = per_matrix(task_vectors(pretrained, finetuned), lambda deltas: wudi_matrix(deltas, steps, lr))
    return {k: p + merged[k] for k, p in pretrained.items()}
