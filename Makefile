PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

demo: $(VENV)/.installed
	$(BIN)/python -m experiments.llc_over_training --quick

clean:
	rm -rf $(VENV) .pytest_cache
