"""TIES-merging: trim, elect sign, disjoint merge."""

from __future__ import annotations

import torch

from benchmark.errors import MergeInputError
from benchmark.merging.methods._common import add_scaled, task_vectors
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict

MERGE_FUNCS = ("mean", "sum")


def trim_top_k(vector: StateDict, keep_ratio: float) -> StateDict:
    """Keep the top-`keep_ratio` magnitudes of the whole flattened task vector (one threshold over all
    tensors, not one per tensor) and zero the rest. As the reference `topk_values_mask` (TIES repository,
    FusionBench `ties_merging_utils.py`): k = int(n · keep_ratio), threshold = the (n − k)-th smallest
    magnitude, entries ≥ threshold kept (k + 1 entries when magnitudes are distinct); keep_ratio = 1 keeps all."""
    if not 0 < keep_ratio <= 1:
        raise MergeInputError(f"keep_ratio must be in (0, 1]; got {keep_ratio}")
    magnitudes = torch.cat([t.detach().abs().flatten().float() for t in vector.values()])
    n = magnitudes.numel()
    rank = n - int(n * keep_ratio)
    if rank < 1:
        return dict(vector)
    threshold = magnitudes.kthvalue(rank).values
    return {key: torch.where(t.abs() >= threshold, t, torch.zeros_like(t)) for key, t in vector.items()}


def ties_merge_vectors(vectors: list[StateDict], keep_ratio: float, merge_func: str) -> StateDict:
    """TIES's merged task vector τ_m from task vectors τ_k (Yadav et al., NeurIPS 2023).

    1. trim each τ_k to its global top-`keep_ratio` magnitudes (`trim_top_k`);
    2. elect γ = sign(Σ_k trimmed τ_k); where that sum is 0, γ is the majority sign of γ over the whole
       model (as in the reference implementation's `resolve_zero_signs`);
    3. disjoint merge: per entry, the sum (`merge_func="sum"`, as AdaMerging, FusionBench and BadMerging run
       it on CLIP) or mean (`"mean"`, the TIES paper with λ tuned near 1) of the trimmed values whose sign
       equals γ; 0 where none does.
    """
    if merge_func not in MERGE_FUNCS:
        raise MergeInputError(f"merge_func must be one of {MERGE_FUNCS}; got {merge_func!r}")
    trimmed = [trim_top_k(v, keep_ratio) for v in vectors]
    elected = {key: torch.sign(sum(t[key] for t in trimmed)) for key in vectors[0]}
    majority = torch.sign(sum(g.sum() for g in elected.values()))
    merged: StateDict = {}
    for key, sign in elected.items():
        sign = torch.where(sign == 0, majority, sign)
        stacked = torch.stack([t[key] for t in trimmed])
        agree = (torch.sign(stacked) == sign) & (stacked != 0)
        total = torch.where(agree, stacked, torch.zeros_like(stacked)).sum(0)
        merged[key] = total / agree.sum(0).clamp(min=1) if merge_func == "mean" else total
    return merged


@register_merge(
    "ties",
    hparams={"scaling_coef": 0.3, "keep_ratio": 0.2, "merge_func": "sum"},
    paper="TIES-merging (Yadav et al., NeurIPS 2023)",
    citation="Yadav et al. TIES-Merging: Resolving interference when merging models. NeurIPS 2023. arXiv:2306.01708",
)
def ties(
    pretrained: StateDict, finetuned: list[StateDict], scaling_coef: float, keep_ratio: float, merge_func: str
) -> StateDict:
    """θ = θ_0 + λ τ_m with τ_m from `ties_merge_vectors`; defaults (FusionBench config/method/ties_merging.yaml,
    AdaMerging's and BadMerging's CLIP runs): top-20%, disjoint sum, λ = 0.3."""
    merged = ties_merge_vectors(task_vectors(pretrained, finetuned), keep_ratio, merge_func)
    return add_scaled(pretrained, merged, scaling_coef)
