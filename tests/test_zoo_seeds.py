"""`recipe.finetune_seed: run`: a unit of run seed s uses task fine-tunes trained with seed s (issue 18, "Seeds").

Seed `recipe.seed`'s fine-tunes keep the spec (and key) of a suite without the option; the other seeds'
differ, and every track's unit of seed 1 reads seed 1's fine-tunes.
"""

import shutil

import pytest
import torch
import yaml

from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.errors import MergesecError
from benchmark.suites import SUITE_DIR
from benchmark.zoo import build_zoo, dataset_accuracy
from benchmark.zoo import zoo as zoo_module
from tests.conftest import tiny_suite_raw, write_suite

BASE = ("pretrained", "head")  # the artefacts every fine-tuning seed shares


def _seeded_raw() -> dict:
    raw = tiny_suite_raw()
    raw["recipe"]["finetune_seed"] = "run"
    raw["merging"]["seeds"] = [0, 1]
    raw["backdoor"].update(seeds=[0, 1], attacks=raw["backdoor"]["attacks"][:1])  # BadNets: on task `digit`
    return raw


def _copy(src, dst, kinds) -> None:
    for kind in kinds:
        shutil.copytree(src / kind, dst / kind)


@pytest.fixture(scope="module")
def seeded(tiny_suite, tiny_cache, tmp_path_factory):
    """(option-less zoo, seeded suite, its cache, its zoo, finetune calls): the seeded zoo built over a copy of
    the tiny zoo's cache, so only seed 1's fine-tunes are trained."""
    plain = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    tmp = tmp_path_factory.mktemp("seeds")
    suite = write_suite(tmp / "s.yaml", _seeded_raw())
    _copy(tiny_cache, tmp / "cache", (*BASE, "finetuned"))
    calls, original = [], zoo_module.finetune
    with pytest.MonkeyPatch.context() as m:
        m.setattr(zoo_module, "finetune", lambda *a, **k: calls.append(a[3]) or original(*a, **k))
        zoo = build_zoo(suite, Cache(tmp / "cache"), progress=False)
    return plain, suite, tmp / "cache", zoo, calls


def test_seed_zero_fine_tunes_are_the_option_less_ones_and_seed_one_differs(seeded):
    plain, suite, _, zoo, calls = seeded
    assert suite.finetune_seeds == (0, 1)
    assert calls == [1, 1, 1]  # seed 0's fine-tunes were cache hits: the option-less suite's keys
    assert zoo.keys == plain.keys and zoo.seed == 0 and zoo.for_seed(0) is zoo
    one = zoo.for_seed(1)
    assert one is zoo.for_seed(1) and one.seed == 1  # memoised
    assert one.pretrained is zoo.pretrained and one.heads is zoo.heads
    for t in suite.task_names:
        assert one.keys[f"head/{t}"] == zoo.keys[f"head/{t}"]
        assert one.keys[f"finetuned/{t}"] != zoo.keys[f"finetuned/{t}"]
        assert all(torch.equal(zoo.finetuned[t][k], plain.finetuned[t][k]) for k in plain.pretrained)
        assert not torch.equal(one.finetuned[t]["conv1.weight"], zoo.finetuned[t]["conv1.weight"])
    assert one.keys["pretrained"] == zoo.keys["pretrained"]


def test_without_the_option_every_run_seed_uses_the_recipe_seed(tiny_suite, tiny_cache):
    zoo = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    assert tiny_suite.finetune_seeds == (0,) and zoo.for_seed(2) is zoo


def test_workers_build_every_seed_once_and_equal_a_serial_build(seeded, tmp_path, monkeypatch):
    """`workers=2` over a cache with only the pretrained encoder and the heads: the six (task, seed) fine-tunes
    are each trained once (every other one in this process), bitwise the serial build's."""
    _, suite, cache, serial, _ = seeded
    _copy(cache, tmp_path / "cache", BASE)
    calls, original = [], zoo_module.finetune
    monkeypatch.setattr(zoo_module, "finetune", lambda *a, **k: calls.append((k["desc"], a[3])) or original(*a, **k))
    parallel = build_zoo(suite, Cache(tmp_path / "cache"), progress=False, workers=2)
    jobs = [(f"fine-tune {t}", s) for s in (0, 1) for t in suite.task_names]
    assert calls == jobs[::2]
    assert len(list((tmp_path / "cache" / "finetuned").glob("*.safetensors"))) == len(jobs)
    for s in (0, 1):
        a, b = parallel.for_seed(s), serial.for_seed(s)
        assert a.keys == b.keys
        assert all(torch.equal(a.finetuned[t][k], b.finetuned[t][k]) for t in suite.task_names for k in a.pretrained)


def test_bad_value_and_published_checkpoints_are_refused(tmp_path):
    raw = tiny_suite_raw()
    raw["recipe"]["finetune_seed"] = "each"
    with pytest.raises(MergesecError, match="recipe, run"):
        write_suite(tmp_path / "bad.yaml", raw)
    public = yaml.safe_load((SUITE_DIR / "clip-vit-b32.yaml").read_text())
    public["recipe"]["finetune_seed"] = "run"
    with pytest.raises(MergesecError, match="published fine-tuned checkpoints"):
        write_suite(tmp_path / "public.yaml", public)


def test_a_seed_free_merge_merges_each_seeds_fine_tunes(seeded, tiny_suite, tiny_cache):
    """weight_averaging (data-free: receives seed 0 whatever the unit's seed) merges seed s's fine-tunes; seed
    0's spec is the option-less suite's, so its merged artefact is today's."""
    _, suite, cache, zoo, _ = seeded
    ctx = RunContext(suite, Cache(cache), progress=False)
    hp = ctx.method_hparams("weight_averaging")
    spec0, spec1 = (ctx.merged_spec("weight_averaging", hp, s) for s in (0, 1))
    plain = RunContext(tiny_suite, Cache(tiny_cache), progress=False)
    assert spec0 == plain.merged_spec("weight_averaging", hp, 0)
    assert spec0["seed"] == spec1["seed"] == 0 and spec0 != spec1
    assert {n for n in spec0["weights"] if spec0["weights"][n] != spec1["weights"][n]} == {
        f"finetuned/{t}" for t in suite.task_names}
    m1 = ctx.merged("weight_averaging", hp, 1)
    mean = {k: sum(zoo.for_seed(1).finetuned[t][k] for t in suite.task_names) / 3 for k in zoo.pretrained}
    assert all(torch.allclose(m1.state_dict[k], mean[k]) for k in mean)


def test_merge_eval_and_transfer_units_of_seed_one_read_seed_ones_fine_tunes(seeded):
    from benchmark.tracks import Unit, get_track
    from benchmark.tracks.transfer_cache import surrogate_keys, surrogate_model

    _, suite, cache, zoo, _ = seeded
    ctx = RunContext(suite, Cache(cache), progress=False)
    track, t = get_track("merge"), suite.task_names[0]
    for s in (0, 1):
        unit = Unit("merge", {"suite_hash": suite.hash, "method": "weight_averaging",
                              "hparams": ctx.method_hparams("weight_averaging"), "seed": s, "code": "x"})
        rows = track.run_unit(unit, ctx)["merge_eval"]
        z = zoo.for_seed(s)
        want = dataset_accuracy(z.classifier(z.finetuned[t], t), ctx.data(t).test, ctx.batch_sizes["eval"])
        assert rows.set_index("task").finetuned_acc[t] == want
        sur = surrogate_model(ctx, t, "finetuned", s)
        assert all(torch.equal(sur.encoder.state_dict()[k], z.finetuned[t][k]) for k in z.pretrained)
        assert surrogate_keys(ctx, t, "finetuned", s)["surrogate"]["encoder"] == ctx.weights_digest(f"finetuned/{t}", s)
    assert ctx.weights_digest(f"finetuned/{t}", 0) != ctx.weights_digest(f"finetuned/{t}", 1)
    pre = [surrogate_keys(ctx, t, "pretrained", s)["surrogate"]["encoder"] for s in (0, 1)]
    assert pre[0] == pre[1]


def test_backdoor_units_merge_their_seeds_benign_fine_tunes_and_bv_reuses_the_zoos(seeded, tiny_suite, tiny_cache,
                                                                                    tmp_path, monkeypatch):
    """A backdoor unit of seed 1 merges seed 1's benign fine-tunes; BV's clean reference of seed 1 is the zoo's
    seed-1 fine-tune, which is bitwise what BV trains when the zoo has no such seed (the option-less suite)."""
    import benchmark.merging as merging
    from benchmark.attacks.backdoor.backdoor_vectors import clean_finetune
    from benchmark.tracks import backdoor
    from benchmark.tracks.backdoor_settings import settings

    _, suite, cache, _, _ = seeded
    ctx = RunContext(suite, Cache(cache), progress=False)
    zoo = ctx.zoo
    clean = next(s for s in settings(suite) if s.attack == "clean_fixed_trigger")  # benign contributors
    seen, real = [], merging.MergeContext
    monkeypatch.setattr(merging, "MergeContext", lambda **kw: seen.append(kw["finetuned"]) or real(**kw))
    for seed in (0, 1):
        bd = backdoor.backdoor_for(ctx, clean, seed)
        backdoor.defended_model(ctx, clean, bd, "weight_averaging", {}, "none", {}, seed)
    for models, seed in zip(seen, (0, 1), strict=True):
        assert all(a is zoo.for_seed(seed).finetuned[t] for a, t in zip(models, suite.task_names, strict=True))
    assert clean_finetune(backdoor._state(ctx).env, "digit", 1) is zoo.for_seed(1).finetuned["digit"]
    _copy(tiny_cache, tmp_path / "plain", (*BASE, "finetuned"))
    trained = clean_finetune(backdoor._state(RunContext(tiny_suite, Cache(tmp_path / "plain"), progress=False)).env,
                             "digit", 1)
    assert all(torch.equal(trained[k], zoo.for_seed(1).finetuned["digit"][k]) for k in trained)


@pytest.mark.slow
def test_a_run_with_worker_processes_stores_what_a_serial_run_stores(seeded, tmp_path):
    """`mergesec run -j 2` over per-seed zoos (every track, seeds 0 and 1) stores exactly the serial run's
    numbers, and seed 1's rows differ from seed 0's fine-tuned reference."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from benchmark.store import Store

    raw = _seeded_raw()
    raw["transfer"].update(seeds=[0, 1], attacks=["fgsm"])
    raw["backdoor"].update(defenses={}, methods=["weight_averaging"])
    write_suite(tmp_path / "s.yaml", raw)
    _, _, cache, _, _ = seeded
    for name in ("serial", "parallel"):
        _copy(cache, tmp_path / name, (*BASE, "finetuned"))
    tracks, methods = ["merge", "transfer", "backdoor"], ["weight_averaging"]
    serial, parallel = Store(tmp_path / "serial.duckdb"), Store(tmp_path / "parallel.duckdb")
    for store, workers in ((serial, 1), (parallel, 2)):  # both in a fresh process: registries as a user's
        subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--suite", str(tmp_path / "s.yaml"),
                        *[a for t in tracks for a in ("--track", t)], "--methods", ",".join(methods), "--db",
                        str(store.path), "--cache", str(tmp_path / store.path.stem), "--quiet", "--workers",
                        str(workers)],
                       capture_output=True, text=True, check=True, env={**os.environ, "MERGESEC_THREADS": "1"})

    def rows(store: Store, table: str) -> pd.DataFrame:
        df = store.read(f"SELECT * FROM {table}").drop(columns=["run_id", "merge_seconds"], errors="ignore")
        return df.sort_values(list(df.columns)).reset_index(drop=True)

    for table in ("merge_eval", "transfer_metrics", "backdoor_metrics"):
        pd.testing.assert_frame_equal(rows(serial, table), rows(parallel, table), check_exact=True)
    ft = rows(serial, "merge_eval").pivot_table(index="task", columns="seed", values="finetuned_acc")
    assert (ft[0] != ft[1]).any()
