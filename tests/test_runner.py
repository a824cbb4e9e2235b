"""End-to-end runner behaviour: resume after kill -9, no duplicate rows, provenance recorded."""

import os
import signal
import subprocess
import sys
import time

import pytest

from benchmark.cache import Cache
from benchmark.store import Store
from benchmark.zoo import build_zoo
from tests.conftest import tiny_suite_raw, write_suite

pytestmark = pytest.mark.slow


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
    runs = store.read("SELECT status, git_commit, packages, suite_hash FROM runs ORDER BY started_at")
    assert runs.status.tolist()[-2:] == ["ok", "ok"]
    assert (runs.suite_hash == suite.hash).all()
    assert '"torchattacks"' in runs.packages.iloc[-1]
