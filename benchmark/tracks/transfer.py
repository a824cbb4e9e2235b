"""The transfer track: adversarial examples crafted on a surrogate, evaluated on every merged model.

Protocol (docs/transfer.md): for each task t and seed s, a fixed subset of `transfer.subset_size` images of
t's test split (`transfer_subset`: a permutation seeded with s, or with `transfer.subsets: disjoint` block s
of one permutation, so that no image is attacked under two seeds).
Surrogates: the fine-tuned model of t (`finetuned`) and the pretrained encoder with t's head
(`pretrained`). Targets: every merged model (merged with seed s) with t's head (and adapter). Attacks:
the suite's `transfer.attacks` from `benchmark.attacks`, untargeted L-inf, eps and steps from the suite,
delivered as 8-bit images.

One unit = (method, task, attack, surrogate, seed). Adversarial examples depend only on (surrogate, attack,
task subset, seed), never on the method: they are crafted once and stored in the content-addressed cache,
and every target is evaluated on them, so adding a merging method runs no attack. What units share (the
surrogate's and the target's clean evaluations, the adversarial sets, the merged models) is computed once
for the lifetime of the cache whatever the number of workers (`benchmark.tracks.transfer_cache`); a unit's
own work is one forward pass of its target over the adversarial images.
"""

from __future__ import annotations

import pandas as pd

from benchmark.batch_sizes import VERSIONED
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.tracks.base import Track, Unit, register_track
from benchmark.tracks.transfer_cache import (
    SUBSET_DESIGNS,
    SURROGATES,
    adversarial,
    attack_for,
    state,
    subset,
    surrogate_eval,
    target_adv_correct,
    target_eval,
    transfer_subset,
)

__all__ = ["SURROGATES", "TransferTrack", "craft_all", "validate"]


def validate(ctx) -> None:
    """Fail early, with the fix, on a transfer spec this track cannot run."""
    spec = ctx.suite.transfer
    if spec.norm != "Linf":
        raise MergesecError(f"suite {ctx.suite.name}: transfer.norm {spec.norm!r} is not supported; use Linf")
    for s in spec.surrogates:
        if s not in SURROGATES:
            raise UnknownNameError("surrogate", s, list(SURROGATES))
    if spec.subset_size < 1:
        raise MergesecError(f"suite {ctx.suite.name}: transfer.subset_size must be >= 1")
    if spec.subsets not in SUBSET_DESIGNS:
        raise UnknownNameError("transfer.subsets design", spec.subsets, list(SUBSET_DESIGNS))
    if spec.subsets == "disjoint":  # every seed's block must exist in every task's test split
        for task in ctx.suite.task_names:
            for seed in spec.seeds:
                transfer_subset(len(ctx.data(task).test), spec.subset_size, seed, "disjoint")
    for a in spec.attacks:
        attack_for(ctx, a)


def craft_all(ctx, seeds: tuple[int, ...] | None = None) -> dict[str, int]:
    """Make sure every adversarial set of the suite exists (crafting only what the cache lacks)."""
    from benchmark.tracks import transfer_cache

    validate(ctx)
    return transfer_cache.craft_all(ctx, seeds)


def _cka(ctx, key: tuple, sur, tgt) -> float:
    """Linear CKA of the surrogate's and the target's clean features, memoised per (target, surrogate)."""
    from benchmark.metrics import linear_cka

    memo = state(ctx).cka
    if key not in memo:
        memo[key] = linear_cka(sur.feats, tgt.feats)
    return memo[key]


@register_track
class TransferTrack(Track):
    """Transfer attacks: adversarial examples crafted once per surrogate, evaluated on every merged model."""

    name = "transfer"

    def plan(self, ctx, methods):
        validate(ctx)
        spec = ctx.suite.transfer
        versioned = {k: ctx.batch_sizes[k] for k in VERSIONED}
        units = []
        for m in methods:
            hp, code = ctx.method_hparams(m), ctx.method_code(m)
            for seed in spec.seeds:
                for task in ctx.suite.task_names:
                    for sur in spec.surrogates:
                        for atk in spec.attacks:
                            units.append(Unit(self.name, {
                                "suite_hash": ctx.suite.hash, "method": m, "task": task, "attack": atk,
                                "surrogate": sur, "seed": seed, "hparams": hp, "code": code,
                                "batch_sizes": versioned}))
        return units

    def setting(self, description):
        """The crafting and gradient batch sizes are versions of the setting (they change DI's and VMI's draws
        and the last bits of the cosines): a run with others replaces the rows, never adds a second copy."""
        return {k: v for k, v in super().setting(description).items() if k != "batch_sizes"}

    def run_unit(self, unit: Unit, ctx):
        from benchmark.metrics import counted_mask, mean_cosine, setting_metrics

        d = unit.description
        method, task, atk, sur_name, seed = d["method"], d["task"], d["attack"], d["surrogate"], d["seed"]
        sub = subset(ctx, task, seed)
        sur = surrogate_eval(ctx, task, sur_name, seed)
        x_adv, sur_adv = adversarial(ctx, task, sur_name, atk, seed)
        merged = ctx.merged(method, d["hparams"], seed)
        model, tgt = target_eval(ctx, merged, method, seed, task)
        tgt_adv = target_adv_correct(model, x_adv, sub.y, method, seed, task, ctx.batch_sizes["eval"])
        cos = mean_cosine(tgt.cosines[sur_name], counted_mask(sur.clean_correct, tgt.clean_correct))
        cka = _cka(ctx, (merged.key, task, seed, sur_name), sur, tgt)
        m = setting_metrics(sur.clean_correct.numpy(), tgt.clean_correct.numpy(), sur_adv.numpy(),
                            tgt_adv.numpy())
        keys = {"suite_hash": ctx.suite.hash, "method": method, "task": task, "attack": atk,
                "surrogate": sur_name, "seed": int(seed)}
        settings = pd.DataFrame([{"suite": ctx.suite.name, **keys, "eps": ctx.suite.transfer.eps, **m,
                                  "grad_cosine": cos, "cka": cka}])
        outcomes = pd.DataFrame({
            **{k: [v] * len(sub.y) for k, v in keys.items()},
            "example_id": sub.indices.numpy().astype("int32"),
            "label": sub.y.numpy().astype("int32"),
            "surrogate_clean_correct": sur.clean_correct.numpy(),
            "target_clean_correct": tgt.clean_correct.numpy(),
            "surrogate_adv_correct": sur_adv.numpy(),
            "target_adv_correct": tgt_adv.numpy(),
        })
        return {"transfer_settings": settings, "transfer_outcomes": outcomes}
