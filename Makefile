# PAO: the two commands of the quick start are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON := .venv/bin/python
STACK := $(PYTHON) infra/local/stack.py
export SAM_CLI_TELEMETRY := 0

.PHONY: help install up down dev test fmt clippy unit templates forms integration schemathesis bench load demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## install the project's tools (.venv, infra/node_modules)
	@infra/local/install.sh

up: install ## start the whole local stack, wait until healthy, print its URLs
	@$(STACK) up

down: ## stop everything `make up` started
	@if [ -x $(PYTHON) ]; then $(STACK) down; fi

dev: install ## up, follow the logs until Ctrl-C, then down
	@$(STACK) dev

test: install fmt clippy unit templates forms integration ## every check of the project

fmt: ## formatting
	cargo fmt --all --check

clippy: ## lints, warnings denied
	cargo clippy --workspace --all-targets -- -D warnings

unit: ## unit and in-process handler tests (with the feature set the local stack builds with, so it reuses them)
	cargo test --features pao/test-build

templates: install ## SAM template (lint and schema) and every ASL file
	.venv/bin/sam validate --lint
	.venv/bin/sam validate --region us-east-1
	infra/node_modules/.bin/asl-validator $(addprefix --json-path ,$(wildcard statemachines/*.asl.json))

forms: install ## the portal's validator accepts and refuses each form case as the requests API does
	node --test catalog/portal/

integration: install ## integration tests, the schemathesis run and the log search, on a local stack of their own
	@infra/local/integration.sh

schemathesis: install ## the API fuzzed against its OpenAPI document, on the `make up` stack
	@test -f .local/dev/stack.env || { echo "no stack: run make up first" >&2; exit 1; }
	@set -a && . .local/dev/stack.env && set +a && PAO_SCHEMATHESIS_REPORTS=.local/dev/schemathesis infra/local/schemathesis.sh

bench: install ## benchmarks: catalog (criterion), then submission latency on a local stack of their own
	cargo bench -p pao --bench catalog
	@infra/local/bench.sh

load: install ## 1,000 submissions at once through the API of a stack of its own, checked for loss and duplicates
	@infra/local/load.sh

demo: ## an automated request, a manual one through JIRA, then the whole eks-app-stack and its rollback (make up first)
	@$(PYTHON) infra/local/demo.py
