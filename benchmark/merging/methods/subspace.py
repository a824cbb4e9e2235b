"""Singular-vector merges, matrix by matrix: TSV-M (Task Singular Vectors) and isotropic merging (Iso-C,
Iso-CTS). Non-matrix tensors are averaged (`_common.per_matrix`)."""

from __future__ import annotations

import torch

from benchmark.merging.methods._common import add_scaled, per_matrix, task_vectors
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict


def _orthogonal(factor: torch.Tensor) -> torch.Tensor:
    """The nearest matrix with orthonormal columns (rows, for a wide matrix): P Qᵀ from factor = P Σ Qᵀ."""
    p, _, qh = torch.linalg.svd(factor, full_matrices=False)
    return p @ qh


def tsv_matrix(deltas: list[torch.Tensor]) -> torch.Tensor:
    """TSV-M of one weight matrix (Gargiulo et al., eqs. 6-8): each task keeps its top r = ⌊min(m, n) / K⌋
    singular triplets; the K blocks are concatenated into U (m × min), Σ and V, U and V are orthogonalised
    (P Qᵀ of their SVDs) and the result is U Σ Vᵀ. With min(m, n) < K no task keeps a triplet (zero)."""
    u, s, vh = torch.linalg.svd(deltas[0], full_matrices=False)
    big_u, big_s, big_vh = torch.zeros_like(u), torch.zeros_like(s), torch.zeros_like(vh)
    rank = int(s.numel() * (1 / len(deltas)))
    for i, delta in enumerate(deltas):
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        block = slice(i * rank, (i + 1) * rank)
        big_u[:, block], big_s[block], big_vh[block] = u[:, :rank], s[:rank], vh[:rank]
    return _orthogonal(big_u) @ torch.diag(big_s) @ _orthogonal(big_vh)


def iso_c_matrix(deltas: list[torch.Tensor]) -> torch.Tensor:
    """Iso-C of one weight matrix (Marczak et al., eq. 5): the task-arithmetic sum Σ τ_k = U Σ Vᵀ with every
    singular value replaced by their mean (an isotropic spectrum)."""
    u, s, vh = torch.linalg.svd(sum(deltas), full_matrices=False)
    return u @ torch.diag(torch.full_like(s, float(s.mean()))) @ vh


def iso_cts_matrix(deltas: list[torch.Tensor], common_space_fraction: float) -> torch.Tensor:
    """Iso-CTS of one weight matrix (Marczak et al., Sec. 4.2, as FusionBench's `iso_cts`): d = min(m, n);
    the common subspace is the top c singular directions of Σ τ_k, c = d − K·round((d − ⌊f·d⌋) / K); each
    task adds its top (d − c) / K directions of τ_k with the common subspace projected out; the stacked
    left and right bases are orthogonalised and every singular value is their mean."""
    d, n_tasks = min(deltas[0].shape), len(deltas)
    common = d - round((d - int(d * common_space_fraction)) / n_tasks) * n_tasks
    per_task = (d - common) // n_tasks
    u, s, vh = torch.linalg.svd(sum(deltas), full_matrices=False)
    u_c, s_c, vh_c = u[:, :common], s[:common], vh[:common]
    blocks_u, blocks_s, blocks_vh = [], [], []
    for delta in deltas:
        u_t, s_t, vh_t = torch.linalg.svd(delta - u_c @ (u_c.T @ delta), full_matrices=False)
        blocks_u.append(u_t[:, :per_task])
        blocks_s.append(s_t[:per_task])
        blocks_vh.append(vh_t[:per_task])
    big_u = _orthogonal(torch.cat([*blocks_u, u_c], dim=1))
    big_vh = _orthogonal(torch.cat([*blocks_vh, vh_c], dim=0))
    mean = torch.cat([*blocks_s, s_c]).mean()
    return big_u @ (mean * big_vh)


@register_merge(
    "tsv_m",
    hparams={"scaling_coef": 1.0},
    paper="TSV-M (Gargiulo et al., CVPR 2025)",
    citation="Gargiulo et al. Task Singular Vectors: Reducing task interference in model merging. CVPR 2025. "
    "arXiv:2412.00081",
)
def tsv_m(pretrained: StateDict, finetuned: list[StateDict], scaling_coef: float) -> StateDict:
    """θ = θ_0 + α τ_TSV, τ_TSV from `tsv_matrix` per 2-D tensor and the mean task vector elsewhere; α = 1
    (FusionBench config/method/task_singular_vector/TaskSingularVectorMerging.yaml, the paper's setting)."""
    return add_scaled(pretrained, per_matrix(task_vectors(pretrained, finetuned), tsv_matrix), scaling_coef)


_ISO_PAPER = "Isotropic merging (Marczak et al., ICML 2025)"
_ISO_CITATION = ("Marczak et al. No task left behind: Isotropic model merging with common and task-specific "
                 "subspaces. ICML 2025. arXiv:2502.04959")


@register_merge("iso_c", hparams={"scaling_coef": 1.0}, paper=_ISO_PAPER, citation=_ISO_CITATION)
def iso_c(pretrained: StateDict, finetuned: list[StateDict], scaling_coef: float) -> StateDict:
    """θ = θ_0 + α τ_Iso-C, `iso_c_matrix` per 2-D tensor and the mean task vector elsewhere; α = 1.0
    (FusionBench config/method/isotropic_merging/iso_c.yaml; the paper tunes α on validation)."""
    return add_scaled(pretrained, per_matrix(task_vectors(pretrained, finetuned), iso_c_matrix), scaling_coef)


@register_merge(
    "iso_cts", hparams={"scaling_coef": 1.0, "common_space_fraction": 0.8}, paper=_ISO_PAPER, citation=_ISO_CITATION
)
def iso_cts(
    pretrained: StateDict, finetuned: list[StateDict], scaling_coef: float, common_space_fraction: float
) -> StateDict:
    """θ = θ_0 + α τ_Iso-CTS, `iso_cts_matrix` per 2-D tensor and the mean task vector elsewhere; α = 1.0,
    common-space fraction 0.8 (FusionBench config/method/isotropic_merging/iso_cts.yaml, the paper's 0.8)."""
    vectors = task_vectors(pretrained, finetuned)
    merged = per_matrix(vectors, lambda deltas: iso_cts_matrix(deltas, common_space_fraction))
    return add_scaled(pretrained, merged, scaling_coef)
