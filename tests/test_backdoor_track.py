"""The backdoor track end to end on a tiny suite: units, stored rows, the views, the summary table, resume."""

import pytest
import torch

from benchmark import runner
from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.data import load_task
from benchmark.results import track_table
from benchmark.store import Store
from benchmark.tracks import get_track
from benchmark.tracks.backdoor_settings import BackdoorTrackError, settings
from tests.test_backdoor import tiny_backdoor_suite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bdtrack")
    suite = tiny_backdoor_suite(
        d, attacks=[{"attack": "naive", "variant": "badnets", "target_class": 1}],
        methods=["task_arithmetic"],
        defenses={"ibvs": {"inject_task": 1}, "fine_pruning": {"epochs": 1}})
    store = Store(d / "r.duckdb")
    summary = runner.run(suite, ["backdoor"], store, Cache(d / "cache"), progress=False)
    return suite, store, summary, d


def test_units_and_rows(run):
    suite, store, summary, _ = run
    # (clean_fixed_trigger, naive) x task_arithmetic x (none, ibvs, fine_pruning)
    assert summary.units_total == 2 * 1 * 3
    m = store.read("SELECT * FROM backdoor_metrics WHERE suite_hash = ?", [suite.hash])
    assert len(m) == 6 and set(m.attack) == {"clean_fixed_trigger", "naive"}
    assert set(m.defense) == {"none", "ibvs", "fine_pruning"}
    assert dict(zip(m.attack, m.role, strict=True)) == {"clean_fixed_trigger": "baseline", "naive": "attack"}
    assert (m.target_task == "digit").all() and (m.target_class == 1).all() and (m.adversary_task == "digit").all()
    _, y = load_task(suite, "digit").test.tensors
    assert (m.n_asr == int((y != 1).sum())).all()  # ASR counts only non-target-class test images
    acc = store.read("SELECT * FROM backdoor_task_acc WHERE suite_hash = ?", [suite.hash])
    assert len(acc) == 6 * len(suite.task_names)
    per = acc.groupby(["attack", "method", "defense"]).clean_acc.mean().reset_index()
    merged = m.merge(per, on=["attack", "method", "defense"], suffixes=("", "_tasks"))
    assert (abs(merged.clean_acc - merged.clean_acc_tasks) < 1e-9).all()  # clean_acc = mean over tasks
    ex = store.read("SELECT attack, defense, avg(hit::INT) asr, avg((clean_pred = 1)::INT) floor, count(*) n "
                    "FROM backdoor_examples GROUP BY ALL")
    joined = m.merge(ex, on=["attack", "defense"])
    assert (abs(joined.backdoor_asr - joined.asr) < 1e-9).all() and (joined.n == joined.n_asr).all()
    assert (abs(joined.asr_floor - joined.floor) < 1e-9).all()  # the floor: same images, no trigger
    assert (abs(m.asr_minus_floor - (m.backdoor_asr - m.asr_floor)) < 1e-12).all()
    assert (store.read("SELECT count(*) n FROM backdoor_examples WHERE label = 1").n == 0).all()


def test_clean_baseline_is_the_merge_of_benign_models(run):
    suite, store, _, d = run
    m = store.read("SELECT * FROM backdoor_task_acc WHERE suite_hash = ? AND defense = 'none'", [suite.hash])
    ctx = RunContext(suite, Cache(d / "cache"), progress=False)
    merged = ctx.merged("task_arithmetic", ctx.method_hparams("task_arithmetic"), 0)
    for attack, rows in m.groupby("attack"):
        same = []
        for task, acc in zip(rows.task, rows.clean_acc, strict=True):
            x, y = load_task(suite, task).test.tensors
            same.append(abs(acc - int((ctx.target(merged, task)(x).argmax(-1) == y).sum()) / len(y)) < 1e-12)
        assert all(same) if attack == "clean_fixed_trigger" else not all(same), attack
    v = store.read("SELECT variant FROM backdoor_metrics WHERE attack = 'clean_fixed_trigger'").variant
    assert set(v) == {"digit_1_3px"}


def test_summary_table_and_resume(run):
    suite, store, _, d = run
    t = track_table(store, suite, "backdoor")
    assert list(t.columns[:5]) == ["role", "attack", "variant", "target", "method"]
    expected = {f"{m}[{d}]" for m in ("acc", "asr", "floor", "asr-floor") for d in ("none", "ibvs", "fine_pruning")}
    assert expected <= set(t.columns)
    assert t.attack.tolist() == ["clean_fixed_trigger", "naive"] and t.role.tolist() == ["baseline", "attack"]
    assert (abs(t["asr-floor[none]"] - (t["asr[none]"] - t["floor[none]"])) < 1e-12).all()
    again = runner.run(suite, ["backdoor"], store, Cache(d / "cache"), progress=False)
    assert again.units_run == 0 and again.units_skipped == 6


def test_bad_config_is_one_clear_error(tmp_path):
    suite = tiny_backdoor_suite(tmp_path, attacks=[{"attack": "naive", "variant": "badnets"}])
    with pytest.raises(BackdoorTrackError, match="target_class"):
        settings(suite)
    suite = tiny_backdoor_suite(tmp_path, attacks=[])
    with pytest.raises(BackdoorTrackError, match=r"no backdoor\.attacks"):
        get_track("backdoor").plan(_Ctx(suite), ["task_arithmetic"])


class _Ctx:
    def __init__(self, suite):
        self.suite = suite


def test_badmerging_variant_must_match_the_target(tmp_path):
    suite = tiny_backdoor_suite(tmp_path, attacks=[
        {"attack": "badmerging", "variant": "on_task", "target_task": "parity", "target_class": 1}])
    with pytest.raises(BackdoorTrackError, match="set variant: off_task"):
        settings(suite)


def test_compact_backdoor_section_implies_the_attack_list(tmp_path):
    suite = tiny_backdoor_suite(tmp_path, attacks=[], target_class=1, patch_size=3, off_task_target="parity")
    rows = {(s.attack, s.variant): s.params for s in settings(suite)}
    assert rows[("badmerging", "off_task")]["target_task"] == "parity"
    assert rows[("badmerging", "off_task")]["patch_size"] == 4 and rows[("naive", "badnets")]["patch_size"] == 3
    assert {"bv", "sbv", "clean_fixed_trigger", "clean_inherent"} <= {a for a, _ in rows}


def _reachable(root, limit: int = 50_000):
    """Objects reachable from `root` through fields, containers, closures and bound methods (not module
    globals): what a plugin defense can get at from what it is given."""
    import dataclasses
    import types

    import torch

    seen, todo, out = set(), [root], []
    while todo and len(seen) < limit:
        o = todo.pop()
        if id(o) in seen or isinstance(o, type | types.ModuleType | torch.Tensor | str | bytes | int | float):
            continue
        seen.add(id(o))
        out.append(o)
        if isinstance(o, dict):
            todo += list(o.values())
        elif isinstance(o, list | tuple | set | frozenset):
            todo += list(o)
        elif isinstance(o, types.FunctionType):
            todo += [c.cell_contents for c in (o.__closure__ or ()) if c.cell_contents is not None]
            todo += list(o.__defaults__ or ())
        elif isinstance(o, types.MethodType):
            todo += [o.__self__, o.__func__]
        elif dataclasses.is_dataclass(o):
            todo += [getattr(o, f.name) for f in dataclasses.fields(o)]
        elif hasattr(o, "__dict__"):
            todo += list(vars(o).values())
    return out


def test_a_plugin_defense_sees_only_what_a_defender_has(run, monkeypatch):
    from benchmark.attacks.backdoor import Backdoor, BackdoorEnv, Trigger
    from benchmark.defenses import register_defense
    from benchmark.defenses import registry as defense_registry
    from benchmark.tracks.backdoor import backdoor_for, defended_model
    from benchmark.tracks.backdoor_settings import Setting
    from benchmark.zoo import Zoo

    suite, _, _, d = run
    monkeypatch.setattr(defense_registry.DEFENSES, "_items", dict(defense_registry.DEFENSES._items))
    got = {}

    @register_defense("peek", stage="merge", needs=("labelled_dev", "classifier_factory", "finetune_recipe"))
    def peek(inputs):
        got["inputs"] = inputs
        return inputs.merge(inputs.pretrained, inputs.finetuned)

    ctx = RunContext(suite, Cache(d / "cache"), progress=False)
    s = Setting("naive", "badnets", {"adversary_task": "digit", "target_task": "digit", "target_class": 1})
    bd = backdoor_for(ctx, s, 0)
    defended_model(ctx, s, bd, "task_arithmetic", ctx.method_hparams("task_arithmetic"), "peek", {}, 0)
    inputs = got["inputs"]
    assert inputs.cache.root == (d / "cache" / "defender")  # its own folder: no attack artefact in it
    leaked = [type(o).__name__ for o in _reachable(inputs) if isinstance(o, Zoo | BackdoorEnv | Backdoor | Trigger
                                                                           | RunContext | Cache)
              and not (isinstance(o, Cache) and o.root == inputs.cache.root)]
    assert leaked == []
    assert inputs.context.classifier_factory(inputs.pretrained, 0)(torch.zeros(1, 3, 16, 16)).shape[-1] == 10


def test_docs_tables_are_generated_and_drift_is_caught(run, tmp_path):
    import os
    import re

    from benchmark.tracks import backdoor_docs as bdocs

    _, store, _, d = run
    text = bdocs.DOC.read_text()
    assert bdocs.block_names(text) == ["results", "patch"]
    outside = bdocs.BLOCK.sub("", text)
    pasted = [ln for ln in outside.splitlines() if ln.startswith("|") and re.search(r"\d\.\d{3}", ln)]
    assert pasted == []  # no hand-pasted result table outside the generated blocks
    doc = tmp_path / "backdoor.md"
    doc.write_text(text)
    args = ["--db", str(store.path), "--cache", str(d / "cache"), "--suite", str(d / "tiny-backdoor.yaml"),
            "--doc", str(doc)]
    assert bdocs.main([*args, "--check"]) == 1  # the placeholders are not what this database gives
    assert bdocs.main(args) == 0
    written = doc.read_text()
    assert "clean_fixed_trigger" in written and "asr-floor[ibvs]" in written and "with_patch" in written
    assert bdocs.main([*args, "--check"]) == 0
    body = bdocs._body(written, "results")
    bumped = re.sub(r"0\.(\d)", lambda m: f"0.{(int(m.group(1)) + 1) % 10}", body, count=1)
    doc.write_text(written.replace(body, bumped))
    assert bdocs.main([*args, "--check"]) == 1  # one digit changed: drift
    assert bdocs.main(["--db", str(tmp_path / "none.duckdb"), "--doc", str(doc)]) == 2
    shipped = os.environ.get("MERGESEC_TEST_DB")
    if shipped:  # the shipped document against a full digits sweep
        cache = os.environ.get("MERGESEC_TEST_CACHE", "cache")
        assert bdocs.main(["--db", shipped, "--cache", cache, "--check"]) == 0
