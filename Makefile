# sealmq: `make run` starts the broker, `make test` sets up and passes the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test run test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

run: $(STAMP)
	$(BIN)/sealmq serve $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check sealmq tests bench
	$(BIN)/ruff format --check sealmq tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint typecheck
	$(BIN)/pytest -p no:cacheprovider

bench: $(TEST_STAMP)
	bash bench/setup.sh
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
