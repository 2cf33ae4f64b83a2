# rollback-pipelines: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/.venv/prefect-home
export TF_CLI_CONFIG_FILE := /dev/null

.PHONY: setup tools demo test test-fast check bench lint clean stack stack-down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# External programs the functional tests drive for real (terraform, nginx).
tools: $(STAMP)
	bash tools/ensure-tools.sh

demo: setup
	$(BIN)/rollback demo

# The suite on two processes (pytest-xdist): one file per unit of work, and the files
# that start a whole local stack on one process, one after the other (tests/conftest.py).
PYTEST_PARALLEL ?= -n 2 --dist loadfile --no-loadscope-reorder

# Lint, format and types first: CI (.ci/run calls this) fails on any of them.
test: setup tools check
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_PARALLEL)

bench: setup tools
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# -- the local stack: Prefect server, work pool, deployments, workers, receiver ---------
# make stack [WORKERS=2] [POSTGRES=1] [SANDBOX=1]; make stack-down stops what it started.
WORKERS             ?= 1
POSTGRES            ?= 0
SANDBOX             ?= 0
STACK_DIR           ?= $(CURDIR)/.stack
STACK_API_PORT      ?= 4200
STACK_RECEIVER_PORT ?= 8080
STACK_MOTO_PORT     ?= 5055
STACK_PG_PORT       ?= 5433
STACK_ARGS = --state-dir $(STACK_DIR) --workers $(WORKERS) \
	--api-port $(STACK_API_PORT) --receiver-port $(STACK_RECEIVER_PORT) \
	--moto-port $(STACK_MOTO_PORT) --pg-port $(STACK_PG_PORT) \
	$(if $(filter 1 true yes,$(POSTGRES)),--postgres) $(if $(filter 1 true yes,$(SANDBOX)),--sandbox)

stack: setup
	$(BIN)/python -m devstack.stack up $(STACK_ARGS)

stack-down:
	$(BIN)/python -m devstack.stack down --state-dir $(STACK_DIR)
