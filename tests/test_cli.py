import json
import subprocess
import sys

import pytest


def mergesec(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
                          check=check)


def test_help_lists_every_command():
    out = mergesec("--help", check=True).stdout
    for cmd in ("run", "zoo", "list", "results", "merge-eval"):
        assert cmd in out


@pytest.mark.parametrize("args, valid", [
    (["run", "--suite", "no-such-suite"], "digits"),
    (["run", "--methods", "no_such_method"], "task_arithmetic"),
    (["run", "--track", "no_such_track"], "merge"),
    (["list", "nonsense"], "methods"),
])
def test_unknown_names_fail_with_valid_names(args, valid, tmp_path):
    res = mergesec(*args, "--db", str(tmp_path / "r.duckdb")) if args[0] == "run" else mergesec(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: unknown") and valid in res.stderr


def test_results_without_database_says_how_to_make_one(tmp_path):
    res = mergesec("results", "--db", str(tmp_path / "none.duckdb"))
    assert res.returncode == 2 and "mergesec run" in res.stderr


def test_list_methods_as_json():
    res = mergesec("list", "methods", "--format", "json", check=True)
    rows = json.loads(res.stdout.split("\n", 1)[1])
    assert {"weight_averaging", "task_arithmetic", "ties", "regmean", "adamerging_layer"} <= {r["method"] for r in rows}
