"""Backdoor Vectors (Pawlak, Dubiński, Marczak & Twardowski, "Backdoor Vectors: a Task Arithmetic View on
Backdoor Attacks and Defenses", arXiv 2510.08016, 2025).

- BV = θ_backdoored − θ_clean, both fine-tuned from the same pretrained model on the same task. Adding
  λ·BV to a clean model injects the backdoor (ASR rises with λ, clean accuracy stays flat); subtracting it
  weakens the backdoor.
- Sparse Backdoor Vector (SBV): several BVs of the same attack (different seeds or trigger positions) are
  merged and sparsified into one; the sign-consistent variant (SBV_SC) keeps only coordinates on which the
  BVs agree in sign. The adversary uploads θ_clean + λ·SBV.

BVs are kept in float64: θ_clean + BV then reproduces θ_backdoored bit for bit after casting back.
How the BVs are merged into an SBV is our reading of the paper (TIES-style: trim each BV to its top-k
magnitudes over the whole flattened vector, elect a sign, disjoint mean); see docs/backdoor.md.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.attacks.backdoor.base import (
    BackdoorConfigError,
    BackdoorEnv,
    get_backdoor_attack,
    register_backdoor_attack,
    resolve_params,
)
from benchmark.attacks.backdoor.triggers import Trigger
from benchmark.types import StateDict


def backdoor_vector(backdoored: StateDict, clean: StateDict) -> StateDict:
    """BV = θ_backdoored − θ_clean, key by key, in float64 (floating tensors only)."""
    if set(backdoored) != set(clean):
        raise BackdoorConfigError("the backdoored and clean models have different keys; a BV needs the same model")
    return {k: backdoored[k].double() - clean[k].double() for k in clean if clean[k].is_floating_point()}


def inject(clean: StateDict, vector: StateDict, scale: float = 1.0) -> StateDict:
    """θ_clean + scale·vector, in `clean`'s dtypes (non-floating tensors copied)."""
    out = {}
    for k, v in clean.items():
        out[k] = (v.double() + scale * vector[k]).to(v.dtype) if k in vector else v.clone()
    return out


def _flat(v: StateDict) -> torch.Tensor:
    return torch.cat([t.flatten() for t in v.values()])


def _unflat(flat: torch.Tensor, like: StateDict) -> StateDict:
    out, i = {}, 0
    for k, t in like.items():
        out[k] = flat[i : i + t.numel()].view_as(t).clone()
        i += t.numel()
    return out


def trim(flat: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Keep the top `keep_ratio` fraction of entries by magnitude (over the whole vector), zero the rest."""
    k = max(1, round(keep_ratio * flat.numel()))
    if k >= flat.numel():
        return flat.clone()
    thresh = flat.abs().kthvalue(flat.numel() - k + 1).values
    return torch.where(flat.abs() >= thresh, flat, torch.zeros_like(flat))


def sparse_backdoor_vector(bvs: list[StateDict], keep_ratio: float = 0.2, sign_consistent: bool = True) -> StateDict:
    """Merge several BVs into one sparse BV.

    1. trim each BV to its top `keep_ratio` magnitudes; 2. elect the sign γ = sign(Σ trimmed BVs);
    3. sign-consistent (SBV_SC): keep only coordinates where every BV that survived trimming there has sign
       γ (any disagreement drops the coordinate); otherwise (plain SBV) keep the entries agreeing with γ;
    4. disjoint mean of the kept entries.
    """
    if not bvs:
        raise BackdoorConfigError("an SBV needs at least one backdoor vector")
    flats = torch.stack([trim(_flat(v), keep_ratio) for v in bvs])
    gamma = torch.sign(flats.sum(0))
    agree = (torch.sign(flats) == gamma) & (flats != 0)
    if sign_consistent:
        conflict = ((torch.sign(flats) != gamma) & (flats != 0)).any(0)
        agree = agree & ~conflict
    total = (flats * agree).sum(0)
    count = agree.sum(0).clamp(min=1)
    return _unflat(total / count, bvs[0])


def _source_params(params: dict[str, Any], drop: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in drop}


def bv_trigger(env: BackdoorEnv, *, source: str, **params: Any) -> Trigger:
    """The trigger of the source attack the BV was computed from."""
    src = get_backdoor_attack(source)
    p = resolve_params(src, _source_params(params, ("scale", "seeds", "keep_ratio", "sign_consistent")))
    return src.trigger(env, **p)


def _source_bv(env: BackdoorEnv, source: str, params: dict[str, Any]) -> StateDict:
    src = get_backdoor_attack(source)
    p = resolve_params(src, params)
    clean = env.zoo.finetuned[p["adversary_task"]]
    return backdoor_vector(src.build(env, **p), clean)


@register_backdoor_attack(
    "bv", trigger=bv_trigger, hparams={"source": "naive", "scale": 3.0}, variants=("injection",),
    paper="Pawlak et al., Backdoor Vectors: a Task Arithmetic View on Backdoor Attacks and Defenses, arXiv 2510.08016",
    passthrough=True,
)
def bv_injection(env: BackdoorEnv, *, source: str, scale: float, **params: Any) -> StateDict:
    """Backdoor Vector injection: BV = θ_bd − θ_clean where θ_bd is the `source` attack's backdoored model and
    θ_clean the adversary's clean fine-tuned model (the zoo's: same pretrained start, task, recipe and
    seed); the adversary uploads θ_clean + scale·BV. Extra parameters go to the source attack."""
    bv = _source_bv(env, source, params)
    return inject(env.zoo.finetuned[params["adversary_task"]], bv, scale)


@register_backdoor_attack(
    "sbv", trigger=bv_trigger,
    hparams={"source": "naive", "scale": 3.0, "seeds": "0,1,2", "keep_ratio": 0.2, "sign_consistent": True},
    variants=("sign_consistent", "plain"),
    paper="Pawlak et al., Backdoor Vectors: a Task Arithmetic View on Backdoor Attacks and Defenses, arXiv 2510.08016",
    passthrough=True,
)
def sbv_injection(env: BackdoorEnv, *, source: str, scale: float, seeds: str, keep_ratio: float,
                  sign_consistent: bool, **params: Any) -> StateDict:
    """Sparse Backdoor Vector injection: BVs of the `source` attack fine-tuned with each of `seeds`
    (comma-separated; the same trigger, so the BVs differ only by training randomness), merged and
    sparsified by `sparse_backdoor_vector`; the adversary uploads θ_clean + scale·SBV."""
    seed_list = [int(s) for s in str(seeds).split(",") if s.strip()]
    bvs = [_source_bv(env, source, {**params, "seed": s}) for s in seed_list]
    sbv = sparse_backdoor_vector(bvs, keep_ratio, sign_consistent)
    return inject(env.zoo.finetuned[params["adversary_task"]], sbv, scale)
