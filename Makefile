# Two commands: `make demo` and `make test`. Each creates .venv when missing and installs once.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo readme test lint bench bench-report corpora

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, by exact version: the CPU build from the local wheel store, never a CUDA download.
# The install's duration goes to $(VENV)/install.json, which the demo's report (and so the README) quotes.
$(STAMP): pyproject.toml | $(BIN)/python
	@started=$$(date +%s); \
	$(BIN)/python -m pip install --quiet torch==2.13.0 && \
	$(BIN)/python -m pip install --quiet -e '.[dev,gcp,baseline,dask]' && \
	printf '{"seconds": %s, "finished": "%s"}\n' $$(( $$(date +%s) - started )) "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		> $(VENV)/install.json
	touch $(STAMP)

# SCALE=tiny|small|medium|full (default small), OUT=directory (default demo-out).
demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/zhkd demo --scale $(or $(SCALE),small) \
		--output $(or $(OUT),demo-out) --install-record $(VENV)/install.json

# Copy the latest demo run's account (run line, tables, generated reading) into README.md, between its markers.
readme: $(STAMP)
	$(BIN)/python -m zhkd.demo_readme $(or $(OUT),demo-out)/report.json README.md

test: $(STAMP)
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# Every bench at its documented size (hours on a 2-core machine), then bench/README.md from the results.
BENCHES := augment_bench label_bench forward_bench reader_bench build_bench pretrain_bench length_bench logit_bits_bench baseline_bench
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,gcp,baseline,dask,bench]'
	for b in $(BENCHES); do HF_HUB_OFFLINE=1 $(BIN)/python bench/$$b.py || exit 1; done
	HF_HUB_OFFLINE=1 $(BIN)/python -m torch.distributed.run --standalone --nproc_per_node 2 bench/ddp_bench.py
	$(MAKE) bench-report

# Render bench/README.md's tables from bench/results/*.json (between its bench-report markers).
bench-report: $(STAMP)
	$(BIN)/python bench/report.py

corpora: $(STAMP)
	$(BIN)/zhkd corpora build
