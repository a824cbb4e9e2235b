"""Every built-in merge method against an independent re-implementation of its reference code.

Each `ref_*` function below is written from the cited reference file's behaviour, on flattened tensors or
plain autograd as that code does, never with mergesec's helpers; only `merge()` is called from mergesec.
Inputs are small and fixed. The mistakes these tests were checked to catch are listed in docs/merging.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from benchmark.merging import MergeContext, MergeOutput, merge
from benchmark.merging.methods._models import endless_dev_images
from benchmark.merging.methods.adamerging import learn_coefficients, merged_state, stacked_task_vectors
from tests.test_merging_data import (  # noqa: F401  (one_thread: autouse, one torch thread)
    N_DEV,
    AttentionEncoder,
    make_setup,
    one_thread,
)

K_TASKS = 3


def models(seed: int = 0) -> tuple[dict, list[dict]]:
    """Pretrained + 3 fine-tuned state dicts: two matrices, a bias and a 3-D tensor (like `conv1`)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"w1": (6, 4), "w2": (5, 6), "b": (5,), "conv": (2, 3, 2)}
    pre = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    fts = [{k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in pre.items()} for _ in range(K_TASKS)]
    return pre, fts


def flat(sd: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for v in sd.values()])


def unflat(vector: torch.Tensor, like: dict) -> dict:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vector[i:i + v.numel()].reshape(v.shape)
        i += v.numel()
    return out


def tv_rows(pre: dict, fts: list[dict]) -> torch.Tensor:
    """Task vectors as rows of one matrix (the reference TIES code's `tv_flat_checks`)."""
    return torch.stack([flat(ft) - flat(pre) for ft in fts])


def check(actual: dict, expected: dict, atol: float = 1e-5) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(actual[k], expected[k].to(actual[k].dtype), atol=atol, rtol=1e-4, msg=k)


# ---------------------------------------------------------------- averaging, task arithmetic
# FusionBench fusion_bench/method/simple_average.py and task_arithmetic/task_arithmetic.py


def test_weight_averaging_and_task_arithmetic_match_fusionbench():
    pre, fts = models()
    check(merge("weight_averaging", pre, fts), unflat(torch.stack([flat(f) for f in fts]).mean(0), pre))
    expected = flat(pre) + 0.3 * tv_rows(pre, fts).sum(0)
    check(merge("task_arithmetic", pre, fts), unflat(expected, pre))


# ---------------------------------------------------------------- TIES
# TIES-Merging repository (prateeky2806/ties-merging) src/ties_minimal.ipynb, as FusionBench
# fusion_bench/method/ties_merging/ties_merging_utils.py: topk_values_mask, resolve_sign, disjoint_merge.


def ref_topk_values_mask(rows: torch.Tensor, keep: float) -> torch.Tensor:
    d = rows.shape[1]
    kth = rows.abs().kthvalue(d - int(d * keep), dim=1, keepdim=True).values
    return rows * (rows.abs() >= kth)


def ref_resolve_sign(trimmed: torch.Tensor) -> torch.Tensor:
    sign = torch.sign(trimmed.sum(0))
    sign[sign == 0] = torch.sign(sign.sum())
    return sign


def ref_disjoint_merge(trimmed: torch.Tensor, merge_func: str, sign: torch.Tensor) -> torch.Tensor:
    selected = trimmed * torch.where(sign.unsqueeze(0) > 0, trimmed > 0, trimmed < 0)
    if merge_func == "mean":
        return selected.sum(0) / (selected != 0).sum(0).clamp(min=1)
    return selected.sum(0)


def ref_ties(rows: torch.Tensor, keep: float, merge_func: str) -> torch.Tensor:
    trimmed = ref_topk_values_mask(rows, keep)
    return ref_disjoint_merge(trimmed, merge_func, ref_resolve_sign(trimmed))


@pytest.mark.parametrize("merge_func", ["sum", "mean"])
def test_ties_matches_the_reference_trim_elect_disjoint_merge(merge_func):
    pre, fts = models()
    out = merge("ties", pre, fts, merge_func=merge_func)
    check(out, unflat(flat(pre) + 0.3 * ref_ties(tv_rows(pre, fts), 0.2, merge_func), pre))


# ---------------------------------------------------------------- DARE
# FusionBench fusion_bench/method/dare/utils.py param_random_drop_ (Bernoulli(1 − p) mask, rescale 1/(1 − p)),
# dare/task_arithmetic.py and dare/ties_merging.py (drop every task vector, then TIES on the dropped ones).
# The mask stream is mergesec's documented one: one torch.Generator(seed), models in order, keys in order.


def ref_dropped_rows(pre: dict, fts: list[dict], p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for ft in fts:
        masks = [torch.rand(v.shape, generator=g) >= p for v in pre.values()]
        rows.append(torch.cat([((ft[k] - v) * m / (1 - p)).flatten() for (k, v), m in zip(pre.items(), masks,
                                                                                         strict=True)]))
    return torch.stack(rows)


@pytest.mark.parametrize("seed", [0, 7])
def test_dare_task_arithmetic_and_dare_ties_match_the_reference(seed):
    pre, fts = models()
    ctx = MergeContext(seed=seed)
    rows = ref_dropped_rows(pre, fts, 0.5, seed)
    check(merge("dare_task_arithmetic", pre, fts, context=ctx), unflat(flat(pre) + 0.3 * rows.sum(0), pre))
    check(merge("dare_ties", pre, fts, context=ctx), unflat(flat(pre) + 0.5 * ref_ties(rows, 0.2, "sum"), pre))


def test_dare_masks_are_drawn_per_task():
    """Two identical task vectors of ones: with a mask per task about 2p(1 − p) = 50% of the entries keep
    exactly one task's rescaled value; one shared mask would give only 0 or both."""
    pre = {"w": torch.zeros(4000)}
    fts = [{"w": torch.ones(4000)}, {"w": torch.ones(4000)}]
    out = merge("dare_task_arithmetic", pre, fts, scaling_coef=1.0)["w"]
    one_task = (out == 2.0).float().mean().item()  # 1 / (1 − 0.5)
    assert abs(one_task - 0.5) < 0.05


def test_two_merge_seeds_give_different_dare_merges_and_one_seed_the_same():
    pre, fts = models()
    for name in ("dare_task_arithmetic", "dare_ties"):
        a, b, c = (merge(name, pre, fts, context=MergeContext(seed=s)) for s in (1, 1, 2))
        assert all(torch.equal(a[k], b[k]) for k in pre)
        assert not torch.equal(flat(a), flat(c))


# ---------------------------------------------------------------- consensus (TALL masks)
# nik-dim/tall_masks src/utils/tallmask_utils.py: generate_task_masks (|τ_t| > λ|τ_MTL − τ_t|),
# construct_consensus_mask (≥ k tasks agree), then task arithmetic on the masked multi-task vector.


def test_consensus_ta_matches_the_tall_masks_reference():
    pre, fts = models()
    rows = tv_rows(pre, fts)
    mtl = rows.sum(0)
    masks = rows.abs() > 0.4 * (mtl.unsqueeze(0) - rows).abs()
    consensus = masks.sum(0) >= 2
    check(merge("consensus_ta", pre, fts), unflat(flat(pre) + 0.3 * mtl * consensus, pre))


# ---------------------------------------------------------------- TSV-M, Iso-C, Iso-CTS, WUDI
# FusionBench: task_singular_vector/utils/TSVM_utils.py compute_and_sum_svd_mem_reduction;
# isotropic_merging/iso_utils.py iso_c and iso_cts; wudi/wudi.py wudi_merging. Each: 2-D tensors merged as
# matrices, every other tensor averaged, then θ_0 + α·(merged task vector) (WUDI: no α).


def per_key(pre: dict, fts: list[dict], matrix_fn) -> dict:
    out = {}
    for k, p in pre.items():
        tvs = [ft[k] - p for ft in fts]
        out[k] = matrix_fn(tvs) if p.dim() == 2 else sum(tvs) / len(tvs)
    return out


def ref_tsv(tvs: list[torch.Tensor]) -> torch.Tensor:
    svds = [torch.linalg.svd(t, full_matrices=False) for t in tvs]
    r = int(svds[0][1].shape[0] * (1 / len(tvs)))
    sum_u = torch.zeros_like(svds[0][0])
    sum_s = torch.zeros_like(svds[0][1])
    sum_v = torch.zeros_like(svds[0][2])
    for i, (u, s, v) in enumerate(svds):
        sum_u[:, i * r:(i + 1) * r], sum_s[i * r:(i + 1) * r], sum_v[i * r:(i + 1) * r] = u[:, :r], s[:r], v[:r]
    u_u, _, v_u = torch.linalg.svd(sum_u, full_matrices=False)
    u_v, _, v_v = torch.linalg.svd(sum_v, full_matrices=False)
    return torch.linalg.multi_dot((u_u, v_u, torch.diag(sum_s), u_v, v_v))


def ref_iso_c(tvs: list[torch.Tensor]) -> torch.Tensor:
    u, s, v = torch.linalg.svd(sum(tvs), full_matrices=False)
    return u @ torch.diag(torch.ones_like(s) * s.mean()) @ v


def ref_iso_cts(tvs: list[torch.Tensor], fraction: float = 0.8) -> torch.Tensor:
    shape, n = tvs[0].shape, len(tvs)
    c = int(min(shape) * fraction)
    c = min(shape) - round((min(shape) - c) / n) * n
    u, s, v = torch.linalg.svd(sum(tvs), full_matrices=False)
    cu, cs, cv = u[:, :c], s[:c], v[:c]
    per = int((min(shape) - c) / n)
    su, ss, sv = torch.zeros_like(u), torch.zeros_like(s), torch.zeros_like(v)
    for i, w in enumerate(tvs):
        ut, st, vt = torch.linalg.svd(w - cu @ cu.T @ w, full_matrices=False)
        block = slice(i * per, (i + 1) * per)
        su[:, block], ss[block], sv[block] = ut[:, :per], st[:per], vt[:per]
    su[:, n * per:n * per + c], ss[n * per:n * per + c], sv[n * per:n * per + c] = cu, cs, cv
    a, _, b = torch.linalg.svd(su, full_matrices=False)
    su = a @ b
    a, _, b = torch.linalg.svd(sv, full_matrices=False)
    sv = a @ b
    return torch.linalg.multi_dot((su, torch.diag(torch.ones_like(ss) * ss.mean()), sv))


def ref_wudi(tvs: list[torch.Tensor], iters: int = 400) -> torch.Tensor:
    stacked = torch.stack(tvs)
    merged = nn.Parameter(stacked.sum(0))
    opt = torch.optim.Adam([merged], lr=1e-5, weight_decay=0)
    norms = torch.square(torch.norm(stacked.reshape(len(tvs), -1), p=2, dim=-1))
    for _ in range(iters):
        product = (merged.unsqueeze(0) - stacked) @ stacked.transpose(1, 2)
        loss = torch.sum(torch.square(product) / norms[:, None, None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return merged.detach()


@pytest.mark.parametrize(("name", "ref", "alpha"), [
    ("tsv_m", ref_tsv, 1.0), ("iso_c", ref_iso_c, 1.0), ("iso_cts", ref_iso_cts, 1.0), ("wudi", ref_wudi, 1.0)])
def test_singular_vector_and_wudi_merges_match_fusionbench(name, ref, alpha):
    pre, fts = models()
    merged = per_key(pre, fts, ref)
    check(merge(name, pre, fts), {k: p + alpha * merged[k] for k, p in pre.items()})


def test_wudi_moves_away_from_the_task_arithmetic_sum():
    pre, fts = models()
    total = {k: p + sum(ft[k] - p for ft in fts) for k, p in pre.items()}
    out = merge("wudi", pre, fts, lr=1e-2)
    assert not torch.allclose(out["w1"], total["w1"], atol=1e-3)


# ---------------------------------------------------------------- data-dependent: tiny MLP classifiers


def grad_model(ctx: MergeContext, sd: dict, task: int) -> nn.Module:
    model = ctx.classifier_factory(sd, task)
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    return model


def ref_exact_fisher(model: nn.Module, images: torch.Tensor) -> dict:
    """mmatena/model_merging fisher.py (the paper's eq.): per example, Σ_y p(y|x) (∇ log p(y|x))², averaged."""
    params = dict(model.encoder.named_parameters())
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    for x in images:
        log_p = torch.log_softmax(model(x[None]), -1)[0]
        for y in range(len(log_p)):
            grads = torch.autograd.grad(log_p[y], list(params.values()), retain_graph=True)
            for k, g in zip(params, grads, strict=True):
                fisher[k] += log_p[y].exp().detach() * g**2 / len(images)
    return fisher


def ref_fisher_merge(sds: list[dict], fishers: list[dict], eps: float = 1e-6, normalize: bool = True) -> dict:
    """FusionBench fisher_merging.py merging_with_fisher_weights / get_models_fisher_norm."""
    norms = torch.stack([torch.norm(torch.stack([torch.linalg.vector_norm(f[k]) for k in f])) for f in fishers])
    coef = 1.0 / (norms + eps)
    coef = coef / coef.sum() if normalize else torch.ones(len(sds))
    out = {}
    for k in sds[0]:
        w = [c * (f[k] + eps) for c, f in zip(coef, fishers, strict=True)]
        out[k] = sum(wi * sd[k] for wi, sd in zip(w, sds, strict=True)) / sum(w)
    return out


def fisher_setup():
    pre, fts, ctx, images = make_setup()
    fts[1] = {k: pre[k] + 3.0 * (v - pre[k]) for k, v in fts[1].items()}  # Fisher norms far apart
    return pre, fts, ctx, images


def test_fisher_matches_the_exact_normalised_reference():
    pre, fts, ctx, images = fisher_setup()
    fishers = [ref_exact_fisher(grad_model(ctx, sd, t), images[t]) for t, sd in enumerate(fts)]
    out = merge("fisher", pre, fts, context=ctx)
    check(out, ref_fisher_merge(fts, fishers), atol=1e-5)
    unnormalised = ref_fisher_merge(fts, fishers, normalize=False)
    assert not torch.allclose(out["fc1.weight"], unnormalised["fc1.weight"], atol=1e-3)


def test_regmean_matches_the_reference_closed_form():
    """bloomberg/dataless-model-merging regmean.py (as FusionBench regmean/regmean.py): per linear layer
    Grams XᵀX / n of its inputs under each fine-tuned model, off-diagonals × α, W = (Σ G)⁻¹ Σ G W_kᵀ; biases
    averaged."""
    pre, fts, ctx, images = make_setup()
    alpha = 0.1
    inputs = {"fc1.weight": [x.flatten(1) for x in images]}
    inputs["fc2.weight"] = [torch.tanh(x @ sd["fc1.weight"].T + sd["fc1.bias"])
                            for x, sd in zip(inputs["fc1.weight"], fts, strict=True)]
    expected = {k: sum(sd[k] for sd in fts) / len(fts) for k in pre}
    for key, xs in inputs.items():
        grams = []
        for x in xs:
            g = (x.T @ x / len(x)).double()
            grams.append(g * alpha + torch.diag(torch.diagonal(g)) * (1 - alpha))
        rhs = sum(g @ sd[key].double().T for g, sd in zip(grams, fts, strict=True))
        expected[key] = torch.linalg.solve(sum(grams), rhs).T.float()
    check(merge("regmean", pre, fts, context=ctx), expected, atol=1e-4)


def ref_adamerging(ctx, pre, fts, images, layerwise: bool, steps: int, lr: float, batches=None) -> dict:
    """EnnengYang/AdaMerging main_task_wise_adamerging.py / main_layer_wise_adamerging.py: λ (init 0.3) per
    task (per task per parameter tensor), Adam on Σ_tasks Σ_batches mean softmax entropy, 2 batches per task
    per step, one forward of task t's classifier per batch; λ clamped to [0, 1]. Batches are the whole dev
    set (the mean entropy ignores the order), or `next(batches[t])` when `batches` is given."""
    keys = list(pre)
    lam = torch.full((len(fts), len(keys) if layerwise else 1), 0.3, requires_grad=True)
    opt = torch.optim.Adam([lam], lr=lr)
    heads = [ctx.classifier_factory(pre, t) for t in range(len(fts))]

    def params(lam):
        return {k: pre[k] + sum(lam[t, i if layerwise else 0] * (fts[t][k] - pre[k]) for t in range(len(fts)))
                for i, k in enumerate(keys)}

    for _ in range(steps):
        p = {f"encoder.{k}": v for k, v in params(lam).items()}
        loss = 0.0
        for t, model in enumerate(heads):
            for _batch in range(2):
                logits = functional_call(model, p, (images[t] if batches is None else next(batches[t]),))
                loss = loss - (logits.softmax(1) * logits.log_softmax(1)).sum(1).mean(0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            lam.clamp_(0, 1)
    with torch.no_grad():
        return params(lam)


@pytest.mark.parametrize(("name", "layerwise"), [("adamerging_task", False), ("adamerging_layer", True)])
def test_adamerging_matches_the_official_loop(name, layerwise):
    pre, fts, ctx, images = make_setup()
    out = merge(name, pre, fts, context=ctx, steps=8, lr=0.02, batch_size=N_DEV)
    check(out, ref_adamerging(ctx, pre, fts, images, layerwise, 8, 0.02), atol=1e-5)
    start = {k: p + 0.3 * sum(ft[k] - p for ft in fts) for k, p in pre.items()}
    assert not torch.allclose(out["fc1.weight"], start["fc1.weight"], atol=1e-3)


def test_adamerging_batched_pass_is_the_per_task_sum():
    """One batched encoder pass per step gives the per-task loop's loss and λ (summation order aside), on the
    same shuffled draws, with batches of unequal size (16 dev images in batches of 5: each epoch ends with 1)."""
    pre, fts, ctx, _ = make_setup(AttentionEncoder, image_shape=(3, 1, 4))
    ctx.pretrained, ctx.finetuned = pre, fts

    def draws():
        return [endless_dev_images(ctx, t, batch_size=5, seed=t) for t in range(len(fts))]

    learned = learn_coefficients(ctx, layerwise=False, init_coef=0.3, lr=0.02, steps=8, batch_size=5,
                                 batches_per_step=2)
    first = draws()
    p = {f"encoder.{k}": v + 0.3 * sum(ft[k] - v for ft in fts) for k, v in pre.items()}  # λ at its init
    with torch.no_grad():
        logp = [functional_call(ctx.classifier_factory(pre, t), p, (next(first[t]),)).log_softmax(1)
                for t in range(len(fts)) for _ in range(2)]
    assert abs(learned.losses[0] + sum(float((q.exp() * q).sum(1).mean()) for q in logp)) < 1e-6
    check(merged_state(pre, stacked_task_vectors(pre, fts), learned.lambdas),
          ref_adamerging(ctx, pre, fts, None, False, 8, 0.02, batches=draws()), atol=1e-6)
    moved = (learned.lambdas - 0.3).abs()
    assert bool((moved > 0.05).all() & (learned.lambdas > 0).all())  # gradients moved λ, none clamped


def test_surgery_matches_the_official_adapter_training():
    """EnnengYang/RepresentationSurgery: task arithmetic λ = 0.3, per task a bias-free adapter
    f − up(relu(down(f))) (`up` zero-initialised) trained with Adam on the L1 distance to the fine-tuned
    features. The stream is mergesec's documented one: one torch.Generator(seed) for the `down`
    initialisation (kaiming-uniform, a = √5) and the mini-batch indices, tasks in order."""
    pre, fts, ctx, images = make_setup()
    steps, lr, batch = 30, 1e-2, 4
    out = merge("surgery_task_arithmetic", pre, fts, context=ctx, steps=steps, lr=lr, batch_size=batch)
    assert isinstance(out, MergeOutput)
    ta = {k: p + 0.3 * sum(ft[k] - p for ft in fts) for k, p in pre.items()}
    g = torch.Generator().manual_seed(0)
    for t, adapter in enumerate(out.adapters):
        with torch.no_grad():
            source = ctx.classifier_factory(ta, t).encoder(images[t])
            target = ctx.classifier_factory(fts[t], t).encoder(images[t])
        dim = source.shape[1]
        rank = min(16, dim)
        down = torch.empty(rank, dim)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5), generator=g)
        down.requires_grad_(True)
        up = torch.zeros(dim, rank, requires_grad=True)
        opt = torch.optim.Adam([down, up], lr=lr)
        for _ in range(steps):
            idx = torch.randint(len(source), (min(batch, len(source)),), generator=g)
            f = source[idx]
            loss = (f - torch.relu(f @ down.T) @ up.T - target[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            expected = source - torch.relu(source @ down.T) @ up.T
            torch.testing.assert_close(adapter(source), expected, atol=1e-5, rtol=1e-4)
