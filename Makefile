# The two commands of the README. Both set up .venv themselves (scripts/setup.sh, idempotent).
SUITE ?= digits
DB ?= results/mergesec.duckdb
REPORT ?= reports/$(SUITE)
CI_OUT ?= .ci-out
# worker processes for `mergesec zoo` and `mergesec run` (the results do not depend on it); `run` prints each
# track's results table itself
WORKERS ?= 2

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/mergesec zoo --suite $(SUITE) --workers $(WORKERS)
	.venv/bin/mergesec run --suite $(SUITE) --db $(DB) --workers $(WORKERS)
	.venv/bin/mergesec analyze --suite $(SUITE) --db $(DB) --out $(REPORT)
	@echo
	@echo "Results: $(DB)   Findings report: $(REPORT)/report.md"
	@echo "Open the leaderboard with:  .venv/bin/mergesec leaderboard --db $(DB)"

# Lint, then the reproducibility check of the example submissions (on the declared CI configuration
# `digits-ci`) and the whole test suite side by side, one core each (scripts/ci_test.sh).
test: setup
	CI_OUT=$(CI_OUT) bash scripts/ci_test.sh

lint: setup
	.venv/bin/ruff check .
