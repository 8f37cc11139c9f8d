# Every target builds what it needs: a venv in .venv with the locked dependencies.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: help venv test test-fast lint demo bench bench-multi clean

help:
	@echo "make demo   - deploy examples/basic_lambda twice to a local AWS API (moto); the 2nd run skips"
	@echo "make test   - run the test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - performance benchmark against drover 0.7.1"
	@echo "make bench-multi - ten functions sharing one requirements set: one run vs ten drover 0.7.1 runs"

venv: $(STAMP)

$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv sync --quiet --frozen --extra dev --python $(BIN)/python
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not network and not container"

lint: $(STAMP)
	$(BIN)/ruff check drover tests bench scripts examples entrypoint.py
	$(BIN)/ruff format --check drover tests bench scripts examples entrypoint.py
	$(BIN)/mypy drover

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-multi: $(STAMP)
	$(BIN)/python bench/multi_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
