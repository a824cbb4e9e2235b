# The two commands of the README. Both set up .venv themselves (scripts/setup.sh, idempotent).
SUITE ?= digits
DB ?= results/mergesec.duckdb
REPORT ?= reports/$(SUITE)
CI_OUT ?= .ci-out
# worker processes for `mergesec run` (the results do not depend on it)
WORKERS ?= 2

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/mergesec zoo --suite $(SUITE)
	.venv/bin/mergesec run --suite $(SUITE) --db $(DB) --workers $(WORKERS)
	.venv/bin/mergesec results --track merge --suite $(SUITE) --db $(DB)
	.venv/bin/mergesec results --track transfer --suite $(SUITE) --db $(DB)
	.venv/bin/mergesec results --track backdoor --suite $(SUITE) --db $(DB)
	.venv/bin/mergesec analyze --suite $(SUITE) --db $(DB) --out $(REPORT)
	@echo
	@echo "Results: $(DB)   Findings report: $(REPORT)/report.md"
	@echo "Open the leaderboard with:  .venv/bin/mergesec leaderboard --db $(DB)"

# Lint, the reproducibility check of the example submissions on digits (builds the digits zoo, which the
# slow tests then reuse), then the whole test suite.
test: setup
	.venv/bin/ruff check .
	CI_REPRO_OUT=$(CI_OUT) bash scripts/ci_reproduce.sh
	MERGESEC_TEST_CACHE=$(CI_OUT)/cache MERGESEC_ARTIFACTS=$(CI_OUT)/artifacts .venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .
