"""Batch sizes per suite and device (issue 15): the suite spec checks `batch_sizes:`, the run's device picks
its entry, the provenance records it, and the evaluation batch size never changes a stored number."""

import json

import pandas as pd
import pytest
import torch

from benchmark import runner
from benchmark.batch_sizes import resolve_batch_sizes
from benchmark.cache import Cache
from benchmark.errors import MergesecError
from benchmark.store import Store
from benchmark.suites import load_suite
from benchmark.zoo import build_zoo
from tests.conftest import tiny_suite_raw, write_suite
from tests.test_runner import _results, _zoo_only


@pytest.mark.parametrize(("batch_sizes", "message"), [
    ({"tpu": {"eval": 8}}, "unknown device kind 'tpu'"),
    ({"cpu": {"evaluation": 8}}, "unknown purpose 'evaluation'"),
    ({"cpu": {"train": 8}}, "training batch sizes are part of the recipe"),
    ({"cuda": {"craft": 0}}, "batch_sizes.cuda.craft must be a positive integer"),
    ({"cpu": [8]}, "batch_sizes.cpu must be a mapping"),
])
def test_the_suite_spec_refuses_unknown_batch_size_keys(tmp_path, batch_sizes, message):
    with pytest.raises(MergesecError, match=message):
        write_suite(tmp_path / "s.yaml", tiny_suite_raw(batch_sizes=batch_sizes))


def test_the_device_kind_picks_the_suites_batch_sizes():
    digits, clip = load_suite("digits"), load_suite("clip-vit-b32")
    assert resolve_batch_sizes(digits.raw, torch.device("cpu")) == {"eval": 512, "grad": 512, "craft": 256}
    assert resolve_batch_sizes(clip.raw, torch.device("cuda", 1)) == clip.raw["batch_sizes"]["cuda"]
    assert resolve_batch_sizes(clip.raw, torch.device("cpu")) == clip.raw["batch_sizes"]["cpu"]
    raw = {**digits.raw, "batch_sizes": {"cuda": {"eval": 64}}}
    assert resolve_batch_sizes(raw, torch.device("cuda")) == {"eval": 64, "grad": 512, "craft": 256}
    assert resolve_batch_sizes(raw, torch.device("cpu")) == {"eval": 512, "grad": 512, "craft": 256}


def test_evaluation_batch_size_and_memo_bounds_change_no_stored_number(tmp_path, monkeypatch):
    """The three tracks on a tiny digits suite, once at the default evaluation batch (512: one batch per
    split) with the default memo bounds, and once at 7 (many batches, a ragged last one) with every
    in-process memo bounded to 1 byte (each keeps only its newest entry, so everything else is rebuilt or
    reloaded), from separate caches so nothing evaluated is reused: every stored number is equal; the runs'
    provenance records the sizes used. (The `grad` batch, which does change last bits of the cosines, is a
    version of the transfer units, tested below.)"""
    from benchmark import context
    from benchmark.attacks.backdoor import base
    from benchmark.tracks import backdoor, transfer_cache

    tracks, methods = ["merge", "transfer", "backdoor"], ["task_arithmetic"]
    raw = tiny_suite_raw()
    raw["transfer"].update(attacks=["fgsm"], surrogates=["finetuned"])
    raw["recipe"]["finetune"].update(epochs=1)
    raw["backdoor"] = {"seeds": [0], "adversary_task": "digit", "methods": methods, "defenses": {},
                       "attacks": [{"attack": "naive", "variant": "badnets", "target_class": 1}]}
    build_zoo(write_suite(tmp_path / "a.yaml", raw), Cache(tmp_path / "zoo"), progress=False)
    stores = {}
    for bs in (512, 7):
        if bs == 7:
            for memo in (transfer_cache.MEMO_BYTES, backdoor.MEMO_BYTES, base.MEMO_BYTES):
                for k in memo:
                    monkeypatch.setitem(memo, k, 1)
            monkeypatch.setattr(context, "MERGED_MEMO_BYTES", 1)
        suite = write_suite(tmp_path / f"s{bs}.yaml", {**raw, "batch_sizes": {"cpu": {"eval": bs}}})
        store = stores[bs] = Store(tmp_path / f"{bs}.duckdb")
        summary = runner.run(suite, tracks, store, _zoo_only(tmp_path / "zoo", tmp_path / f"c{bs}"), methods,
                             progress=False)
        assert summary.units_run > 0
        hardware = json.loads(store.read("SELECT hardware FROM runs").hardware[0])
        assert hardware["batch_sizes"] == {"eval": bs, "grad": 512, "craft": 256}
    for table in ("merge_eval", "transfer_metrics", "transfer_examples", "backdoor_metrics", "backdoor_examples"):
        a, b = (_results(stores[bs], table) for bs in (512, 7))
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_gradient_and_crafting_batch_sizes_are_versions_of_the_transfer_units(tmp_path):
    """Another `grad` or `craft` batch size gives the transfer units new keys but the same settings (so its
    rows replace the old ones), and new keys for the gradient passes' artefacts."""
    from benchmark.context import RunContext
    from benchmark.tracks import get_track

    track = get_track("transfer")
    plans = {}
    for name, sizes in {"default": None, "grad": {"grad": 64}, "craft": {"craft": 64}, "eval": {"eval": 64}}.items():
        raw = tiny_suite_raw(**({"batch_sizes": {"cpu": sizes}} if sizes else {}))
        ctx = RunContext(write_suite(tmp_path / f"{name}.yaml", raw), Cache(tmp_path / "c"), False)
        plans[name] = [u for u in track.plan(ctx, ["task_arithmetic"])]
    base = plans["default"]
    for name in ("grad", "craft"):
        assert [u.setting for u in plans[name]] == [u.setting for u in base]
        assert all(u.description["batch_sizes"] != b.description["batch_sizes"]
                   for u, b in zip(plans[name], base, strict=True))
    assert [u.description["batch_sizes"] for u in plans["eval"]] == [u.description["batch_sizes"] for u in base]
