# The two commands a newcomer runs (see README):
#   make demo   - set up a virtual environment and run the demo agent (SQLite, no API key)
#   make test   - set up the same environment and run ruff, mypy --strict and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench clean

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

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/agent_overhead.py
	$(BIN)/python benchmarks/telemetry.py

clean:
	rm -rf $(VENV) .agent_guardrails .pytest_cache .mypy_cache .ruff_cache
