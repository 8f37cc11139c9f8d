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
# make bench-scale: stages deployed in one run (QUICK=1: 100 only)
SCALE_FUNCTIONS ?= 1000

.PHONY: help venv test test-fast test-container ci-deps lint demo local local-down bench bench-record bench-multi bench-multi-record bench-scale bench-zip clean

help:
	@echo "make demo   - deploy examples/basic_lambda twice to a local AWS API (moto); the 2nd run skips"
	@echo "make local  - start a local AWS API (moto, 127.0.0.1:$(LOCAL_AWS_PORT)) with the example's function; prints exports"
	@echo "make local FUNCTION=name [RUNTIME=python3.12 ARCH=arm64] - also your own function, and how to deploy to it"
	@echo "make local-down - stop it"
	@echo "make test   - run the test suite, then the container tests (when podman or docker works here)"
	@echo "make test-fast - the test suite without the slow tests"
	@echo "make test-container - build the Action image (podman) and run it as the GitHub runner does"
	@echo "make ci-deps - install podman, runc, mmdebstrap, uidmap (root, apt-get): what the container tests need"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - performance benchmark against drover 0.7.1 (raw results: .cache/bench/results/)"
	@echo "make bench-record - the same, updating the committed bench/results.json"
	@echo "make bench-multi - ten functions sharing one requirements set: one run vs ten drover 0.7.1 runs"
	@echo "make bench-multi-record - the same, updating the committed bench/multi_results.json"
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

# What the container tests need, installed on purpose (make test never installs anything): podman, runc,
# mmdebstrap, uidmap from the Debian packages when missing (root + apt-get), else a note. .ci/run calls it.
ci-deps:
	@tests/container/install-tools.sh

# Runs when podman (or docker) works here, else prints "container tests: not run" and `make ci-deps`.
# The image is built from the Dockerfile on a local base when no registry is reachable; both are cached
# on the machine (docs/container.md). DROVER_REQUIRE_CONTAINER=1 turns "not run" or a skip into a failure.
test-container: $(STAMP)
	@$(BIN)/python -m tests.container.run_tests

lint: $(STAMP)
	$(BIN)/ruff check drover tests bench scripts examples entrypoint.py
	$(BIN)/ruff format --check drover tests bench scripts examples entrypoint.py
	$(BIN)/mypy drover

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# stdout holds only the export lines: eval "$$(make -s local)". FUNCTION=name also creates your own
# function (RUNTIME, ARCH) with its role, and prints the drover.yml that deploys to it.
RUNTIME ?= python3.12
ARCH ?= x86_64
local: $(STAMP)
	@$(BIN)/python examples/local_aws.py up --port $(LOCAL_AWS_PORT) \
		$(if $(FUNCTION),--function $(FUNCTION) --runtime $(RUNTIME) --arch $(ARCH))

local-down:
	@$(BIN)/python examples/local_aws.py down

# The bench targets write raw results to .cache/bench/results/ (ignored); the -record ones update the
# committed bench/*.json that the docs quote.
bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-record: $(STAMP)
	$(BIN)/python bench/run.py --record

# requirements-zip size against zip -r9: the standard workload and a 178 MB native library (polars)
bench-zip: $(STAMP)
	$(BIN)/python bench/zip_size.py

bench-multi: $(STAMP)
	$(BIN)/python bench/multi_bench.py

# results: bench/scale_results.json (untracked)
bench-scale: $(STAMP)
	$(BIN)/python bench/scale_bench.py --functions $(SCALE_FUNCTIONS) $(if $(QUICK),--quick)

bench-multi-record: $(STAMP)
	$(BIN)/python bench/multi_bench.py --record

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
