"""DARE (drop and rescale) in front of task arithmetic or TIES."""

from __future__ import annotations

import torch

from benchmark.errors import MergeInputError
from benchmark.merging.methods._common import add_scaled, sum_vectors, task_vectors
from benchmark.merging.methods.ties import ties_merge_vectors
from benchmark.merging.registry import SEED, register_merge
from benchmark.types import StateDict

_PAPER = "DARE (Yu et al., ICML 2024)"
_CITATION = (
    "Yu et al. Language models are Super Mario: absorbing abilities from homologous models as a free "
    "lunch. ICML 2024. arXiv:2311.03099"
)


def dare(vectors: list[StateDict], drop_rate: float, seed: int) -> list[StateDict]:
    """τ̃_k = M_k ⊙ τ_k / (1 − p) with M_k ~ Bernoulli(1 − p) drawn from one `torch.Generator` seeded with
    `seed` (models in order, keys in order: every task its own mask), so E[τ̃_k] = τ_k and the same seed
    gives the same result on a device."""
    if not 0 <= drop_rate < 1:
        raise MergeInputError(f"drop_rate must be in [0, 1); got {drop_rate}")
    device = next(iter(vectors[0].values())).device
    generator = torch.Generator(device=device).manual_seed(seed)
    return [
        {
            key: t * (torch.rand(t.shape, generator=generator, device=device) >= drop_rate) / (1 - drop_rate)
            for key, t in v.items()
        }
        for v in vectors
    ]


@register_merge(
    "dare_task_arithmetic",
    needs=(SEED,),
    hparams={"scaling_coef": 0.3, "drop_rate": 0.5},
    paper=_PAPER,
    citation=_CITATION,
)
def dare_task_arithmetic(
    pretrained: StateDict, finetuned: list[StateDict], seed: int, scaling_coef: float, drop_rate: float
) -> StateDict:
    """θ = θ_0 + λ Σ_k DARE(τ_k) with the unit's merge `seed`; p = 0.5, λ = 0.3 (FusionBench
    config/method/dare/task_arithmetic.yaml)."""
    vectors = dare(task_vectors(pretrained, finetuned), drop_rate, seed)
    return add_scaled(pretrained, sum_vectors(vectors), scaling_coef)


@register_merge(
    "dare_ties",
    needs=(SEED,),
    hparams={"scaling_coef": 0.5, "keep_ratio": 0.2, "merge_func": "sum", "drop_rate": 0.5},
    paper=_PAPER,
    citation=_CITATION,
)
def dare_ties(
    pretrained: StateDict,
    finetuned: list[StateDict],
    seed: int,
    scaling_coef: float,
    keep_ratio: float,
    merge_func: str,
    drop_rate: float,
) -> StateDict:
    """θ = θ_0 + λ TIES(DARE(τ_1), …, DARE(τ_K)): DARE first (unit's merge `seed`), then TIES's trim, elect
    and disjoint merge, as FusionBench's `DareTiesMerging`. Defaults from its config/method/dare/ties_merging.yaml:
    p = 0.5, top-20%, disjoint sum, λ = 0.5."""
    vectors = dare(task_vectors(pretrained, finetuned), drop_rate, seed)
    return add_scaled(pretrained, ties_merge_vectors(vectors, keep_ratio, merge_func), scaling_coef)
