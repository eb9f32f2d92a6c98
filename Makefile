# Two commands for a fresh machine:
#   make run   set everything up (engine, package, images) and start a session
#   make test  run every test (unit + integration on the real engine)
# The package and its tools are installed into a virtual environment, .venv (a
# distribution's Python may refuse `pip install`: PEP 668), at the versions of
# requirements/constraints.txt; `make lock` refreshes them. Every target runs .venv's
# python, claude-cage, ruff, mypy and pytest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
export VENV

.PHONY: setup install engine browser ubuntu build run test test-fast unit lint bench lock

install: $(VENV)/.installed

# Made again when pyproject.toml or the constraints change (or without .venv).
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	scripts/make-venv $(PYTHON) $(VENV)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@touch $@
	@echo "installed into $(VENV): 'source $(VENV)/bin/activate' puts claude-cage on PATH"

lock:
	PYTHON=$(PYTHON) scripts/lock

engine:
	scripts/ensure-docker

setup: engine install

# Debian's Chromium, for the desktop tests (driven by Playwright; no browser download).
browser:
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# Debian's debootstrap and Ubuntu's archive keyring: the tests make a real Ubuntu base
# image from Ubuntu's archive (no registry is reachable), once per engine.
ubuntu:
	scripts/ensure-debootstrap

build: setup
	$(BIN)/claude-cage build all

# The session named "run": started the first time, started again when stopped, attached
# to (on a terminal) when running.
run: build
	scripts/run-session run

test: setup browser ubuntu
	scripts/run-tests

# The same without the tests marked slow (pyproject.toml: markers), the desktop's among them.
test-fast: setup ubuntu
	scripts/run-tests -m 'not slow'

unit: install
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check src tests bench scripts/make-seccomp scripts/register-runsc
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict  # src and the unit tests with engine fakes (pyproject.toml: files)

bench: build
	$(BIN)/python bench/run.py
