# sealmq: `make run` starts the broker, `make test` sets up and passes the suite
# (`make test-fast` leaves out the tests marked slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The JavaScript clients of the tests (mqtt, @stomp/stompjs, rhea), from npm
# into ./node_modules at the versions package-lock.json names.
NODE_STAMP := node_modules/.installed

.PHONY: install install-test install-browser install-java bytecode run test test-fast lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(NODE_STAMP) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the WebSocket tests' clients (apt-get install npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

install-test: $(TEST_STAMP) install-browser install-java

# The browser test runs Debian's chromium; installed when missing (as root, or via sudo).
install-browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# The OpenWire tests run ActiveMQ's own JMS client (Debian's libactivemq-java, with its
# geronimo-jms, hawtbuf and slf4j jars), compiled against with a JDK; installed when missing.
install-java:
	@{ command -v javac >/dev/null && [ -f /usr/share/java/activemq-client.jar ]; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    default-jdk-headless libactivemq-java; }

# The broker's modules compiled ahead, as pip does for a regular install (an editable
# one does not): a start then reads them instead of compiling ~25k lines, which takes
# ~0.25 s and leaves ~0.5 MiB of the compiler's garbage resident. Also where
# PYTHONDONTWRITEBYTECODE is set, which stops Python from caching them itself.
bytecode: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m compileall -q sealmq

run: $(STAMP) bytecode
	$(BIN)/sealmq serve $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check sealmq tests bench
	$(BIN)/ruff format --check sealmq tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint typecheck install-browser install-java bytecode
	$(BIN)/pytest -p no:cacheprovider

# For developers: everything but the tests marked slow (> 5 s each; see tests/conftest.py).
# `make test` and CI run them all.
test-fast: lint typecheck install-browser install-java bytecode
	$(BIN)/pytest -p no:cacheprovider -m "not slow"

bench: $(TEST_STAMP) bytecode
	bash bench/setup.sh
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
