# spacehub: `make run` runs the platform; `make test` installs what the tests need and runs them all.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-unit lint bench images install system clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/spacehub serve

system:
	bash deploy/setup/system.sh

test: $(STAMP) system
	$(PY) -m pytest -ra $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check platform runner tests
	$(VENV)/bin/mypy

images: $(STAMP)
	$(VENV)/bin/spacehub images bootstrap

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
