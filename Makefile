PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Separate environment for the PyTorch/devinterp baselines of experiments.bench.
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin

.PHONY: test test-slow test-all lint demo bench paper docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# The whole suite also tests the xarray/ArviZ export (the analysis extra).
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,analysis]"
	touch $@

$(VENV)/.installed-lint: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[lint]"
	touch $@

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[docs]"
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

# The fast tier (under 3 minutes on 2 cores): unit tests, contracts, small
# statistical tests and the docstring examples.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not slow"

# The slow tier: long statistical runs, experiment smoke runs, several
# processes, the optional extras.
test-slow: $(VENV)/.installed-all
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m slow

# Everything (about 10 minutes on 2 cores): what CI runs after make lint.
test-all: test test-slow

# ruff (rules and format in pyproject.toml): lint, check the formatting, then
# the import walls between samplers, engine, domain and experiments.
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

demo: $(VENV)/.installed
	$(BIN)/python -m experiments.llc_over_training --quick

# Every figure at paper size (both protocols where they differ), resumable:
# rerun after an interruption to continue. Writes figures/paper/.
paper: $(VENV)/.installed
	$(BIN)/python -m experiments.paper

# The documentation site (MkDocs, Material, mkdocstrings) into site/; any
# warning (a broken reference, a missing page) fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(BENCH_VENV)/.installed-bench
	$(BENCH_BIN)/python -m experiments.bench --quick

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache
