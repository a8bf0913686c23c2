# One entry point for every task. Only python3 (>= 3.11) and make are needed:
# the first target that runs creates .venv and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve test lint format typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/fanout serve

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

format: $(STAMP)
	$(BIN)/ruff format service tests bench
	$(BIN)/ruff check --fix service tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Needs wrk (Debian: apt-get install wrk). Prints ratios; see README "Performance".
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.memory

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
