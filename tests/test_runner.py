"""Runner behaviour: resume after kill -9, no duplicate rows, provenance recorded; a changed method's units
replace the rows of its earlier version."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import pytest

from benchmark import runner, trace
from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.store import Store, open_store
from benchmark.tracks import TRACKS, Track, Unit
from benchmark.zoo import build_zoo
from tests.conftest import tiny_suite_raw, write_suite
from tests.test_backdoor import tiny_backdoor_suite


class VersionedTrack(Track):
    """One merge_eval row per (method, seed), recording the method's code version; no models involved."""

    name = "versioned"

    def __init__(self) -> None:
        self.version, self.fail = "v1", False

    def plan(self, ctx, methods):
        return [Unit(self.name, {"suite_hash": ctx.suite.hash, "method": m, "seed": seed, "hparams": {},
                                 "code": self.version}) for m in methods for seed in (0, 1)]

    def run_unit(self, unit, ctx):
        if self.fail:
            raise RuntimeError("the new version crashed")
        d = unit.description
        return {"merge_eval": pd.DataFrame([{
            "suite": ctx.suite.name, "suite_hash": ctx.suite.hash, "method": d["method"],
            "hparams": json.dumps({"code": d["code"]}), "seed": d["seed"], "task": "t", "n": 1, "clean_acc": 1.0,
            "finetuned_acc": 1.0, "pretrained_acc": 0.0, "normalized_acc": 1.0, "merge_seconds": 0.0}])}


@dataclass
class Versioned:
    track: VersionedTrack
    store: Store
    ctx: RunContext

    def run(self, methods: list[str]) -> runner.RunSummary:
        units = runner.plan(self.ctx, [self.track.name], methods)
        return runner.run_units(self.ctx, [self.track.name], units, self.store, {})

    def versions(self) -> dict[str, list[str]]:
        df = self.store.read("SELECT method, hparams FROM merge_eval ORDER BY method, seed")
        return {m: [json.loads(h)["code"] for h in g.hparams] for m, g in df.groupby("method")}


@pytest.fixture
def versioned(monkeypatch, tiny_suite, tmp_path) -> Versioned:
    track = VersionedTrack()
    monkeypatch.setitem(TRACKS, track.name, track)
    return Versioned(track, open_store(tmp_path / "r.duckdb"), RunContext(tiny_suite, Cache(tmp_path), False))


def test_changed_method_replaces_its_earlier_rows(versioned):
    assert versioned.run(["a", "b"]).units_run == 4
    versioned.track.version = "v2"
    summary = versioned.run(["a"])
    assert (summary.units_run, summary.units_skipped) == (2, 0)
    assert versioned.versions() == {"a": ["v2", "v2"], "b": ["v1", "v1"]}  # b was not re-run: its rows stay
    assert int(versioned.store.read("SELECT count(*) n FROM units_done").n[0]) == 4
    assert versioned.run(["a"]).units_run == 0


def test_failed_new_version_keeps_the_old_rows(versioned):
    versioned.run(["a"])
    versioned.track.version, versioned.track.fail = "v2", True
    with pytest.raises(RuntimeError, match="crashed"):
        versioned.run(["a"])
    assert versioned.versions() == {"a": ["v1", "v1"]}
    runs = versioned.store.read("SELECT status FROM runs ORDER BY started_at")
    assert runs.status.tolist() == ["ok", "failed"]


def test_stored_earlier_versions_go_when_the_current_one_is_stored(versioned):
    """A database holding two versions of a setting (written before the runner replaced rows) keeps only the
    current one after the next run, which runs nothing."""
    versioned.run(["a"])
    versioned.track.version = "v2"
    for unit in versioned.track.plan(versioned.ctx, ["a"]):  # the new version, written without replacing
        tables = versioned.track.run_unit(unit, versioned.ctx)
        versioned.store.write_unit(unit.key, unit.track, unit.description["suite_hash"], "old", unit.description,
                                   tables, 0.0)
    assert sorted(versioned.versions()["a"]) == ["v1", "v1", "v2", "v2"]
    assert versioned.run(["a"]).units_run == 0
    assert versioned.versions() == {"a": ["v2", "v2"]}


def test_backdoor_setting_ignores_versions_not_attack_parameters():
    base = {"suite_hash": "h", "attack": "naive", "variant": "badnets", "method": "m", "defense": "none", "seed": 0,
            "hparams": {"attack": {"target_class": 1}, "method": {"k": 1}, "defense": {}},
            "inputs": {"trigger_of": None}, "code": {"method": "v1", "defense": "none", "attack": "1"}}
    unit = Unit("backdoor", base)
    newer = Unit("backdoor", {**base, "hparams": {**base["hparams"], "method": {"k": 2}},
                              "code": {**base["code"], "method": "v2"}})
    other_target = Unit("backdoor", {**base, "hparams": {**base["hparams"], "attack": {"target_class": 2}}})
    assert newer.setting == unit.setting and newer.key != unit.key
    assert other_target.setting != unit.setting


@pytest.fixture(scope="module")
def many_unit_suite(tmp_path_factory, tiny_cache):
    raw = tiny_suite_raw()
    raw["merging"]["seeds"] = list(range(40))  # 3 methods x 40 seeds = 120 merge units
    path = tmp_path_factory.mktemp("s") / "many.yaml"
    suite = write_suite(path, raw)
    build_zoo(suite, Cache(tiny_cache), progress=False)  # the zoo is cached before the killed run starts
    return suite, path


def _cmd(suite_path, db, cache):
    return [sys.executable, "-m", "benchmark.cli", "run", "--suite", str(suite_path), "--track", "merge",
            "--db", str(db), "--cache", str(cache), "--quiet"]


def _done(store: Store) -> int:
    try:
        return int(store.read("SELECT count(*) n FROM units_done").n[0])
    except Exception:
        return 0


@pytest.mark.slow
def test_kill9_then_resume(many_unit_suite, tiny_cache, tmp_path):
    suite, path = many_unit_suite
    db = tmp_path / "r.duckdb"
    store = Store(db)
    proc = subprocess.Popen(_cmd(path, db, tiny_cache), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while _done(store) < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done(store)
    assert 0 < before < 120, f"kill landed outside the run ({before} units done)"
    assert store.read("SELECT status FROM runs").status.tolist() == ["running"]  # never finished

    out = subprocess.run(_cmd(path, db, tiny_cache), capture_output=True, text=True, check=True)
    assert f"{120 - before} units run, {before} already stored" in out.stdout
    df = store.read("SELECT method, seed, task, count(*) n FROM merge_eval GROUP BY ALL")
    assert len(df) == 120 * 3 and (df.n == 1).all()

    again = subprocess.run(_cmd(path, db, tiny_cache), capture_output=True, text=True, check=True)
    assert "0 units run, 120 already stored" in again.stdout
    assert int(store.read("SELECT count(*) n FROM merge_eval").n[0]) == 120 * 3
    runs = store.read("SELECT status, error, git_commit, packages, suite_hash FROM runs ORDER BY started_at")
    assert runs.status.tolist() == ["interrupted", "ok", "ok"]  # the killed driver's run is closed by the next
    assert "ended without closing the run" in runs.error.iloc[0]
    assert (runs.suite_hash == suite.hash).all()
    assert '"torchattacks"' in runs.packages.iloc[-1]


def _zoo_only(src, dst):
    """A copy of the cache's zoo (pretrained, heads, fine-tuned) without any attack or defense artefact."""
    for kind in ("pretrained", "head", "finetuned"):
        shutil.copytree(src / kind, dst / kind)
    return Cache(dst)


def _results(store: Store, table: str) -> pd.DataFrame:
    """A result table without what differs between two runs of the same units (run ids, timings)."""
    df = store.read(f"SELECT * FROM {table}")
    df = df.drop(columns=[c for c in df.columns if c == "run_id" or "seconds" in c or c.endswith("_at")])
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.mark.slow
def test_worker_processes_store_what_a_serial_run_stores(tmp_path):
    """Units are independent functions of cached inputs: two spawned workers, each with its own context,
    crafting the adversarial sets and training the backdoors concurrently, store exactly the serial run's
    numbers."""
    suite = tiny_backdoor_suite(tmp_path, attacks=[{"attack": "naive", "variant": "badnets", "target_class": 1},
                                                   {"attack": "badmerging", "variant": "on_task", "target_class": 1}],
                                defenses={"ibvs": {"inject_task": 1}})
    build_zoo(suite, Cache(tmp_path / "zoo"), progress=False)
    methods, tracks = ["task_arithmetic", "ties"], ["merge", "transfer", "backdoor"]
    serial, parallel = Store(tmp_path / "serial.duckdb"), Store(tmp_path / "parallel.duckdb")
    # `mergesec run -j 2` in its own process, as users run it: spawned workers re-import the parent's
    # `__main__`, which inside pytest may be a script another test executed (Streamlit's AppTest does that)
    cmd = [sys.executable, "-m", "benchmark.cli", "run", "--suite", str(tmp_path / "tiny-backdoor.yaml"),
           *[a for t in tracks for a in ("--track", t)], "--methods", ",".join(methods), "--db", str(parallel.path),
           "--cache", str(tmp_path / "pc"), "--quiet", "--workers", "2"]
    _zoo_only(tmp_path / "zoo", tmp_path / "pc")
    log = tmp_path / "trace.jsonl"
    b = subprocess.run(cmd, capture_output=True, text=True, check=True,
                       env={**os.environ, "MERGESEC_THREADS": "1", trace.ENV: str(log)})
    # affinity batches: each backdoor merge (set of models, method, seed) is computed by one worker only
    merges = Counter(e["models"] for e in trace.read(log) if e.get("track") == "backdoor" and e["models"] != "defense")
    assert merges and set(merges.values()) == {1}, merges
    a = runner.run(suite, tracks, serial, _zoo_only(tmp_path / "zoo", tmp_path / "sc"), methods, progress=False)
    assert a.units_run == a.units_total > 0
    assert f"{a.units_total} units run, 0 already stored" in b.stdout
    for table in ("merge_eval", "transfer_metrics", "transfer_examples", "backdoor_metrics", "backdoor_examples"):
        x, y = _results(serial, table), _results(parallel, table)
        assert len(x) > 0
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    again = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "MERGESEC_THREADS": "1"})
    assert f"0 units run, {a.units_total} already stored" in again.stdout
