# The project's commands. Each creates or reuses .venv from the lock file first, so on a fresh
# machine `make demo` and `make test` are the only set-up steps.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
N ?= 1000000
UI_PORT ?= 3000
SANDBOX_PORT ?= 8765

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Credentials of the bundled sandbox (not a real org); real connections read their own variables.
export SALESFORCE_SANDBOX_CLIENT_ID ?= flowbridge-sandbox
export SALESFORCE_SANDBOX_CLIENT_SECRET ?= sandbox-secret
export SALESFORCE_SANDBOX_URL ?= http://127.0.0.1:$(SANDBOX_PORT)
# `flowbridge sandbox` serves the other sandboxes (HubSpot, Zendesk, ServiceNow, Slack, SAP OData,
# Google Analytics) on the next ports (connections.yaml's defaults), with these credentials.
export HUBSPOT_SANDBOX_CLIENT_ID ?= flowbridge-sandbox
export HUBSPOT_SANDBOX_CLIENT_SECRET ?= sandbox-secret
export HUBSPOT_SANDBOX_REFRESH_TOKEN ?= na1-sandbox-refresh-token
export ZENDESK_SANDBOX_CLIENT_SECRET ?= sandbox-secret
export SERVICENOW_SANDBOX_PASSWORD ?= sandbox-password
export SERVICENOW_SANDBOX_CLIENT_SECRET ?= sandbox-secret
export SLACK_SANDBOX_CLIENT_SECRET ?= sandbox-client-secret
export SLACK_SANDBOX_REFRESH_TOKEN ?= xoxe-1-sandbox-refresh
export SAP_SANDBOX_PASSWORD ?= sandbox-password
export GA4_SANDBOX_CLIENT_SECRET ?= sandbox-secret
export GA4_SANDBOX_REFRESH_TOKEN ?= 1//sandbox-refresh-token

.PHONY: help install postgres demo test bench ui notebook lint format validate clean

help:
	@echo "make demo   - run the example flow: local Salesforce sandbox -> local lake"
	@echo "make test   - install, start the test servers, run every test"
	@echo "make bench  - N records (default 1,000,000) through Flowbridge and dlt"
	@echo "make ui     - the Dagster UI on http://127.0.0.1:$(UI_PORT) (with the sandbox)"
	@echo "make notebook - Jupyter on notebooks/ (run make demo first)"
	@echo "make lint   - ruff"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

install: $(VENV)/.synced $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml:
	@mkdir -p $(DAGSTER_HOME)
	@printf 'telemetry:\n  enabled: false\npython_logs:\n  managed_python_loggers: [flow_assets]\n' > $@

demo: install
	$(BIN)/flowbridge demo

# The tests start their own servers (sandbox, moto, PostgreSQL as the Redshift stand-in);
# PostgreSQL's server binaries come from Debian's package when the machine lacks them.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

test: install postgres
	$(BIN)/pytest

validate: install
	$(BIN)/flowbridge validate flow_defs

bench: install
	$(BIN)/python -m bench.run --records $(N)

ui: install
	@set -m; \
	$(BIN)/flowbridge sandbox --port $(SANDBOX_PORT) & sandbox=$$!; \
	trap 'kill -TERM $$sandbox 2>/dev/null' EXIT; \
	$(BIN)/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

notebook: install
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser notebooks/explore_opportunities.ipynb

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf data .dagster_home
