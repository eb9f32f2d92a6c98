# Two commands for a fresh machine:
#   make run   set everything up (engine, package, images) and start a session
#   make test  run every test (unit + integration on the real engine)
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: setup install engine browser build run test unit lint bench

install:
	$(PIP) install -q -e '.[dev]'

engine:
	scripts/ensure-docker

setup: engine install

# Debian's Chromium, for the desktop tests (driven by Playwright; no browser download).
browser:
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

build: setup
	claude-cage build all

run: build
	claude-cage start

test: setup browser
	scripts/run-tests

unit: install
	$(PYTHON) -m pytest -q tests/unit

lint: install
	ruff check src tests bench scripts/make-seccomp scripts/register-runsc
	ruff format --check src tests bench
	mypy --strict  # src and the unit tests with engine fakes (pyproject.toml: files)

bench: build
	$(PYTHON) bench/run.py
