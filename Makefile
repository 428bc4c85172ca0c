PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Separate environment for the PyTorch/devinterp baselines of experiments.bench.
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin

.PHONY: test lint demo bench paper clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-lint: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[lint]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(BENCH_BIN)/python:
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/pip install --quiet --upgrade pip

$(BENCH_VENV)/.installed-bench: pyproject.toml | $(BENCH_BIN)/python
	$(BENCH_BIN)/pip install --quiet -e ".[bench]"
	touch $@

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

# ruff (rules and format in pyproject.toml): lint, then check the formatting.
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: $(VENV)/.installed
	$(BIN)/python -m experiments.llc_over_training --quick

# Every figure at paper size (both protocols where they differ), resumable:
# rerun after an interruption to continue. Writes figures/paper/.
paper: $(VENV)/.installed
	$(BIN)/python -m experiments.paper

bench: $(BENCH_VENV)/.installed-bench
	$(BENCH_BIN)/python -m experiments.bench --quick

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache
