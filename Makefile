# Tenantry. `make dev` runs the product, `make test` runs every test tier;
# both install what is missing first. `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

# Silo tenants need a terraform or tofu binary; when the machine has neither,
# OpenTofu is built from the Go module proxy into the cache (a few minutes, once).
iac: $(STAMP) ## make sure a terraform / tofu binary is there for dedicated infrastructure
	@command -v tofu >/dev/null || command -v terraform >/dev/null \
		|| test -x "$${TENANTRY_CACHE_DIR:-$$HOME/.cache/tenantry}/bin/tofu" \
		|| $(BIN)/python -m libs.devstack.tofu install

# The trace backend of `make dev` and the end-to-end tests, built from the Go
# module proxy into the cache (several minutes, once).
jaeger: $(STAMP) ## make sure the Jaeger binary is there (traces of `make dev` and the tests)
	@test -x "$${TENANTRY_JAEGER_BINARY:-$${TENANTRY_CACHE_DIR:-$$HOME/.cache/tenantry}/bin/jaeger}" \
		|| $(BIN)/python -m libs.devstack.jaeger install

# The alert rules' checks (deploy/prometheus) need promtool: built once from the
# Go module proxy into the cache when it is not on PATH (a few minutes, once).
promtool: $(STAMP) ## make sure promtool is there for the alert rules' checks and unit tests
	@command -v promtool >/dev/null \
		|| test -x "$${TENANTRY_CACHE_DIR:-$$HOME/.cache/tenantry}/bin/promtool" \
		|| nice $(BIN)/python -m libs.devstack.promtool

# The chart's checks (deploy/helm/tenantry) need helm: pinned by tools/helm/go.mod,
# built with `go install tool` into the cache when it is not on PATH (a few minutes,
# once; again only when go.sum changes).
helm: $(STAMP) ## make sure helm is there for the Helm chart's checks
	@command -v helm >/dev/null || nice $(BIN)/python -m libs.devstack.helm >/dev/null

proto: $(STAMP) ## regenerate every language from proto/ (Python into libs/gen; Go, TypeScript and docs/api by buf.gen.yaml); never edit them by hand
	$(BIN)/buf format -w
	$(BIN)/python -m libs.codegen

# Breaking changes are checked on images (files by path), so a change of the
# workspace's module layout is not itself a break.
proto-check: $(STAMP) ## fail if proto is unformatted, unlinted, breaking, or any generated code is stale
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	@if git rev-parse --verify -q main >/dev/null && git ls-tree -r --name-only main | grep -q '^proto/.*\.proto$$'; then \
		echo "buf breaking against main"; tmp=$$(mktemp -d) \
		&& $(BIN)/buf build -o $$tmp/head.binpb && $(BIN)/buf build '.git#branch=main' -o $$tmp/main.binpb \
		&& $(BIN)/buf breaking $$tmp/head.binpb --against $$tmp/main.binpb --config buf.yaml; \
		status=$$?; rm -rf $$tmp; exit $$status; fi
	$(BIN)/python -m libs.codegen --check

lint: $(STAMP) proto-check ## ruff (format and lint), mypy and the proto checks
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy libs services orchestrator

test: $(STAMP) iac jaeger promtool helm lint ## every test tier: unit, workflow, integration, end-to-end
	$(BIN)/pytest -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

IDP ?= local
KEYCLOAK_MODE ?= realm
# The ports `make dev` listens on (all on 127.0.0.1), e.g. `make dev GRPC_PORT=50052`.
GRPC_PORT ?= 50051
TEMPORAL_PORT ?= 7233
UI_PORT ?= 8233
AWS_PORT ?= 5050
SMTP_PORT ?= 1025
KEYCLOAK_PORT ?= 8080
CODEC_PORT ?= 8234
OTLP_PORT ?= 4317
JAEGER_PORT ?= 16686
# Each process's Prometheus endpoint: METRICS_PORT for the first, +1 for each next one.
METRICS_PORT ?= 9464
dev: $(STAMP) iac jaeger ## run the embedded stack and every process until Ctrl-C (IDP=keycloak KEYCLOAK_MODE=organization GRPC_PORT=50051 ...)
	@$(BIN)/python -m libs.devstack --idp $(IDP) --keycloak-mode $(KEYCLOAK_MODE) \
		--grpc-port $(GRPC_PORT) --temporal-port $(TEMPORAL_PORT) --ui-port $(UI_PORT) \
		--aws-port $(AWS_PORT) --smtp-port $(SMTP_PORT) --keycloak-port $(KEYCLOAK_PORT) \
		--codec-port $(CODEC_PORT) --otlp-port $(OTLP_PORT) --jaeger-port $(JAEGER_PORT) \
		--metrics-port $(METRICS_PORT)

bench: $(STAMP) iac jaeger ## one table: throughput and CPU against a raw-Temporal baseline (N=100 tenants), watchers and reads, a registry of 100,000; then identity latency per provider, recovery from a killed worker, codec CPU, tracing and metrics on/off, scale-out per queue
	$(BIN)/python -m tests.bench --tenants $${N:-100}
	$(BIN)/python -m tests.bench.identity --tenants 20
	$(BIN)/python -m tests.bench.recovery --rounds 10
	$(BIN)/python -m tests.bench.codec --runs 1000
	$(BIN)/python -m tests.bench.observability --tenants 30
	$(BIN)/python -m tests.bench.scale --tenants $${SCALE_N:-40}

bench-scale: $(STAMP) iac ## scale-out of one domain's worker: 1, 2 and 4 replicas with 500 ms per activity, each queue's backlog, one of two replicas killed (DOMAIN=idp SCALE_N=40)
	$(BIN)/python -m tests.bench.scale --domain $${DOMAIN:-idp} --tenants $${SCALE_N:-40}

clean: ## remove local state (the dev stack's data) and caches
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install iac jaeger promtool helm proto proto-check lint test dev bench bench-scale clean
