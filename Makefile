# Local development, demo and CI entry points. Everything a target needs (Debian
# packages, the virtualenv, Kafka/ZooKeeper jars, running services) is installed or
# started by the target itself, idempotently.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m devstack
# Addresses of the services in force (local or external), written by `stack up`.
WITH_ENV := set -a && source .stack/env && set +a &&
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help install up down status migrate demo test chaos bench lint format

help:
	@echo "make demo [ARGS=--exit]  run the whole system and place demo trades"
	@echo "make test                lint + the whole test suite (starts what it needs)"
	@echo "make up | down | status  the local stack (PostgreSQL, ZooKeeper, Kafka, Redis)"
	@echo "make chaos               every fault scenario with full load (tests/chaos)"
	@echo "make bench [QUICK=1]     the benchmark suite -> benchmarks/results/, BENCHMARKS.md"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
	$(STACK) install

up: install
	$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: install
	$(STACK) status

migrate: up
	$(WITH_ENV) $(PY) manage.py migrate --noinput
	$(WITH_ENV) $(PY) manage.py collectstatic --noinput --verbosity 0

demo: migrate
	$(WITH_ENV) $(PY) manage.py demo $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Starts the services that are not running yet, runs lint and pytest, and stops
# only what it started (a developer's running stack is left alone).
test: install
	@started=$$(mktemp); \
	$(STACK) up --record "$$started" && \
	( $(WITH_ENV) $(MAKE) --no-print-directory lint && $(VENV)/bin/pytest $(PYTEST_ARGS) ); \
	rc=$$?; \
	$(STACK) down --only-from "$$started"; \
	rm -f "$$started"; \
	exit $$rc

# The whole chaos suite with full load; `make test` runs its CI-sized subset.
chaos: install
	@started=$$(mktemp); \
	$(STACK) up --record "$$started" && \
	( $(WITH_ENV) CHAOS_FULL=1 $(VENV)/bin/pytest tests/chaos -s $(PYTEST_ARGS) ); \
	rc=$$?; \
	$(STACK) down --only-from "$$started"; \
	rm -f "$$started"; \
	exit $$rc

# The benchmark suite (benchmarks/): runs an isolated copy of the system on the
# local stack, writes benchmarks/results/<date>[-quick].json and regenerates
# BENCHMARKS.md. QUICK=1 is the smoke run (under 5 minutes). Stops only what it started.
bench: install
	@started=$$(mktemp); \
	$(STACK) up --record "$$started" && \
	( $(WITH_ENV) $(PY) -m benchmarks $(if $(QUICK),--quick) $(ARGS) ); \
	rc=$$?; \
	$(STACK) down --only-from "$$started"; \
	rm -f "$$started"; \
	exit $$rc
