# Every target builds what it needs: a venv in .venv with the locked dependencies.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# make local: the loopback port of the local AWS API (0: any free port)
LOCAL_AWS_PORT ?= 5055
# make bench-scale: stages deployed in one run (QUICK=1: 100 only); make bench-multi SCALE=1 runs it too
SCALE_FUNCTIONS ?= 1000

.PHONY: help venv test test-fast test-container container-tools lint demo local local-down bench bench-multi bench-scale clean

help:
	@echo "make demo   - deploy examples/basic_lambda twice to a local AWS API (moto); the 2nd run skips"
	@echo "make local  - start a local AWS API (moto, 127.0.0.1:$(LOCAL_AWS_PORT)) with the example's function; prints exports"
	@echo "make local-down - stop it"
	@echo "make test   - run the test suite, then the container tests"
	@echo "make test-fast - the test suite without the slow tests"
	@echo "make test-container - build the Action image (podman) and run it as the GitHub runner does"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - performance benchmark against drover 0.7.1"
	@echo "make bench-multi - ten functions sharing one requirements set: one run vs ten drover 0.7.1 runs"
	@echo "               SCALE=1: then make bench-scale too"
	@echo "make bench-scale - $(SCALE_FUNCTIONS) stages in one run against Lambda throttled at 10 req/s (QUICK=1: 100)"

venv: $(STAMP)

$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv sync --quiet --frozen --compile-bytecode --extra dev --python $(BIN)/python
	touch $@

# Two pytest runs: the suite (quick, run it often) and the container tests (build and run the image).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not container"
	$(MAKE) --no-print-directory test-container

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow and not network and not container"

# podman, runc, mmdebstrap, uidmap from the Debian packages when missing (root + apt-get), else a note
container-tools:
	@tests/container/install-tools.sh

# The image is built from the Dockerfile on a local base when no registry is reachable; both are cached
# on the machine (docs/container.md). DROVER_REQUIRE_CONTAINER=1 turns a skip into a failure.
test-container: $(STAMP) container-tools
	$(BIN)/python -m pytest -q -m container tests/test_action_container.py

lint: $(STAMP)
	$(BIN)/ruff check drover tests bench scripts examples entrypoint.py
	$(BIN)/ruff format --check drover tests bench scripts examples entrypoint.py
	$(BIN)/mypy drover

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# stdout holds only the export lines: eval "$$(make -s local)"
local: $(STAMP)
	@$(BIN)/python examples/local_aws.py up --port $(LOCAL_AWS_PORT)

local-down:
	@$(BIN)/python examples/local_aws.py down

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-multi: $(STAMP)
	$(BIN)/python bench/multi_bench.py
	$(if $(SCALE),$(MAKE) --no-print-directory bench-scale)

# results: bench/scale_results.json (untracked)
bench-scale: $(STAMP)
	$(BIN)/python bench/scale_bench.py --functions $(SCALE_FUNCTIONS) $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
