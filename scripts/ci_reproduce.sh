#!/usr/bin/env bash
# Reproducibility check of the example submissions (part of `make test`, hence of .ci/run):
# every submissions/<slug>/ is validated, submitted and reproduced on the `digits-ci` suite (digits with one
# backdoor seed instead of three: the cheaper declared configuration issue 20 allows; every track, task,
# attack, method and defense is digits' own), in a throw-away database. Fails (non-zero exit) if any step
# fails or any stored metric does not reproduce.
#
# Both `submit` and `reproduce` start from an empty cache, so the whole check runs under one thread setting
# (the CLI's MERGESEC_THREADS, default 1): the zoo's training is bitwise reproducible on one machine at a
# fixed thread count, not across thread counts (docs/submitting.md). `reproduce all` builds its fresh zoo
# once for all submissions.
#
# Environment: SUITE (default digits-ci), CI_REPRO_OUT (keep the database and logs there; default a temp dir
# that is removed), PYTHON (default .venv/bin/python), MERGESEC_THREADS (torch threads, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
SUITE=${SUITE:-digits-ci}
if [[ -n "${CI_REPRO_OUT:-}" ]]; then
  OUT=$CI_REPRO_OUT; mkdir -p "$OUT"
else
  OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
fi
DB=$OUT/submissions.duckdb
CACHE=$OUT/cache
TIMES=$OUT/times.tsv
rm -rf "$DB" "$DB.wal" "$CACHE"
printf 'step\tsubmission\tseconds\n' > "$TIMES"

step() {  # step NAME SLUG COMMAND...: run, time, log
  local name=$1 slug=$2; shift 2
  local t0=$SECONDS
  echo "== $name $slug"
  "$@"
  printf '%s\t%s\t%s\n' "$name" "$slug" "$((SECONDS - t0))" >> "$TIMES"
}

slugs=()
for dir in submissions/*/; do
  [[ -f "$dir/submission.toml" ]] && slugs+=("$(basename "$dir")")
done
if [[ ${#slugs[@]} -eq 0 ]]; then echo "no submissions to check"; exit 0; fi

for slug in "${slugs[@]}"; do
  step validate "$slug" "$PY" -m benchmark.cli validate "submissions/$slug"
done
for slug in "${slugs[@]}"; do
  step submit "$slug" "$PY" -m benchmark.cli submit "submissions/$slug" --suite "$SUITE" --db "$DB" \
    --cache "$CACHE" --quiet
done
step reproduce all "$PY" -m benchmark.cli reproduce all --suite "$SUITE" --db "$DB" --quiet

echo "== seconds per step (MERGESEC_THREADS=${MERGESEC_THREADS:-1})"
column -t "$TIMES" 2>/dev/null || cat "$TIMES"
echo "reproducibility check passed: ${slugs[*]}"
