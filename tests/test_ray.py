"""The Ray executor on a real local cluster (127.0.0.1, two CPU workers): the stored rows equal a serial
run's exactly, and a worker killed mid-unit costs a retry, not a row."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark import runner
from benchmark.cache import Cache
from benchmark.store import Store
from benchmark.zoo import build_zoo
from tests.test_backdoor import tiny_backdoor_suite
from tests.test_runner import _results, _zoo_only

ray = pytest.importorskip("ray")

TRACKS = ["merge", "transfer", "backdoor"]
METHODS = ["task_arithmetic", "ties"]
TABLES = ("merge_eval", "transfer_metrics", "transfer_examples", "backdoor_metrics", "backdoor_examples")
RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this interpreter
# a throw-away cluster on loopback: no usage reports, and no token (a token file left in ~/.ray by another
# local cluster would not match this one's)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster bound to 127.0.0.1 with two CPU slots; stopped afterwards."""
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths live under it
    env = {**os.environ, **RAY_ENV}
    subprocess.run([*RAY_CLI, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
                    "--temp-dir", tmp, "--disable-usage-stats"], check=True, capture_output=True, env=env,
                   timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*RAY_CLI, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A tiny three-track sweep, its zoo and the serial run's database."""
    tmp = tmp_path_factory.mktemp("sweep")
    suite = tiny_backdoor_suite(tmp, attacks=[{"attack": "naive", "variant": "badnets", "target_class": 1}])
    build_zoo(suite, Cache(tmp / "zoo"), progress=False)
    serial = Store(tmp / "serial.duckdb")
    summary = runner.run(suite, TRACKS, serial, _zoo_only(tmp / "zoo", tmp / "serial-cache"), METHODS,
                         progress=False)
    assert summary.units_run == summary.units_total > 0
    return tmp, suite, serial, summary.units_total


def _cmd(tmp: Path, address: str, db: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", "run", "--suite", str(tmp / "tiny-backdoor.yaml"),
            *[a for t in TRACKS for a in ("--track", t)], "--methods", ",".join(METHODS), "--db", str(db),
            "--cache", str(cache), "--quiet", "--executor", "ray", "--ray-address", address]


def _same_rows(a: Store, b: Store) -> None:
    for table in TABLES:
        x, y = _results(a, table), _results(b, table)
        assert len(x) > 0
        pd.testing.assert_frame_equal(x, y, check_exact=True)


ENV = {**os.environ, "MERGESEC_THREADS": "1", **RAY_ENV}


@pytest.mark.slow
def test_ray_cluster_stores_what_a_serial_run_stores(cluster, sweep, tmp_path):
    tmp, _, serial, n = sweep
    db, cache = tmp_path / "ray.duckdb", tmp_path / "cache"
    _zoo_only(tmp / "zoo", cache)
    out = subprocess.run(_cmd(tmp, cluster, db, cache), capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{n} units run, 0 already stored" in out.stdout
    _same_rows(serial, Store(db))
    again = subprocess.run(_cmd(tmp, cluster, db, cache), capture_output=True, text=True, env=ENV, timeout=600)
    assert f"0 units run, {n} already stored" in again.stdout


def _unit_workers() -> list[int]:
    """PIDs of Ray worker processes executing a mergesec unit now (Ray titles them after the task)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split(None, 1)[0]) for line in ps.splitlines() if "ray::mergesec-unit" in line]


@pytest.mark.slow
def test_a_killed_ray_worker_costs_a_retry_not_a_row(cluster, sweep, tmp_path):
    tmp, _, serial, n = sweep
    db, cache = tmp_path / "ray.duckdb", tmp_path / "cache"
    _zoo_only(tmp / "zoo", cache)
    proc = subprocess.Popen(_cmd(tmp, cluster, db, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    killed, deadline = None, time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        workers = _unit_workers()
        if workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed is not None, "no worker was caught computing a unit"
    assert proc.returncode == 0, stderr[-3000:]
    assert f"{n} units run, 0 already stored" in stdout
    _same_rows(serial, Store(db))
    dup = Store(db).read("SELECT unit_key, count(*) n FROM transfer_settings GROUP BY unit_key HAVING n > 1")
    assert dup.empty


def test_missing_ray_is_one_clear_error(tmp_path, monkeypatch):
    """Without Ray installed, --executor ray names the install command (exit 2, no traceback)."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    from benchmark.errors import MissingResourceError
    from benchmark.ray_executor import RAY_INSTALL, require_ray

    with pytest.raises(MissingResourceError, match=re.escape(RAY_INSTALL)):
        require_ray()


def test_a_worker_without_the_drivers_cache_fails_clearly(tmp_path):
    """A worker that sees no cache, or another one, at the driver's path refuses to compute."""
    from benchmark.ray_executor import RayExecutorError, cache_id, run_units_on_worker
    from benchmark.tracks import Unit

    token = cache_id(Cache(tmp_path / "driver"))
    assert cache_id(Cache(tmp_path / "driver")) == token  # stable
    unit = Unit("merge", {})
    with pytest.raises(RayExecutorError, match=r"cannot see the driver's cache.*no cache there"):
        run_units_on_worker({}, str(tmp_path / "elsewhere"), token, 1, [unit])
    cache_id(Cache(tmp_path / "other"))
    with pytest.raises(RayExecutorError, match="another cache is mounted there"):
        run_units_on_worker({}, str(tmp_path / "other"), token, 1, [unit])


def test_unit_resources_come_from_the_suite_and_stay_out_of_its_hash(tmp_path):
    from benchmark.ray_executor import RayExecutorError, UnitResources
    from benchmark.suites import Suite

    base = tiny_backdoor_suite(tmp_path)
    sched = Suite(raw={**base.raw, "execution": {"cpus_per_unit": 2, "gpus_per_unit": 0.25}})
    assert sched.hash == base.hash  # scheduling is not protocol
    assert UnitResources.of(sched) == UnitResources(2.0, 0.25)
    assert UnitResources.of(sched, gpus=0.5) == UnitResources(2.0, 0.5)
    assert UnitResources.of(base) == UnitResources(1.0, 0.0)
    with pytest.raises(RayExecutorError, match="cpus > 0"):
        UnitResources.of(base, cpus=0)


def test_artefacts_are_built_once_under_their_lock(tmp_path):
    """Two processes asking for the same missing artefact at once: one builds, the other loads it."""
    code = ("import sys, time, torch; from benchmark.cache import Cache\n"
            "def build():\n"
            "    open(sys.argv[2], 'a').write('built\\n'); time.sleep(1.0); return {'w': torch.ones(3)}\n"
            "print(Cache(sys.argv[1]).get_or_build('thing', {'k': 1}, build)['w'].sum().item())\n")
    log = tmp_path / "builds.txt"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "c"), str(log)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["3.0", "3.0"]
    assert log.read_text().count("built") == 1
    shutil.rmtree(tmp_path / "c")


@pytest.mark.slow
def test_a_submission_runs_on_ray_as_it_runs_in_this_process(cluster, tmp_path):
    """`mergesec submit --executor ray`: every Ray worker registers the (sandboxed) submission itself, and the
    stored rows equal a serial submit's."""
    from tests.conftest import tiny_suite_raw, write_suite
    from tests.test_submissions_e2e import tiny_copy

    suite_path = tmp_path / "digits-tiny.yaml"
    write_suite(suite_path, tiny_suite_raw())
    folder = tiny_copy("model_breadcrumbs", tmp_path)
    stores = {}
    for name, extra in {"serial": [], "ray": ["--executor", "ray", "--ray-address", cluster]}.items():
        db = tmp_path / f"{name}.duckdb"
        out = subprocess.run([sys.executable, "-m", "benchmark.cli", "submit", str(folder), "--suite", str(suite_path),
                              "--db", str(db), "--cache", str(tmp_path / f"cache-{name}"), "--quiet", *extra],
                             capture_output=True, text=True, env=ENV, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        stores[name] = Store(db)
    for table in ("merge_eval", "transfer_metrics", "transfer_examples"):
        x, y = _results(stores["serial"], table), _results(stores["ray"], table)
        assert len(x) > 0 and set(x.method) == {"model_breadcrumbs"}
        pd.testing.assert_frame_equal(x, y, check_exact=True)
