# carebus: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.13
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv demo local chaos lint validate cfn-lint unit test build deploy openapi clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP) ## Create .venv with Python 3.13 and the development dependencies

demo: $(STAMP) ## Run the scripted scenario on the offline stack (no AWS account, no Docker)
	$(BIN)/carebus demo

local: $(STAMP) ## Serve the whole stack offline for labs (AWS on :4566, API on :3000) until Ctrl-C
	$(BIN)/carebus local up

chaos: $(STAMP) ## Fault-injection run: 1,000 encounters under faults, then the ledger and a verdict
	$(BIN)/python -m carebus_chaos $(CHAOS_ARGS)

lint: $(STAMP) ## Ruff over the code and tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

validate: $(STAMP) ## sam validate --lint over template.yaml
	$(BIN)/sam validate --lint --template template.yaml

cfn-lint: $(STAMP) ## cfn-lint with the serverless rules over template.yaml
	$(BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml

unit: $(STAMP) ## Only the pure unit tests (fast)
	$(BIN)/pytest tests/unit -q

test: lint validate cfn-lint ## Every gate: ruff, sam validate --lint, cfn-lint, pytest
	$(BIN)/pytest -q -n auto --dist loadfile

build: $(STAMP) ## sam build without a container (works offline)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --template template.yaml

deploy: build ## sam build, then sam deploy --config-env dev (needs AWS credentials)
	$(BIN)/sam deploy --config-env dev

openapi: $(STAMP) ## Regenerate docs/openapi.yaml from the domain models
	$(BIN)/python -m carebus_tooling.openapi

clean: ## Remove the venv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache .hypothesis
