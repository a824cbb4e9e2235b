"""The speed scripts under benchmarks/ still run on the current API: each quick one runs on the tiny suite in
a fresh process and prints its report (its numbers are the script's business, not checked here). A script
that an API change broke would otherwise be found only when someone next measures with it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# script -> (its arguments after --suite, a line its report must print)
SCRIPTS = {
    "throughput.py": (["--images", "8", "--batch-size", "8"], "crafting"),
    "adamerging.py": (["--steps", "4", "--every", "2", "--variants", "adamerging_task"], "λ per task"),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_benchmark_script_runs_and_prints_its_report(script, tiny_suite_path, tiny_cache):
    args, expected = SCRIPTS[script]
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--suite", str(tiny_suite_path), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "MERGESEC_CACHE": str(tiny_cache)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert expected in run.stdout, run.stdout[-2000:]


# script -> (arguments naming something that does not exist, what the one line of error must say)
BAD_INPUT = {
    "sweep.py": (["--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
    "backdoor.py": (["--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
    "leaderboard.py": (["--db", "/nonexistent/results.duckdb"], "no results database at /nonexistent"),
}


@pytest.mark.parametrize("script", sorted(BAD_INPUT))
def test_a_benchmark_script_given_a_wrong_name_prints_one_error_line_and_exits_2(script):
    args, expected = BAD_INPUT[script]
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.startswith("error: ") and expected in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr[-2000:]
