"""Shared fixtures: a tiny suite (seconds to build) and the real digits zoo cache (built once per session)."""

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from benchmark.suites import SUITE_DIR, Suite, load_suite

os.environ.setdefault("MERGESEC_THREADS", "1")
torch.set_num_threads(1)  # as the CLI does: tiny models, reproducible floats


def tiny_suite_raw(**overrides) -> dict:
    """digits.yaml shrunk to 3 tasks, a 2-layer ViT and a few epochs: for tests of plumbing, not quality."""
    raw = yaml.safe_load((SUITE_DIR / "digits.yaml").read_text())
    raw["name"] = "digits-tiny"
    raw["tasks"] = raw["tasks"][:3]
    raw["backbone"]["config"].update(width=32, layers=2, heads=2, output_dim=16)
    raw["recipe"]["pretrain"].update(epochs=2)
    raw["recipe"]["finetune"].update(epochs=2)
    raw["merging"]["methods"] = {"weight_averaging": {}, "task_arithmetic": {"scaling_coef": 0.3},
                                 "ties": {"scaling_coef": 0.3, "keep_ratio": 0.2, "merge_func": "mean"}}
    raw["transfer"].update(subset_size=32, attacks=["fgsm", "pgd"], seeds=[0])
    raw["merging"]["seeds"] = [0]
    del raw["recipe"]["finetune_seed"]  # one fine-tune per task (tests of the per-seed zoo set it)
    raw.update(overrides)
    return raw


def write_suite(path: Path, raw: dict) -> Suite:
    path.write_text(yaml.safe_dump(raw))
    return load_suite(path)


@pytest.fixture(scope="session")
def tiny_suite_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "digits-tiny.yaml"
    write_suite(path, tiny_suite_raw())
    return path


@pytest.fixture(scope="session")
def tiny_suite(tiny_suite_path) -> Suite:
    return load_suite(tiny_suite_path)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def digits_cache() -> Path:
    """The full digits zoo cache: $MERGESEC_TEST_CACHE, else ./cache (what `make demo` builds)."""
    return Path(os.environ.get("MERGESEC_TEST_CACHE", "cache"))


@pytest.fixture(autouse=True)
def _restore_main_module(monkeypatch):
    """Streamlit's AppTest runs each script as a new ``__main__`` module and leaves it in ``sys.modules``;
    worker processes that later tests spawn would re-run that script (multiprocessing's spawn re-imports
    ``__main__`` from its path) and die. Every test gets the real ``__main__`` back afterwards."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.fixture(autouse=True)
def _isolated_registries():
    """Plugins a test registers (a submission's merge method or defense, a test attack or track) are gone
    after it: every registry is put back as it was when the test started (its built-ins, what wider-scoped
    fixtures registered, whether its entry points were loaded). Without this, a test that runs a sweep in
    the pytest process sweeps whatever earlier tests registered (the backdoor track adds every registered
    defense), so its rows would depend on the test order."""
    import benchmark.attacks
    import benchmark.defenses
    import benchmark.merging
    import benchmark.tracks  # noqa: F401  (the built-ins register when their packages are imported)
    from benchmark.attacks.backdoor.base import BACKDOOR_ATTACKS
    from benchmark.attacks.transfer import ATTACKS
    from benchmark.defenses.registry import DEFENSES
    from benchmark.merging.registry import METHODS
    from benchmark.tracks.base import TRACKS

    registries = [(r, dict(r._items), r._loaded) for r in (METHODS, DEFENSES)]
    tables = [(t, dict(t)) for t in (ATTACKS, BACKDOOR_ATTACKS, TRACKS)]
    yield
    for registry, items, loaded in registries:
        registry._items.clear()
        registry._items.update(items)
        registry._loaded = loaded
    for table, entries in tables:
        table.clear()
        table.update(entries)
