import pytest
import torch

from benchmark.cache import Cache
from benchmark.suites import load_suite
from benchmark.zoo import build_zoo, zoo_report
from benchmark.zoo import zoo as zoo_module


def test_zoo_is_cached_and_deterministic(tiny_suite, tiny_cache, tmp_path, monkeypatch):
    first = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    assert set(first.finetuned) == set(tiny_suite.task_names)
    assert all(set(sd) == set(first.pretrained) for sd in first.finetuned.values())
    assert all(not torch.equal(first.finetuned[t][k], first.pretrained[k])
               for t in tiny_suite.task_names for k in ["conv1.weight"])

    def boom(*a, **k):
        raise AssertionError("a cached zoo must not train again")

    with monkeypatch.context() as m:
        m.setattr(zoo_module, "finetune", boom)
        m.setattr(zoo_module, "pretrain_simclr", boom)
        m.setattr(zoo_module, "fit_probe", boom)
        again = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    assert again.keys == first.keys
    assert all(torch.equal(again.pretrained[k], first.pretrained[k]) for k in first.pretrained)

    fresh = build_zoo(tiny_suite, Cache(tmp_path / "fresh"), progress=False)  # from scratch: same numbers
    for t in tiny_suite.task_names:
        assert all(torch.equal(fresh.finetuned[t][k], first.finetuned[t][k]) for k in first.pretrained)


def test_cache_files_are_safetensors_only(tiny_suite, tiny_cache):
    build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    files = [p for p in tiny_cache.rglob("*") if p.is_file()]
    # weights only as safetensors; .json sidecars and empty .lock files (the build locks) hold no weights
    assert files and {p.suffix for p in files} <= {".safetensors", ".json", ".lock"}
    assert all(p.stat().st_size == 0 for p in files if p.suffix == ".lock")


@pytest.mark.slow
def test_digits_quality_bars(digits_cache):
    """The issue's bars: every fine-tuned model >= 90%; the pretrained encoder clearly below."""
    rows = zoo_report(build_zoo(load_suite("digits"), Cache(digits_cache), progress=False))
    ft = [r["finetuned_acc"] for r in rows]
    pre = [r["pretrained_acc"] for r in rows]
    assert min(ft) >= 0.90, rows
    assert sum(ft) / len(ft) - sum(pre) / len(pre) >= 0.15, rows
