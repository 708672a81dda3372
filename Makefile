# carebus: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.13
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The deploy rehearsal's engine, MiniStack, in a venv of its own: it runs the functions with its interpreter.
ENGINE_VENV := .venv-rehearse
ENGINE_REQUIREMENTS := local/carebus_tooling/engine-requirements.txt
ENGINE_STAMP := $(ENGINE_VENV)/.installed
# checkov in a venv of its own: it pins a boto3 that conflicts with aws-sam-cli's.
CHECKOV_VENV := .venv-checkov
CHECKOV_REQUIREMENTS := local/carebus_tooling/checkov-requirements.txt
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv demo local chaos bench cost lint validate cfn-lint checkov unit test build rehearse e2e deploy contract clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# pip runs --quiet for about a minute: one line first says what is happening.
$(STAMP): pyproject.toml
	@echo "Installing carebus's development environment into $(VENV) (first run, or pyproject.toml changed: about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# A tool pinned in a venv of its own, whose pins clash with the development ones: $(call tool_venv,DIR,REQUIREMENTS)
define tool_venv
	@echo "Installing $(2) into $(1)"
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --upgrade pip
	$(1)/bin/pip install --quiet -r $(2)
	touch $(1)/.installed
endef

$(ENGINE_STAMP): $(ENGINE_REQUIREMENTS)
	$(call tool_venv,$(ENGINE_VENV),$(ENGINE_REQUIREMENTS))

$(CHECKOV_STAMP): $(CHECKOV_REQUIREMENTS)
	$(call tool_venv,$(CHECKOV_VENV),$(CHECKOV_REQUIREMENTS))

venv: $(STAMP) ## Create .venv with Python 3.13 and the development dependencies

demo: $(STAMP) ## Run the scripted scenario on the offline stack (no AWS account, no Docker)
	$(BIN)/carebus demo

local: $(STAMP) ## Serve the whole stack offline for labs (AWS on :4566, API on :3000) until Ctrl-C
	$(BIN)/carebus local up

chaos: $(STAMP) ## Fault-injection run: 1,000 encounters under faults, then the ledger and a verdict
	$(BIN)/python -m carebus_chaos $(CHAOS_ARGS)

bench: $(STAMP) ## Measure the performance budget into docs/performance.md (BENCH_ARGS=--skip-test-phases: quicker)
	$(BIN)/python -m carebus_bench $(BENCH_ARGS)

cost: $(STAMP) ## What 1M encounters cost on AWS, from counted calls, into docs/cost.md (COST_ARGS: volume, mix)
	$(BIN)/python -m carebus_bench.cost --write $(COST_ARGS)

lint: $(STAMP) ## Ruff over the code and tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

validate: $(STAMP) ## sam validate --lint over template.yaml
	$(BIN)/sam validate --lint --template template.yaml

cfn-lint: $(STAMP) ## cfn-lint with the serverless rules over template.yaml
	$(BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml

checkov: $(CHECKOV_STAMP) ## checkov over template.yaml (SAM resources included); skips are in each resource's Metadata
	$(CHECKOV_VENV)/bin/checkov --skip-download --framework cloudformation --quiet --compact -f template.yaml

unit: $(STAMP) ## Only the pure unit tests (fast)
	$(BIN)/pytest tests/unit -q

# The static checks run beside pytest (they take a core for a few seconds; pytest takes minutes); each
# lab is a work unit of its own, every other test module one, the whole-stack ones handed out first
# (tests/conftest.py); four workers on two cores, because half the suite waits on the servers and processes it
# starts. Either failing fails the target, once both are done.
test: $(STAMP) $(CHECKOV_STAMP) ## Every gate: ruff, sam validate --lint, cfn-lint, checkov, pytest
	@$(MAKE) --no-print-directory --output-sync=target -j4 lint validate cfn-lint checkov & checks=$$!; \
	$(BIN)/pytest -q -n 4 --dist loadgroup --no-loadscope-reorder; tests=$$?; \
	wait $$checks; static=$$?; \
	if [ $$static -ne 0 ]; then echo "make test: a static check failed (see above)" >&2; fi; \
	exit $$(( tests || static ))

build: $(STAMP) ## sam build without a container (works offline)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/sam build --template template.yaml

rehearse: $(STAMP) $(ENGINE_STAMP) ## The real sam build, deploy, delete and deploy again into MiniStack, with the e2e suite (no AWS)
	$(BIN)/python -m carebus_tooling.rehearse --engine-python $(ENGINE_VENV)/bin/python

e2e: $(STAMP) ## The end-to-end suite against a deployed stack: CAREBUS_STACK=carebus-dev make e2e
	@test -n "$$CAREBUS_STACK" || { echo "set CAREBUS_STACK to a deployed stack's name (make test runs it offline)"; exit 2; }
	$(BIN)/pytest local/carebus_client/e2e -q -ra -p no:cacheprovider

deploy: build ## sam build, then sam deploy --config-env dev (needs AWS credentials)
	$(BIN)/sam deploy --config-env dev

contract: $(STAMP) ## Regenerate the request and event contracts (template.yaml Models and Event catalog, docs/openapi.yaml, docs/partner-openapi.yaml, docs/events.md) from the domain models
	$(BIN)/python -m carebus_tooling.contract

clean: ## Remove the venv and build output
	rm -rf $(VENV) $(ENGINE_VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .ruff_cache .hypothesis
