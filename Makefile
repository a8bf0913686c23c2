# One entry point for every task. Only python3 (>= 3.11) and make are needed:
# the first target that runs creates .venv and installs the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve test test-fast lint lint-imports format typecheck check deploy-check asyncapi \
        asyncapi-check typescript lock bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Flags of `fanout serve` go in ARGS: make serve ARGS="--port 9000" (or FANOUT_PORT=9000 make serve).
ARGS ?=
serve: $(STAMP)
	$(BIN)/fanout serve $(ARGS)

# The suite spread over processes by pytest-xdist (docs/development.md: how the count and the
# distribution were measured). TEST_WORKERS=1 runs it in this one process; ARGS go to pytest.
TEST_WORKERS ?= 6
TEST_ARGS := $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal)
# Bytecode is written (into the ignored __pycache__ folders) even where the shell sets
# PYTHONDONTWRITEBYTECODE: otherwise each worker compiles and assert-rewrites every test
# module again (collection 6.8 -> 2.6 s of CPU a process) and each of the ~250 processes
# the suite starts compiles the project again.
TEST_ENV := PYTHONDONTWRITEBYTECODE=
test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest $(TEST_ARGS) $(ARGS)

# The inner loop: the tests that start no process of their own (no `spawns` mark) and are
# not `slow`, on the suite's Redis, in the same workers.
test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -m "not spawns and not slow" $(TEST_ARGS) $(ARGS)

lint: lint-imports
	$(BIN)/ruff check service tests bench examples scripts
	$(BIN)/ruff format --check service tests bench examples scripts

# The layers of service/ (pyproject [tool.importlinter]): domain <- streams <- {http,
# consumer, reconciler} <- cli, and nothing imports the CLI; and no import circle anywhere
# (service, bench, tests, scripts, examples: tests/test_import_circles.py, ~3 s, no server).
lint-imports: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_import_circles.py

format: $(STAMP)
	$(BIN)/ruff format service tests bench
	$(BIN)/ruff check --fix service tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Dockerfile, compose file, Kubernetes manifests, Prometheus rules, Grafana JSON,
# checked offline. Needs docker-compose and promtool (Debian: docker-compose,
# prometheus); .ci/run installs them.
DEPLOY_STAMP := $(VENV)/.deploy-installed
$(DEPLOY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,deploy]'
	touch $(DEPLOY_STAMP)

deploy-check: $(DEPLOY_STAMP)
	BIN=$(BIN) bash scripts/check-deploy

# docs/asyncapi.json, generated from the msgspec types; the tests fail while it is stale.
asyncapi: $(STAMP)
	$(BIN)/python scripts/asyncapi.py docs/asyncapi.json

# examples/typescript/src/fanout.d.ts, generated from docs/asyncapi.json with
# json-schema-to-typescript (pinned in the example's lockfile); tests/test_typescript.py
# fails while it is stale. Needs node >= 20 and npm.
typescript: asyncapi
	npm ci --prefix examples/typescript --no-audit --no-fund
	node examples/typescript/scripts/types.mjs docs/asyncapi.json examples/typescript/src/fanout.d.ts

# The official AsyncAPI parser (npm, pinned in tools/asyncapi) on docs/asyncapi.json:
# fails on any error-severity diagnostic. Needs node >= 20 and npm.
asyncapi-check:
	npm ci --prefix tools/asyncapi
	node tools/asyncapi/validate.mjs docs/asyncapi.json

# Pin the runtime dependencies for the image: a clean venv, then pip freeze, then the pins
# for older Pythons of requirements.markers.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet .
	{ echo "# Runtime dependencies of voucherify-fanout, pinned; the Dockerfile installs exactly these."; \
	  echo "# Regenerate with 'make lock' after changing [project].dependencies in pyproject.toml."; \
	  $(VENV)-lock/bin/python -m pip freeze --exclude voucherify-fanout; \
	  grep -v '^#' requirements.markers; } > requirements.lock
	rm -rf $(VENV)-lock

# Needs wrk (Debian: apt-get install wrk; installed here when run as root with apt-get) and
# node >= 20 with npm (the Node.js reference, bench/node). Prints ratios; see docs/performance.md.
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
	  { echo "make bench needs wrk: apt-get install wrk (Debian/Ubuntu), brew install wrk (macOS)"; exit 1; }
	@command -v npm >/dev/null || { echo "make bench needs node >= 20 and npm (the Node.js reference)"; exit 1; }
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	npm ci --prefix bench/node --no-audit --no-fund
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.front_door
	$(BIN)/python -m bench.tracing  # FANOUT_TRACING on against off, receiver and consumer
	$(BIN)/python -m bench.tracing_http  # the same over HTTP: fanout serve under wrk

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
