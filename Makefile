# oauthsmtp developer commands. Each target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test lint demo bench clean

help:
	@echo "make test   - create .venv, install oauthsmtp with its test extras, run pytest"
	@echo "make lint   - ruff (lint + format check) and mypy --strict on the package"
	@echo "make demo   - run the whole product end to end against the local dev provider"
	@echo "make bench  - run the benchmarks in bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	@touch $(STAMP)

# The demo needs only the package and its dev-provider extra.
$(VENV)/.installed-demo: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check oauthsmtp tests examples
	$(BIN)/ruff format --check oauthsmtp tests examples
	$(BIN)/mypy oauthsmtp

demo: $(VENV)/.installed-demo
	$(BIN)/python -m oauthsmtp demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
