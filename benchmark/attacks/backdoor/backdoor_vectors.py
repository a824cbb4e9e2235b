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
from benchmark.zoo.train import finetune


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


def _flat(v: StateDict, keys: list[str]) -> torch.Tensor:
    return torch.cat([v[k].flatten() for k in keys])


def _unflat(flat: torch.Tensor, like: StateDict, keys: list[str]) -> StateDict:
    out, i = {}, 0
    for k in keys:
        t = like[k]
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
    """Merge several BVs into one sparse BV, aligned key by key (the BVs may list their keys in any order;
    different key sets or shapes are refused).

    1. trim each BV to its top `keep_ratio` magnitudes; 2. elect the sign γ = sign(Σ trimmed BVs);
    3. sign-consistent (SBV_SC): keep only coordinates where every BV that survived trimming there has sign
       γ (any disagreement drops the coordinate); otherwise (plain SBV) keep the entries agreeing with γ;
    4. disjoint mean of the kept entries.
    """
    if not bvs:
        raise BackdoorConfigError("an SBV needs at least one backdoor vector")
    keys = sorted(bvs[0])
    for i, v in enumerate(bvs[1:], 1):
        shapes = {k: tuple(t.shape) for k, t in v.items()}
        if set(v) != set(keys) or any(shapes[k] != tuple(bvs[0][k].shape) for k in keys):
            raise BackdoorConfigError(
                f"backdoor vector {i} has other keys or shapes than backdoor vector 0 (missing "
                f"{sorted(set(keys) - set(v))[:3]}, extra {sorted(set(v) - set(keys))[:3]}); an SBV merges BVs of "
                "the same model: compute every BV from the same architecture")
    flats = torch.stack([trim(_flat(v, keys), keep_ratio) for v in bvs])
    gamma = torch.sign(flats.sum(0))
    agree = (torch.sign(flats) == gamma) & (flats != 0)
    if sign_consistent:
        conflict = ((torch.sign(flats) != gamma) & (flats != 0)).any(0)
        agree = agree & ~conflict
    total = (flats * agree).sum(0)
    count = agree.sum(0).clamp(min=1)
    return _unflat(total / count, bvs[0], keys)


def _source_params(params: dict[str, Any], drop: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in drop}


def bv_trigger(env: BackdoorEnv, *, source: str, **params: Any) -> Trigger:
    """The trigger of the source attack the BV was computed from."""
    src = get_backdoor_attack(source)
    p = resolve_params(src, _source_params(params, ("scale", "seeds", "keep_ratio", "sign_consistent")))
    return src.trigger(env, **p)


def clean_finetune(env: BackdoorEnv, task: str, seed: int) -> StateDict:
    """θ_clean of a BV: the adversary's clean fine-tune of `task` with the same recipe and `seed` as its
    backdoored one (Pawlak et al.: both from the same start, on the same task, differing only in the
    poison). The zoo's fine-tune where the zoo trains one with `seed` (`suite.finetune_seeds`: `recipe.seed`,
    and every run seed under `recipe.finetune_seed: run`; the same computation, so it is not trained twice);
    otherwise fine-tuned and cached."""
    if seed in env.zoo.suite.finetune_seeds:
        return env.zoo.for_seed(seed).finetuned[task]
    spec = {"what": "clean_finetune", **env.upstream(task, finetune=True), "seed": seed}

    def build() -> StateDict:
        model = env.trainable(task)
        finetune(model, env.data(task).train, env.recipe(task), seed, desc=f"clean fine-tune {task}",
                 progress=env.progress)
        return model.encoder.state_dict()

    return env.cached("clean_finetuned", spec, build)


def _source_bv(env: BackdoorEnv, source: str, params: dict[str, Any]) -> tuple[StateDict, StateDict]:
    """(BV, θ_clean) of the `source` attack run with `params`, against the clean model of the same seed."""
    src = get_backdoor_attack(source)
    p = resolve_params(src, params)
    clean = clean_finetune(env, p["adversary_task"], int(p["seed"]))
    return backdoor_vector(src.build(env, **p), clean), clean


@register_backdoor_attack(
    "bv", trigger=bv_trigger, hparams={"source": "naive", "scale": 3.0}, variants=("injection",),
    paper="Pawlak et al., Backdoor Vectors: a Task Arithmetic View on Backdoor Attacks and Defenses, arXiv 2510.08016",
    passthrough=True,
)
def bv_injection(env: BackdoorEnv, *, source: str, scale: float, **params: Any) -> StateDict:
    """Backdoor Vector injection: BV = θ_bd − θ_clean where θ_bd is the `source` attack's backdoored model and
    θ_clean the adversary's clean fine-tuned model of the same seed (`clean_finetune`: same pretrained start,
    task and recipe); the adversary uploads θ_clean + scale·BV. Extra parameters go to the source attack."""
    bv, clean = _source_bv(env, source, params)
    return inject(clean, bv, scale)


def sbv_seeds(offsets: str, seed: int) -> list[int]:
    """The source seeds of an SBV at unit seed `seed`: `seed · stride + o` for each offset `o` of `offsets`
    (comma-separated, stride = max offset + 1), so every unit seed draws its own, disjoint set of BVs."""
    offs = [int(s) for s in str(offsets).split(",") if s.strip()]
    if not offs or min(offs) < 0:
        raise BackdoorConfigError(f"sbv seeds {offsets!r}: give comma-separated offsets >= 0, e.g. \"0,1,2\"")
    stride = max(offs) + 1
    return [seed * stride + o for o in offs]


@register_backdoor_attack(
    "sbv", trigger=bv_trigger,
    hparams={"source": "naive", "scale": 3.0, "seeds": "0,1,2", "keep_ratio": 0.2, "sign_consistent": True},
    variants=("sign_consistent", "plain"),
    paper="Pawlak et al., Backdoor Vectors: a Task Arithmetic View on Backdoor Attacks and Defenses, arXiv 2510.08016",
    passthrough=True,
)
def sbv_injection(env: BackdoorEnv, *, source: str, scale: float, seeds: str, keep_ratio: float,
                  sign_consistent: bool, **params: Any) -> StateDict:
    """Sparse Backdoor Vector injection: BVs of the `source` attack fine-tuned with each seed of
    `sbv_seeds(seeds, seed)` (the same trigger, so the BVs differ only by training randomness; each against
    the clean model of its own seed), merged and sparsified by `sparse_backdoor_vector`; the adversary
    uploads θ_clean(first source seed) + scale·SBV."""
    pairs = [_source_bv(env, source, {**params, "seed": s}) for s in sbv_seeds(seeds, int(params["seed"]))]
    sbv = sparse_backdoor_vector([bv for bv, _ in pairs], keep_ratio, sign_consistent)
    return inject(pairs[0][1], sbv, scale)
