# The two commands a newcomer runs (see README):
#   make demo   - set up a virtual environment and run the demo agent (SQLite, no API key)
#   make test   - set up the same environment and run ruff, mypy --strict and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

LOWEST_VENV ?= .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed-lowest
# The adapter tests: every way in, against the lowest allowed framework versions.
ADAPTER_TESTS := tests/test_middleware.py tests/test_middleware_batched.py tests/test_graphs.py tests/test_guard_node.py \
	tests/test_decorator.py tests/test_process_resume.py tests/test_middleware_thread_hops.py \
	tests/conformance tests/test_examples.py

.PHONY: demo test test-lowest lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/agent-guardrails demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# CI runs this after `make test`: the adapter tests on the lowest framework versions
# pyproject.toml allows (.ci/lowest-versions.txt).
$(LOWEST_STAMP): pyproject.toml .ci/lowest-versions.txt
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -c .ci/lowest-versions.txt -e '.[dev]'
	touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/pytest -q $(ADAPTER_TESTS)

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/agent_overhead.py
	$(BIN)/python benchmarks/telemetry.py

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .agent_guardrails .pytest_cache .mypy_cache .ruff_cache
