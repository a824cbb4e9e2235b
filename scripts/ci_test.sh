#!/usr/bin/env bash
# `make test` (hence CI): ruff, then the example submissions' reproducibility check (scripts/ci_reproduce.sh)
# and the whole test suite side by side. Both are single-threaded torch work (MERGESEC_THREADS=1), so on a
# 2-core machine each gets a core and the wall time is the longer of the two instead of their sum; each has
# its own cache and database, so neither sees the other's artefacts. The check's log is printed when both are
# done, then pytest's closing line again, so the last line is the test count. Exit status: non-zero if
# either failed.
#
# Environment: CI_OUT (default .ci-out: the check's database and logs, and the tests' digits zoo cache),
# PYTHON (default .venv/bin/python).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${CI_OUT:-.ci-out}
mkdir -p "$OUT"
"$(dirname "$PY")/ruff" check . || exit 1

CI_REPRO_OUT=$OUT/reproduce bash scripts/ci_reproduce.sh > "$OUT/reproduce.log" 2>&1 &
repro=$!
trap 'kill $repro 2>/dev/null' EXIT

MERGESEC_TEST_CACHE=$OUT/cache MERGESEC_ARTIFACTS=$OUT/artifacts "$PY" -m pytest -q 2>&1 | tee "$OUT/pytest.log"
tests=${PIPESTATUS[0]}
wait $repro
check=$?
trap - EXIT

echo
echo "== reproducibility check of the example submissions (exit $check)"
cat "$OUT/reproduce.log"
echo
echo "== pytest (exit $tests)"
tail -n 1 "$OUT/pytest.log"
[[ $tests -eq 0 && $check -eq 0 ]]
