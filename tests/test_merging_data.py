"""Data-dependent merge methods (Fisher, RegMean, AdaMerging, Surgery) on tiny hand-built classifiers."""

from __future__ import annotations

import open_clip.transformer
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from benchmark.errors import MergeInputError
from benchmark.merging import MergeContext, MergeOutput, merge
from benchmark.merging.methods._models import WithEncoder
from benchmark.merging.methods.adamerging import learn_coefficients, merged_state, stacked_task_vectors
from benchmark.merging.methods.fisher import fisher_weighted_average
from benchmark.merging.methods.regmean import collect_grams

T = torch.tensor
N_TASKS, N_DEV = 2, 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and intra-op threads thrash on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class MLPEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


class AttentionEncoder(nn.Module):
    """Self-attention over 3 tokens of width 4, batch-first, as open_clip's blocks call it."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        tokens = x.reshape(len(x), 3, 4)
        return self.attn(tokens, tokens, tokens, need_weights=False)[0].mean(1)


class Classifier(nn.Module):
    def __init__(self, encoder, head, adapter=None):
        super().__init__()
        self.encoder, self.head, self.adapter = encoder, head, adapter

    def embed(self, x):
        return self.encoder(x)

    def features(self, x):
        f = self.embed(x)
        return self.adapter(f) if self.adapter is not None else f

    def classify(self, features):
        return self.head(self.adapter(features) if self.adapter is not None else features)

    def forward(self, x):
        return self.classify(self.embed(x))


def make_setup(encoder_cls=MLPEncoder, image_shape=(3, 1, 2), n_dev=N_DEV, shared_dev=False):
    """Pretrained encoder, N_TASKS perturbed fine-tuned copies, frozen heads, dev data and the factory."""
    torch.manual_seed(0)
    pre = {k: v.clone() for k, v in encoder_cls().state_dict().items()}
    g = torch.Generator().manual_seed(1)
    fts = [{k: v + 0.4 * torch.randn(v.shape, generator=g) for k, v in pre.items()} for _ in range(N_TASKS)]
    heads = [nn.Linear(4, 3).requires_grad_(False) for _ in range(N_TASKS)]

    def factory(state_dict, task_index, adapter=None):
        encoder = encoder_cls()
        encoder.load_state_dict(state_dict)
        return Classifier(encoder, heads[task_index], adapter).eval().requires_grad_(False)

    images = [torch.rand(n_dev, *image_shape, generator=g) for _ in range(N_TASKS)]
    if shared_dev:
        images = [images[0]] * N_TASKS
    dev = [TensorDataset(x, torch.zeros(len(x), dtype=torch.long)) for x in images]
    return pre, fts, MergeContext(classifier_factory=factory, dev_data=dev, seed=0), images


# ---------------------------------------------------------------- Fisher


def test_fisher_weighted_average_by_hand():
    models = [{"w": T([0.0, 4.0])}, {"w": T([4.0, 0.0])}]
    equal = [{"w": T([2.0, 5.0])}, {"w": T([2.0, 5.0])}]
    assert torch.allclose(fisher_weighted_average(models, equal, 0.0, True)["w"], T([2.0, 2.0]))
    unequal = [{"w": T([1.0, 3.0])}, {"w": T([3.0, 1.0])}]  # [(0*1 + 4*3)/4, (4*3 + 0*1)/4]
    assert torch.allclose(fisher_weighted_average(models, unequal, 0.0, False)["w"], T([3.0, 3.0]))
    zero = [{"w": T([0.0, 0.0])}, {"w": T([0.0, 0.0])}]  # only the floor -> simple average
    assert torch.allclose(fisher_weighted_average(models, zero, 1e-6, True)["w"], T([2.0, 2.0]))
    # normalised: model 2's Fisher is 10× model 1's in norm, so c = [10/11, 1/11] cancels the scale
    scaled = [{"w": T([1.0, 3.0])}, {"w": T([30.0, 10.0])}]
    assert torch.allclose(fisher_weighted_average(models, scaled, 0.0, True)["w"], T([3.0, 3.0]))
    assert torch.allclose(fisher_weighted_average(models, scaled, 0.0, False)["w"], T([120 / 31, 12 / 13]))


def test_fisher_merge_is_an_entrywise_convex_combination_and_deterministic():
    pre, fts, ctx, _ = make_setup()
    out = merge("fisher", pre, fts, context=ctx, n_examples=8)
    again = merge("fisher", pre, fts, context=ctx, n_examples=8)
    average = merge("weight_averaging", pre, fts)
    for k in pre:
        low, high = torch.minimum(fts[0][k], fts[1][k]), torch.maximum(fts[0][k], fts[1][k])
        assert bool(((out[k] >= low - 1e-6) & (out[k] <= high + 1e-6)).all()), k
        assert torch.equal(out[k], again[k])
    assert not torch.allclose(out["fc1.weight"], average["fc1.weight"])
    same = merge("fisher", pre, [fts[0], fts[0]], context=ctx, n_examples=4)
    for k in pre:
        torch.testing.assert_close(same[k], fts[0][k])


# ---------------------------------------------------------------- RegMean


def test_regmean_equal_grams_give_the_average_and_alpha_one_is_least_squares():
    pre, fts, ctx, images = make_setup(shared_dev=True)
    out = merge("regmean", pre, fts, context=ctx, alpha=1.0)
    average = merge("weight_averaging", pre, fts)
    # fc1 sees the same images in every model -> equal Grams -> plain average; biases are averaged
    for key in ("fc1.weight", "fc1.bias", "fc2.bias"):
        torch.testing.assert_close(out[key], average[key])
    # fc2's inputs differ per model: RegMean = argmin_W Σ_k ||X_k Wᵀ - X_k W_kᵀ||², solved on stacked data
    xs = [torch.tanh(images[0].flatten(1) @ sd["fc1.weight"].T + sd["fc1.bias"]) for sd in fts]
    targets = [x @ sd["fc2.weight"].T for x, sd in zip(xs, fts, strict=True)]
    solution = torch.linalg.lstsq(torch.cat(xs).double(), torch.cat(targets).double()).solution
    torch.testing.assert_close(out["fc2.weight"], solution.T.float(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out["fc2.weight"], average["fc2.weight"], atol=1e-3)


def test_regmean_alpha_zero_weights_each_input_column_by_its_gram_diagonal():
    pre, fts, ctx, images = make_setup()
    out = merge("regmean", pre, fts, context=ctx, alpha=0.0)
    diag = [(x.flatten(1) ** 2).mean(0) for x in images]  # diagonal of each fc1 input Gram
    expected = sum(d * sd["fc1.weight"] for d, sd in zip(diag, fts, strict=True)) / sum(diag)
    torch.testing.assert_close(out["fc1.weight"], expected)


def test_regmean_grams_of_attention_in_proj_and_out_proj():
    pre, fts, ctx, images = make_setup(AttentionEncoder, image_shape=(12,), n_dev=5)
    model = ctx.classifier_factory(fts[0], 0)
    grams = collect_grams(model, [images[0]])
    assert set(grams) == {"attn.in_proj_weight", "attn.out_proj.weight"}
    tokens = images[0].reshape(5, 3, 4)
    rows = tokens.reshape(-1, 4)
    torch.testing.assert_close(grams["attn.in_proj_weight"], rows.T @ rows / len(rows))
    # out_proj's input: the concatenated heads, recomputed here independently
    q, k, v = (
        tokens @ w.T + b
        for w, b in zip(fts[0]["attn.in_proj_weight"].chunk(3), fts[0]["attn.in_proj_bias"].chunk(3), strict=True)
    )
    split = [t.reshape(5, 3, 2, 2).transpose(1, 2) for t in (q, k, v)]
    heads = F.scaled_dot_product_attention(*split).transpose(1, 2).reshape(-1, 4)
    torch.testing.assert_close(grams["attn.out_proj.weight"], heads.T @ heads / len(heads))
    out = merge("regmean", pre, fts, context=ctx, n_examples=5)
    assert out.keys() == pre.keys()


def test_regmean_covers_every_linear_map_of_an_open_clip_vit():
    vit = open_clip.transformer.VisionTransformer(
        image_size=8, patch_size=4, width=8, layers=2, heads=2, mlp_ratio=2.0, output_dim=4
    )
    grams = collect_grams(Classifier(vit, nn.Linear(4, 3)), [torch.rand(3, 3, 8, 8)])
    expected = {
        f"transformer.resblocks.{i}.{name}"
        for i in range(2)
        for name in ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    }
    assert set(grams) == expected
    assert grams["transformer.resblocks.0.attn.out_proj.weight"].shape == (8, 8)
    assert grams["transformer.resblocks.1.mlp.c_proj.weight"].shape == (16, 16)


# ---------------------------------------------------------------- AdaMerging


@pytest.mark.parametrize(("layerwise", "groups"), [(False, 1), (True, 4)])
def test_adamerging_coefficient_shape_range_and_entropy(layerwise, groups):
    pre, fts, ctx, _ = make_setup()
    ctx.pretrained, ctx.finetuned = pre, fts  # what merge() fills in before calling the method
    learned = learn_coefficients(ctx, layerwise=layerwise, init_coef=0.3, lr=0.05, steps=40, batch_size=N_DEV,
                                 batches_per_step=1)
    assert learned.lambdas.shape == (N_TASKS, groups)  # tasks × floating tensors (fc1/fc2 weight and bias)
    assert learned.losses[-1] < learned.losses[0] - 1e-3
    wild = learn_coefficients(ctx, layerwise=layerwise, init_coef=0.3, lr=5.0, steps=5, batch_size=4,
                              batches_per_step=2)
    assert bool(((wild.lambdas >= 0) & (wild.lambdas <= 1)).all())
    assert bool(((wild.lambdas == 0) | (wild.lambdas == 1)).any())


def test_adamerging_layer_result_uses_learned_coefficients_and_is_seeded():
    pre, fts, ctx, _ = make_setup()
    out = merge("adamerging_layer", pre, fts, context=ctx, steps=5, lr=0.05, batch_size=4)
    again = merge("adamerging_layer", pre, fts, context=ctx, steps=5, lr=0.05, batch_size=4)
    ctx.pretrained, ctx.finetuned = pre, fts
    learned = learn_coefficients(ctx, layerwise=True, init_coef=0.3, lr=0.05, steps=5, batch_size=4,
                                 batches_per_step=2)
    expected = merged_state(pre, stacked_task_vectors(pre, fts), learned.lambdas)
    for k in pre:
        assert torch.equal(out[k], again[k])
        torch.testing.assert_close(out[k], expected[k])


def _default_functional_call(self, params, x):
    """`WithEncoder.__call__` as it was: `functional_call` with its defaults (it searches for tied tensors)."""
    return torch.func.functional_call(self.model, {self._prefix + k: v for k, v in params.items()}, (x,))


def _default_embed(self, params, x):
    """`WithEncoder.embed` with `functional_call`'s defaults."""
    return torch.func.functional_call(self._embedder, {f"model.{self._prefix}{k}": v for k, v in params.items()},
                                      (x,))


@pytest.mark.parametrize("method", ["adamerging_task", "adamerging_layer", "fisher"])
def test_with_encoder_skipping_the_tie_search_merges_bitwise_the_same(method, monkeypatch):
    """The methods that call `WithEncoder` merge bitwise what they merged when every call searched the
    module for tied tensors (an attention encoder: open_clip's path); a module with tied tensors still gets
    the search."""
    pre, fts, ctx, _ = make_setup(AttentionEncoder, image_shape=(3, 1, 4))
    hparams = {"n_examples": 8} if method == "fisher" else {"steps": 5, "lr": 0.05, "batch_size": 4}
    fast = merge(method, pre, fts, context=ctx, **hparams)
    monkeypatch.setattr(WithEncoder, "__call__", _default_functional_call)
    monkeypatch.setattr(WithEncoder, "embed", _default_embed)
    default = merge(method, pre, fts, context=ctx, **hparams)
    assert all(torch.equal(fast[k], default[k]) for k in pre)
    assert not WithEncoder(ctx.classifier_factory(pre, 0), pre)._tied
    tied = ctx.classifier_factory(pre, 0)
    tied.encoder.extra = tied.encoder.attn.out_proj  # its weight and bias under a second name
    assert WithEncoder(tied, pre)._tied


def test_adamerging_needs_the_split_classifier_api():
    pre, fts, ctx, _ = make_setup()
    plain = ctx.classifier_factory
    ctx.classifier_factory = lambda sd, i, adapter=None: nn.Sequential(plain(sd, i))  # forward only
    with pytest.raises(MergeInputError, match=r"embed.*classify.*ImageClassifier"):
        merge("adamerging_task", pre, fts, context=ctx, steps=1)


# ---------------------------------------------------------------- Surgery


def test_surgery_adapters_reduce_the_feature_gap():
    pre, fts, ctx, images = make_setup()
    out = merge("surgery_task_arithmetic", pre, fts, context=ctx, steps=200, lr=1e-2)
    assert isinstance(out, MergeOutput) and len(out.adapters) == N_TASKS
    ta = merge("task_arithmetic", pre, fts)
    for k in pre:
        torch.testing.assert_close(out.state_dict[k], ta[k])
    factory = ctx.classifier_factory
    for task, adapter in enumerate(out.adapters):
        target = factory(fts[task], task).features(images[task])
        before = (factory(ta, task).features(images[task]) - target).abs().mean()
        after = (factory(ta, task, adapter).features(images[task]) - target).abs().mean()
        assert after < 0.7 * before
        assert not any(p.requires_grad for p in adapter.parameters())


# ---------------------------------------------------------------- purity


@pytest.mark.parametrize("name", ["fisher", "regmean", "adamerging_task", "surgery_task_arithmetic"])
def test_data_dependent_methods_never_mutate_inputs(name):
    pre, fts, ctx, _ = make_setup()
    before = [{k: v.clone() for k, v in sd.items()} for sd in (pre, *fts)]
    small = {
        "fisher": {"n_examples": 4},
        "regmean": {},
        "adamerging_task": {"steps": 2},
        "surgery_task_arithmetic": {"steps": 2},
    }[name]
    merge(name, pre, fts, context=ctx, **small)
    for sd, copy in zip((pre, *fts), before, strict=True):
        for k in sd:
            assert torch.equal(sd[k], copy[k]) and not sd[k].requires_grad
