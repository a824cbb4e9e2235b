"""Merge registry, validation and the data-free built-in methods, on hand-made state dicts."""

from __future__ import annotations

import warnings

import pytest
import torch

from benchmark.errors import MergeInputError, MergeOutputError, MergeRegistrationError, UnknownNameError
from benchmark.merging import (
    MergeContext,
    MergeMethod,
    MergeOutput,
    get_method,
    list_methods,
    merge,
    register_merge,
    register_method,
    registry,
)

T = torch.tensor

DATA_FREE = [name for name in list_methods() if get_method(name).source == "builtin" and get_method(name).data_free]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test disappear after it."""
    monkeypatch.setattr(registry.METHODS, "_items", dict(registry.METHODS._items))


def random_models(n_tasks: int = 3, seed: int = 0) -> tuple[dict, list[dict]]:
    g = torch.Generator().manual_seed(seed)
    pre = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(4, generator=g)}
    fts = [{k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in pre.items()} for _ in range(n_tasks)]
    return pre, fts


def assert_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(actual[k], torch.as_tensor(expected[k], dtype=actual[k].dtype))


# ---------------------------------------------------------------- registry


def test_builtins_registered_with_paper_and_citation():
    for name in list_methods():
        method = get_method(name)
        if method.source == "builtin":
            assert method.paper and method.citation, name
    assert get_method("fisher").needs == {"unlabelled_dev", "classifier_factory"}
    assert get_method("dare_ties").needs == {"seed"} and get_method("dare_ties").data_free


def test_seeded_data_free_method_signature_checked(scratch_registry):
    with pytest.raises(MergeRegistrationError, match=r"fn\(pretrained, finetuned, seed, \*\*hparams\)"):
        register_merge("bad_seeded", needs=("seed",))(lambda pretrained, finetuned: pretrained)
    register_merge("good_seeded", needs=("seed",))(
        lambda pretrained, finetuned, seed: {k: v + seed for k, v in pretrained.items()})
    assert float(merge("good_seeded", {"w": T([0.0])}, [{"w": T([0.0])}], context=MergeContext(seed=3))["w"]) == 3.0


def test_which_builtins_read_the_seed():
    """A method reads the unit's merge seed when it draws from it (need "seed": DARE) or is data-dependent and
    does not declare `seed_free` (AdaMerging's and Surgery's batches are drawn from it); Fisher and RegMean
    read their first dev images in order."""
    builtins = [n for n in list_methods() if get_method(n).source == "builtin"]
    assert {n for n in builtins if get_method(n).reads_seed} == {
        "dare_task_arithmetic", "dare_ties", "adamerging_task", "adamerging_layer", "surgery_task_arithmetic"}
    assert {n for n in builtins if get_method(n).seed_free} == {"fisher", "regmean"}


def test_seed_free_and_the_need_seed_contradict(scratch_registry):
    with pytest.raises(MergeRegistrationError, match="seed_free"):
        register_merge("bad_seed_free", needs=("seed",), seed_free=True)(
            lambda pretrained, finetuned, seed: pretrained)
    register_merge("reads_by_default", needs=("unlabelled_dev",))(lambda ctx: ctx.pretrained)
    assert get_method("reads_by_default").reads_seed  # data-dependent: it gets ctx.seed unless declared seed-free


def test_unknown_method_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        get_method("tie")
    assert "unknown merge method 'tie'" in str(err.value) and "ties" in str(err.value)
    assert "task_arithmetic" in str(err.value)


def test_unknown_and_mistyped_hparams_rejected_with_valid_names():
    pre, fts = random_models()
    with pytest.raises(MergeInputError, match=r"no hyperparameter\(s\) 'topk'.*keep_ratio, merge_func, scaling_coef"):
        merge("ties", pre, fts, topk=0.2)
    with pytest.raises(MergeInputError, match=r"'scaling_coef'.*must be a float"):
        merge("task_arithmetic", pre, fts, scaling_coef="0.3")
    with pytest.raises(MergeInputError, match="merge_func must be one of"):
        merge("ties", pre, fts, merge_func="max")


def test_register_duplicate_bad_needs_and_bad_signature(scratch_registry):
    with pytest.raises(MergeRegistrationError, match=r"already registered.*replace=True"):
        register_merge("ties")(lambda pretrained, finetuned: pretrained)
    method = register_method(MergeMethod("ties", lambda p, f: p), replace=True)
    assert get_method("ties") is method
    with pytest.raises(MergeRegistrationError, match="unknown needs"):
        register_merge("x1", needs=("test_data",))(lambda ctx: ctx.pretrained)
    with pytest.raises(MergeRegistrationError, match=r"signature must be fn\(ctx, \*\*hparams\)"):
        register_merge("x2", needs=("labelled_dev",))(lambda: None)
    with pytest.raises(MergeRegistrationError, match=r"hyperparameters \['lam'\] are not parameters"):
        register_merge("x3", hparams={"lam": 0.1})(lambda pretrained, finetuned: pretrained)
    with pytest.raises(MergeRegistrationError, match="requires \\['lam'\\] but hparams"):
        register_merge("x4")(lambda pretrained, finetuned, lam: pretrained)
    with pytest.raises(MergeRegistrationError, match="load_adapter must be a function"):
        register_merge("x5", load_adapter="SurgeryAdapter")(lambda pretrained, finetuned: pretrained)


def test_plugin_source_recorded(scratch_registry):
    def plugin(pretrained, finetuned):
        return pretrained

    plugin.__module__ = "my_package.merges"
    register_merge("my_merge")(plugin)
    assert get_method("my_merge").source == "plugin:my_package.merges"


class FakeEntryPoint:
    def __init__(self, name, obj):
        self.name, self.value, self._obj = name, f"fake:{name}", obj

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_entry_points_discovered_lazily(scratch_registry, monkeypatch):
    def registers():
        register_merge("ep_callable")(lambda pretrained, finetuned: pretrained)

    method = MergeMethod("ep_object", lambda pretrained, finetuned: pretrained, source="plugin:fake")
    groups = []

    def entry_points(*, group):
        groups.append(group)
        return [
            FakeEntryPoint("a", registers),
            FakeEntryPoint("b", method),
            FakeEntryPoint("c", ImportError("no module named 'broken'")),
        ]

    monkeypatch.setattr("importlib.metadata.entry_points", entry_points)
    monkeypatch.setattr(registry.METHODS, "_loaded", False)
    with pytest.warns(UserWarning, match="entry point 'c'.*no module named 'broken'"):
        names = list_methods()
    assert groups == ["mergesec.merge_methods"]
    assert {"ep_callable", "ep_object", "ties"} <= set(names)
    pre, fts = random_models()
    assert_close(merge("ep_object", pre, fts), pre)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list_methods()  # loaded once only
    assert groups == ["mergesec.merge_methods"]


# ---------------------------------------------------------------- input validation


def test_nan_input_rejected_naming_model_and_key():
    pre, fts = random_models()
    fts[1]["b"][2] = float("nan")
    with pytest.raises(MergeInputError, match=r"finetuned\[1\].*NaN/inf in 'b' \(1 of 4"):
        merge("task_arithmetic", pre, fts)


def test_shape_mismatch_rejected_with_both_shapes():
    pre, fts = random_models()
    fts[2]["w"] = torch.zeros(4, 2)
    with pytest.raises(
        MergeInputError, match=r"shape mismatch for 'w': pretrained has \(4, 3\), finetuned\[2\].*\(4, 2\)"
    ):
        merge("weight_averaging", pre, fts)


def test_key_mismatch_names_keys_and_model():
    pre, fts = random_models()
    fts[0] = {"w": fts[0]["w"], "head.weight": torch.zeros(2)}
    with pytest.raises(MergeInputError) as err:
        merge("task_arithmetic", pre, fts, context=MergeContext(tasks=["digit", "parity", "mod3"]))
    msg = str(err.value)
    assert (
        "finetuned[0] (task 'digit')" in msg and "missing key(s): 'b'" in msg and "extra key(s): 'head.weight'" in msg
    )


def test_non_dict_and_empty_inputs_rejected():
    pre, _ = random_models()
    with pytest.raises(MergeInputError, match="non-empty list"):
        merge("task_arithmetic", pre, [])
    with pytest.raises(MergeInputError, match=r"finetuned\[0\].*not a dict\[str, Tensor\]"):
        merge("task_arithmetic", pre, [{"w": [1.0], "b": pre["b"]}])


def test_integer_buffers_passed_through_or_rejected(scratch_registry):
    pre, fts = random_models()
    pre["steps"] = T([7])
    for sd in fts:
        sd["steps"] = T([7])
    seen = []

    @register_merge("sees_keys")
    def sees_keys(pretrained, finetuned):
        seen.append(set(pretrained))
        return {k: v + 1 for k, v in pretrained.items()}

    out = merge("sees_keys", pre, fts)
    assert seen == [{"w", "b"}]  # methods only see floating tensors
    assert list(out) == ["w", "b", "steps"] and torch.equal(out["steps"], T([7]))
    assert out["steps"].data_ptr() != pre["steps"].data_ptr()
    fts[1]["steps"] = T([8])
    with pytest.raises(MergeInputError, match=r"non-floating tensor 'steps'.*finetuned\[1\].*identical"):
        merge("task_arithmetic", pre, fts)


# ---------------------------------------------------------------- output validation


@pytest.mark.parametrize(
    ("result", "match"),
    [
        (lambda p: {k: v for k, v in p.items() if k != "b"}, r"missing key\(s\): 'b'"),
        (lambda p: {**p, "extra": p["b"]}, r"extra key\(s\): 'extra'"),
        (lambda p: [p["w"], p["b"]], "returned list; a merge method must return a dict"),
        (lambda p: {**p, "b": p["b"] * float("nan")}, "NaN/inf in 'b'"),
        (lambda p: {**p, "w": p["w"].double()}, r"returned 'w' as torch.float64"),
        (lambda p: {**p, "w": p["w"][:2]}, r"returned 'w' as torch.float32 \(2, 3\)"),
        (lambda p: MergeOutput(p, [None]), "adapters of length 1; .*one nn.Module or None per task \\(3\\)"),
    ],
)
def test_broken_method_output_rejected(scratch_registry, result, match):
    register_merge("broken")(lambda pretrained, finetuned: result(pretrained))
    pre, fts = random_models()
    with pytest.raises(MergeOutputError, match=match) as err:
        merge("broken", pre, fts)
    assert "merge method 'broken'" in str(err.value)


def test_missing_data_error_names_the_data():
    pre, fts = random_models()
    with pytest.raises(MergeInputError, match=r"fisher needs unlabelled_dev and classifier_factory: pass context="):
        merge("fisher", pre, fts)
    with pytest.raises(
        MergeInputError, match=r"regmean needs classifier_factory: pass context=MergeContext\(classifier"
    ):
        merge("regmean", pre, fts, context=MergeContext(dev_data=[[]] * 3))
    with pytest.raises(MergeInputError, match="got 1 dev datasets for 3 fine-tuned models"):
        merge("regmean", pre, fts, context=MergeContext(dev_data=[[]], classifier_factory=lambda *a: None))


# ---------------------------------------------------------------- data-free methods


@pytest.mark.parametrize("name", DATA_FREE)
def test_data_free_methods_never_mutate_or_alias_inputs(name):
    pre, fts = random_models(n_tasks=1)
    before = [{k: v.clone() for k, v in sd.items()} for sd in (pre, *fts)]
    out = merge(name, pre, fts)
    for sd, copy in zip((pre, *fts), before, strict=True):
        assert_close(sd, copy)
    inputs = {t.untyped_storage().data_ptr() for sd in (pre, *fts) for t in sd.values()}
    assert not any(t.untyped_storage().data_ptr() in inputs for t in out.values())
    assert out.keys() == pre.keys()


def test_weight_averaging_and_task_arithmetic_by_hand():
    pre = {"w": T([0.0, 1.0])}
    fts = [{"w": T([1.0, 3.0])}, {"w": T([3.0, -1.0])}]
    assert_close(merge("weight_averaging", pre, fts), {"w": [2.0, 1.0]})
    # τ = [1, 2], [3, -2]; Σ τ = [4, 0]
    assert_close(merge("task_arithmetic", pre, fts), {"w": [1.2, 1.0]})
    assert_close(merge("task_arithmetic", pre, fts, scaling_coef=1), {"w": [4.0, 1.0]})


# Three task vectors over two tensors (6 entries), keep_ratio 0.5 -> the reference trim keeps magnitudes
# >= the (6 - int(3))-th smallest, i.e. the top 4 of each model:
#   τ1 = a[4, -1, 0.5, 2]   b[-3, 0.1]  -> trimmed a[4, -1, 0, 2] b[-3, 0]
#   τ2 = a[-2, 3, 0.2, 1]   b[5, -0.3]  -> trimmed a[-2, 3, 0, 1] b[5, 0]
#   τ3 = a[1, 0.4, -6, 0.3] b[-1.5, 0.5] -> trimmed a[1, 0, -6, 0] b[-1.5, 0.5]
# elected sign of the sums a[3, 2, -6, 3] b[0.5, 0.5] -> a[+, +, -, +] b[+, +]
# agreeing entries: a0 {4, 1}, a1 {3}, a2 {-6}, a3 {2, 1}, b0 {5}, b1 {0.5}
TIES_PRE = {"a": torch.zeros(4), "b": torch.zeros(2)}
TIES_FT = [
    {"a": T([4.0, -1.0, 0.5, 2.0]), "b": T([-3.0, 0.1])},
    {"a": T([-2.0, 3.0, 0.2, 1.0]), "b": T([5.0, -0.3])},
    {"a": T([1.0, 0.4, -6.0, 0.3]), "b": T([-1.5, 0.5])},
]


def test_ties_trim_elect_disjoint_mean_by_hand():
    out = merge("ties", TIES_PRE, TIES_FT, keep_ratio=0.5, scaling_coef=1.0, merge_func="mean")
    assert_close(out, {"a": [2.5, 3.0, -6.0, 1.5], "b": [5.0, 0.5]})


def test_ties_disjoint_sum_by_hand():
    out = merge("ties", TIES_PRE, TIES_FT, keep_ratio=0.5, scaling_coef=1.0)
    assert_close(out, {"a": [5.0, 3.0, -6.0, 3.0], "b": [5.0, 0.5]})
    scaled = merge("ties", TIES_PRE, TIES_FT, keep_ratio=0.5)
    assert_close(scaled, {"a": [1.5, 0.9, -1.8, 0.9], "b": [1.5, 0.15]})


def test_ties_trims_globally_not_per_tensor():
    # one model: global top of 6 keeps a's 10, 9, 8, 7 and nothing of b; per-tensor top-50% would keep b's 0.2
    pre = {"a": torch.zeros(4), "b": torch.zeros(2)}
    ft = [{"a": T([10.0, -9.0, 8.0, 7.0]), "b": T([0.1, 0.2])}]
    out = merge("ties", pre, ft, keep_ratio=0.5, scaling_coef=1.0)
    assert_close(out, {"a": [10.0, -9.0, 8.0, 7.0], "b": [0.0, 0.0]})


def test_ties_zero_elected_sign_takes_the_majority_sign():
    pre = {"a": torch.zeros(3)}
    fts = [{"a": T([1.0, 2.0, 3.0])}, {"a": T([-1.0, 1.0, 1.0])}]
    out = merge("ties", pre, fts, keep_ratio=1.0, scaling_coef=1.0, merge_func="mean")
    assert_close(out, {"a": [1.0, 1.5, 2.0]})  # entry 0 sums to 0 -> majority sign + -> mean of {1}


def test_dare_same_seed_reproducible_different_seeds_differ():
    pre, fts = random_models()
    a, b, c = (merge("dare_task_arithmetic", pre, fts, context=MergeContext(seed=s)) for s in (1, 1, 2))
    assert_close(a, b)
    assert not torch.equal(a["w"], c["w"])


def test_dare_drops_fraction_p_and_rescales():
    pre = {"w": torch.zeros(20_000)}
    ft = [{"w": torch.ones(20_000)}]
    out = merge("dare_task_arithmetic", pre, ft, drop_rate=0.3, scaling_coef=1.0)["w"]
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.015
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / 0.7))


def test_dare_is_unbiased_expectation_equals_task_arithmetic():
    pre, fts = random_models()
    runs = [merge("dare_task_arithmetic", pre, fts, context=MergeContext(seed=s))["w"] for s in range(400)]
    expected = merge("task_arithmetic", pre, fts)["w"]
    torch.testing.assert_close(torch.stack(runs).mean(0), expected, atol=0.06, rtol=0)


def test_dare_ties_without_dropping_is_ties():
    pre, fts = random_models()
    assert_close(merge("dare_ties", pre, fts, drop_rate=0.0, scaling_coef=0.3), merge("ties", pre, fts))
    assert_close(merge("dare_task_arithmetic", pre, fts, drop_rate=0.0), merge("task_arithmetic", pre, fts))


# τ1 = [1, 0, 2, -1], τ2 = [1, 3, 0, 1], τ3 = [0, 0, 2, 1]; τ_MTL = [2, 3, 4, 1]; λ = 0.5:
#   m1 = |τ1| > 0.5|τ_MTL - τ1| = [1>0.5, 0>1.5, 2>1, 1>1]   = [T, F, T, F]
#   m2 =                          [1>0.5, 3>0,   0>2, 1>0]   = [T, T, F, T]
#   m3 =                          [0>1,   0>1.5, 2>1, 1>0]   = [F, F, T, T]
# votes [2, 1, 2, 2] -> k=2 keeps entries 0, 2, 3: entry 1 is used by task 2 only ("selfish").
CONSENSUS_FT = [
    {"w": T([1.0, 0.0, 2.0, -1.0])},
    {"w": T([1.0, 3.0, 0.0, 1.0])},
    {"w": T([0.0, 0.0, 2.0, 1.0])},
]


def test_consensus_keeps_entries_selected_by_two_tasks():
    pre = {"w": torch.zeros(4)}
    out = merge("consensus_ta", pre, CONSENSUS_FT, tall_mask_lambda=0.5, scaling_coef=1.0)
    assert_close(out, {"w": [2.0, 0.0, 4.0, 1.0]})
    loose = merge("consensus_ta", pre, CONSENSUS_FT, tall_mask_lambda=0.5, scaling_coef=1.0, min_agreement=0)
    assert_close(loose, merge("task_arithmetic", pre, CONSENSUS_FT, scaling_coef=1.0))
