# selfheal: build, run and test the stack. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
export COMPOSE

.PHONY: help build images up down logs test test-rust test-deploy test-vagrant lint fmt bench drill

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## compile release binaries
	cargo build --release --workspace --locked

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test: lint test-rust test-deploy test-vagrant ## everything CI runs

test-rust: images ## unit and Docker integration tests
	cargo nextest run --workspace --locked --no-fail-fast

test-deploy: ## promtool, amtool and dashboard checks
	bash tests/deploy/check.sh

test-vagrant: ## vagrant validate and shellcheck
	bash tests/vagrant/check.sh
