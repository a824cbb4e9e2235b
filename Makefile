# The two commands of the README. Both set up .venv themselves (scripts/setup.sh, idempotent).
SUITE ?= digits
DB ?= results/mergesec.duckdb

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/mergesec run --suite $(SUITE) --db $(DB)
	@echo
	@echo "Results are in $(DB). Open the leaderboard with:  .venv/bin/mergesec leaderboard --db $(DB)"

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .
