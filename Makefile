# The two commands a newcomer types: `make run` and `make test`.
# Both install whatever is missing first (idempotent): Debian packages, the
# Asterisk 22 root (cached outside the repo), the virtualenv, the prompts.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config/hotline.yaml
APT_PACKAGES := mmdebstrap sip-tester espeak-ng sox redis-server postgresql
BIN := $(VENV)/bin
# Test modules run on this many workers, one module per worker at a time (each
# integration module has its own Asterisk on free loopback ports).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile
STAMP := $(VENV)/.installed
KPI_ROWS ?= 1000000  # orders in the KPI bench; make bench KPI_ROWS=20000 for a quick run

.PHONY: setup deps root venv prompts run test unit integration bench check clean

setup: deps root venv prompts

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

root: deps
	@scripts/asterisk-root.sh >/dev/null

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test,speech]'
	@touch $(STAMP)

venv: $(STAMP)

prompts: venv deps
	@$(BIN)/hotline prompts $(CONFIG)

check: venv
	@$(BIN)/hotline check $(CONFIG)

run: setup
	@$(BIN)/hotline up $(CONFIG)

test: setup
	@$(PYTEST) tests

unit: venv
	@$(PYTEST) tests/unit

integration: setup
	@$(PYTEST) tests/integration

bench: setup
	@$(BIN)/python -m bench.kpi_bench --rows $(KPI_ROWS)
	@$(BIN)/python -m bench
	@$(BIN)/python -m bench.queue_bench
	@$(BIN)/python -m bench.speech_bench
	@$(BIN)/python -m bench.orders_bench
	@$(BIN)/python -m bench.transfer_bench

clean:
	rm -rf $(VENV) .pytest_cache
