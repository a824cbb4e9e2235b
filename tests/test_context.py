"""RunContext's merged-model cache: a merge with adapters is stored once and rebuilt bitwise; without a
`load_adapter` hook it stays in memory; a method that does not read the seed is merged once for every seed."""

import shutil

import pytest
import torch
from torch import nn

from benchmark import trace
from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.merging import MergeOutput, get_method, list_methods, register_merge, registry
from benchmark.merging.methods.surgery import SurgeryAdapter
from tests.conftest import tiny_suite_raw, write_suite

SURGERY = "surgery_task_arithmetic"


@pytest.fixture(scope="module")
def setup(tiny_cache, tmp_path_factory):
    """A tiny suite with a 5-step Surgery, and a copy of its zoo cache."""
    raw = tiny_suite_raw()
    raw["merging"]["methods"][SURGERY] = {"steps": 5}
    tmp = tmp_path_factory.mktemp("context")
    suite = write_suite(tmp / "s.yaml", raw)
    _ = RunContext(suite, Cache(tiny_cache), progress=False).zoo
    for kind in ("pretrained", "head", "finetuned"):
        shutil.copytree(tiny_cache / kind, tmp / "cache" / kind)
    return suite, tmp / "cache"


def _merges(log) -> int:
    return sum(e["event"] == "merge" for e in trace.read(log))


def _logits(ctx: RunContext, merged) -> list[torch.Tensor]:
    out = []
    for t in ctx.suite.task_names:
        test = ctx.data(t).test
        out.append(ctx.target(merged, t)(torch.stack([test[i][0] for i in range(16)])))
    return out


def test_surgery_is_merged_once_per_cache_and_reloads_bitwise(setup, tmp_path, monkeypatch):
    """Two contexts over one cache (two workers): one merge; the reloaded adapters are SurgeryAdapters with
    the same tensors, digest and logits (bitwise) as the fresh ones."""
    suite, zoo = setup
    cache = tmp_path / "cache"
    shutil.copytree(zoo, cache)
    monkeypatch.setenv(trace.ENV, str(tmp_path / "trace.jsonl"))
    first, second = (RunContext(suite, Cache(cache), progress=False) for _ in range(2))
    hparams = first.method_hparams(SURGERY)
    fresh = first.merged(SURGERY, hparams, 0)
    loaded = second.merged(SURGERY, hparams, 0)
    assert _merges(tmp_path / "trace.jsonl") == 1
    assert all(isinstance(a, SurgeryAdapter) and not a.training for a in loaded.adapters)
    for a, b in zip(fresh.adapters, loaded.adapters, strict=True):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert loaded.weights_digest() == fresh.weights_digest() != second.merged(SURGERY, hparams, 1).weights_digest()
    for f, g in zip(_logits(first, fresh), _logits(second, loaded), strict=True):
        assert torch.equal(f, g)
    assert _merges(tmp_path / "trace.jsonl") == 2  # seed 1 was a new merge


class Shift(nn.Module):
    def __init__(self, delta: float):
        super().__init__()
        self.register_buffer("delta", torch.tensor(delta))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + self.delta


def test_adapters_without_a_hook_stay_in_memory(setup, tmp_path, monkeypatch):
    """A merge whose adapters have no `load_adapter` is not stored: each context merges it once, and the
    digest of its weights identifies the adapter's tensors."""
    monkeypatch.setattr(registry.METHODS, "_items", dict(registry.METHODS._items))

    @register_merge("test_adapters_without_hook", needs=("classifier_factory",))
    def with_adapters(ctx):  # task 0 gets an adapter
        return MergeOutput(dict(ctx.pretrained), [Shift(0.5)] + [None] * (len(ctx.finetuned) - 1))

    suite, zoo = setup
    cache = tmp_path / "cache"
    shutil.copytree(zoo, cache)
    monkeypatch.setenv(trace.ENV, str(tmp_path / "trace.jsonl"))
    ctx = RunContext(suite, Cache(cache), progress=False)
    m = ctx.merged("test_adapters_without_hook", {}, 0)
    assert ctx.merged("test_adapters_without_hook", {}, 0) is m and not list((cache / "merged").glob("*.safetensors"))
    other = RunContext(suite, Cache(cache), progress=False).merged("test_adapters_without_hook", {}, 0)
    assert _merges(tmp_path / "trace.jsonl") == 2 and other.weights_digest() == m.weights_digest()
    m.adapters[0].delta.fill_(0.25)
    m.digest = ""
    assert m.weights_digest() != other.weights_digest()


SEED_FREE = [n for n in list_methods() if get_method(n).seed_free]
CHEAP = {"fisher": {"n_examples": 8}, "regmean": {"n_examples": 16}}  # fewer dev images: same code paths


def _same_under_seeds(ctx: RunContext, method: str, hparams: dict) -> bool:
    """Whether `method` merges bitwise the same model when it receives seed 0 and seed 1 (the check a
    `seed_free` declaration must pass)."""
    first, second = (ctx._merge(ctx.zoo, method, hparams, seed, "") for seed in (0, 1))
    return first.weights_digest() == second.weights_digest()


@pytest.mark.parametrize("method", SEED_FREE)
def test_declared_seed_free_methods_merge_the_same_under_two_seeds(setup, method):
    suite, zoo = setup
    ctx = RunContext(suite, Cache(zoo), progress=False)
    assert _same_under_seeds(ctx, method, {**ctx.method_hparams(method), **CHEAP.get(method, {})})


def test_a_wrong_seed_free_declaration_is_caught_and_stays_a_function_of_its_key(setup, tmp_path, monkeypatch):
    """A method that reads ctx.seed but declares itself seed-free fails the check; RunContext still gives every
    seed the merge of seed 0 (its artefact's key), never the seed of whichever unit merged first."""
    monkeypatch.setattr(registry.METHODS, "_items", dict(registry.METHODS._items))

    @register_merge("test_wrongly_seed_free", needs=("classifier_factory",), seed_free=True)
    def wrongly_seed_free(ctx):
        return {k: v + 1e-3 * ctx.seed for k, v in ctx.pretrained.items()}

    suite, zoo = setup
    cache = tmp_path / "cache"
    shutil.copytree(zoo, cache)
    ctx = RunContext(suite, Cache(cache), progress=False)
    assert not _same_under_seeds(ctx, "test_wrongly_seed_free", {})
    merged = RunContext(suite, Cache(cache), progress=False).merged("test_wrongly_seed_free", {}, 2)
    assert merged.weights_digest() == ctx._merge(ctx.zoo, "test_wrongly_seed_free", {}, 0, "").weights_digest()


def test_a_seed_free_merge_is_computed_once_for_every_seed(setup, tmp_path, monkeypatch):
    """RegMean (declared seed-free) and TIES (data-free): one merge and one artefact for seeds 0, 1, 2, also
    in a second context (worker); DARE (reads the seed): one per seed."""
    suite, zoo = setup
    cache = tmp_path / "cache"
    shutil.copytree(zoo, cache)
    monkeypatch.setenv(trace.ENV, str(tmp_path / "trace.jsonl"))
    first, second = (RunContext(suite, Cache(cache), progress=False) for _ in range(2))
    for method, merges in (("regmean", 1), ("ties", 1), ("dare_task_arithmetic", 3)):
        hp = {**first.method_hparams(method), **CHEAP.get(method, {})}
        before = _merges(tmp_path / "trace.jsonl")
        models = [ctx.merged(method, hp, seed) for ctx in (first, second) for seed in (0, 1, 2)]
        assert _merges(tmp_path / "trace.jsonl") - before == merges, method
        assert len({m.key for m in models}) == merges and len({m.weights_digest() for m in models}) == merges
    assert len(list((cache / "merged").glob("*.safetensors"))) == 5


def test_the_seeds_of_a_seed_free_method_run_in_one_worker():
    """Merge-track units of a method that does not read the seed form one affinity batch (one worker merges,
    none waits on the lock); a method that reads it keeps one batch per unit."""
    from benchmark.tracks import Unit, affinity_batches

    units = [Unit("merge", {"method": m, "seed": s}) for m in ("ties", "dare_ties", "fisher") for s in (0, 1, 2)]
    assert [len(b) for b in affinity_batches(units)] == [3, 1, 1, 1, 3]
