"""Task-vector trimming and norm clipping: a data-free defense against backdoored contributors, written for
mergesec.

Before merging, every contributed model is replaced by a cleaned one, θ̃_k = θ_0 + clean(τ_k) with
τ_k = θ_k − θ_0:

1. norm clipping (Sun et al., "Can You Really Backdoor Federated Learning?", 2019): a task vector whose L2
   norm exceeds the median norm of all contributors is scaled down to that median. A backdoor that has to
   survive merging tends to be carried by a larger update (BadMerging, Backdoor Vectors with scale > 1),
   and clipping bounds how much any single contributor can move the merged model;
2. magnitude trimming (the "trim" step of TIES-merging, Yadav et al., NeurIPS 2023, used as a defense, in
   the spirit of pruning-based backdoor removal, Liu et al., "Fine-Pruning", RAID 2018): per tensor, only
   the `keep_ratio` largest-magnitude entries of the task vector are kept, the rest are reset to the
   pretrained weights.

The entry point takes the pretrained state dict and the list of fine-tuned ones and returns the list of
cleaned fine-tuned state dicts (same keys, shapes and dtypes); the victim's merge method then merges them.
"""

import torch


def trim(tau: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Keep the k = ceil(keep_ratio · n) largest-magnitude entries of one tensor (stable ranking)."""
    n = tau.numel()
    k = min(n, max(1, int(-(-keep_ratio * n // 1))))
    order = torch.argsort(tau.abs().flatten(), descending=True, stable=True)
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[:k]] = True
    return torch.where(keep.view(tau.shape), tau, torch.zeros_like(tau))


def defend(pretrained, finetuned, keep_ratio=0.5, clip_to_median_norm=True):
    """[θ_0 + trim(clip(θ_k − θ_0)) for every contributor k]."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1]; got {keep_ratio}")
    floats = [k for k, v in pretrained.items() if v.is_floating_point()]
    vectors = [{k: model[k] - pretrained[k] for k in floats} for model in finetuned]
    norms = torch.stack([torch.sqrt(sum((t.double() ** 2).sum() for t in v.values())) for v in vectors])
    bound = norms.median()  # the lower median for an even count: deterministic, no interpolation
    cleaned = []
    for v, norm in zip(vectors, norms, strict=True):
        scale = float(bound / norm) if clip_to_median_norm and norm > bound else 1.0
        model = dict(pretrained)  # non-floating buffers are passed through unchanged
        for k, t in v.items():
            model[k] = pretrained[k] + trim(t * scale, keep_ratio).to(pretrained[k].dtype)
        cleaned.append(model)
    return cleaned
