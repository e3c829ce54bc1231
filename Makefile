# oauthsmtp developer commands. Each target creates .venv when it is missing.
# Another interpreter or folder: make test PYTHON=/usr/bin/python3 VENV=.venv-system
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The venv remembers the interpreter that made it: asking for another one (PYTHON=...) makes
# it anew, rather than quietly running the old one.
PYTHON_ID := $(shell $(PYTHON) -c 'import hashlib, os, sys; print(hashlib.sha256(os.path.realpath(sys.executable).encode()).hexdigest()[:16])' 2>/dev/null)
MADE_BY := $(VENV)/.made-by-$(if $(PYTHON_ID),$(PYTHON_ID),missing-python)

.PHONY: help venv test lint demo bench clean

help:
	@echo "make test   - create .venv, install oauthsmtp with its test extras, run pytest"
	@echo "make lint   - ruff (lint + format check) and mypy --strict on the package"
	@echo "make demo   - run the whole product end to end against the local dev provider"
	@echo "make bench  - run the benchmarks in bench/ (about 5 minutes; writes bench/RESULTS.md)"
	@echo "              BENCH_ARGS='--quick' or '--only widths,scale' for a part of them"
	@echo "PYTHON=/usr/bin/python3 VENV=.venv-system: another interpreter, in its own venv"

$(MADE_BY):
	@test -n "$(PYTHON_ID)" || { echo "make: cannot run $(PYTHON)" >&2; exit 1; }
	rm -rf -- "$(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@touch $@

$(STAMP): $(MADE_BY) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	@touch $(STAMP)

# The demo needs only the package and its dev-provider extra.
$(VENV)/.installed-demo: $(MADE_BY) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

# Byte-compile first: on CPython 3.11 two threads building ASTs at once (a module first
# imported inside a server thread while pytest rewrites or parses in the main thread) can
# fail with "SystemError: AST constructor recursion depth mismatch".
test: $(STAMP)
	@$(BIN)/python -c 'import sys; print("pytest on Python", sys.version.split()[0], "in $(VENV)")'
	@$(BIN)/python -m compileall -q oauthsmtp tests examples bench >/dev/null
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check oauthsmtp tests examples bench
	$(BIN)/ruff format --check oauthsmtp tests examples bench
	$(BIN)/mypy oauthsmtp

demo: $(VENV)/.installed-demo
	$(BIN)/python -m oauthsmtp demo

# Installs the test extra, which holds the benchmark's peer (aiosmtplib).
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf -- "$(VENV)" .pytest_cache .mypy_cache .ruff_cache
