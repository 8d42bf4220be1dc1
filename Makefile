# selfheal: build, run and test the stack. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
export COMPOSE
# `make test` runs the smoke and end-to-end tests once under each (test-compose-v1, -v2).
COMPOSE_V1 := docker-compose
COMPOSE_V2 := docker compose
# The watchdog container joins the group that owns the Docker socket (compose `group_add`).
DOCKER_GID ?= $(shell stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)
export DOCKER_GID

.PHONY: prerequisites-up prerequisites-test test-setup test-image-switch help build images up down logs ps test test-unit test-images test-rust test-docker test-smoke test-e2e test-compose-v1 test-compose-v2 test-dependents-compose test-deploy test-vagrant test-podman test-vm lint fmt bench drill screenshot

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# Release binaries are linked statically (glibc's crt-static: no shared libraries mapped, 1 MiB
# less RSS; BENCHMARKS.md, "5: footprint"). The host's target triple is named so the flag
# reaches the binaries and not the proc macros, which cannot be static; they land in
# target/<triple>/release, where docker/offline/build.sh and the benchmarks look.
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE_DIR := target/$(HOST_TRIPLE)/release
STATIC := --target $(HOST_TRIPLE) --config 'target.$(HOST_TRIPLE).rustflags=["-C", "target-feature=+crt-static"]'

build: ## compile release binaries (static)
	cargo build --release --workspace --locked $(STATIC)

images: build ## build every image offline (FROM scratch, nothing pulled), stand-ins included
	bash .ci/prerequisites.sh offline
	bash docker/offline/build.sh

prerequisites-up: ## install what make up needs and is missing (Debian packages), as CI does
	bash .ci/prerequisites.sh up

prerequisites-test: ## install what make test needs and is missing, as CI does
	bash .ci/prerequisites.sh test

# Upstream Prometheus, Alertmanager, node-exporter and Grafana when a registry answers; else the
# offline stand-ins, built here from Debian's packages (which it installs). It says which.
up: prerequisites-up build ## install what is missing, build, start the stack, wait until healthy, print URLs
	bash docker/offline/build.sh demo-app watchdog
	BUILD_OFFLINE=1 bash docker/stack.sh up

down: ## stop and remove the stack (VOLUMES=1 also deletes its data volumes)
	bash docker/stack.sh down

logs: ## last logs of every service (make logs ARGS="-f app" to follow one)
	bash docker/stack.sh logs $(ARGS)

ps: ## the stack's containers
	bash docker/stack.sh ps

fmt: ## format the code
	cargo fmt --all

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	shellcheck tests/docs/links.sh
	bash tests/docs/links.sh
	@# Every relative link in README.md and docs/*.md resolves. The check itself: the README
	@# passes from a copy; with a link to a missing file, or to a missing heading, it must fail.
	bash tests/docs/links.sh --base . <(cat README.md) >/dev/null
	! bash tests/docs/links.sh --base . <(sed 's|](docs/reference.md)|](docs/no-such-page.md)|' README.md) >/dev/null
	! bash tests/docs/links.sh --base . <(sed 's|](docs/reference.md#labels)|](docs/reference.md#no-such-heading)|' README.md) >/dev/null
	cargo clippy --workspace --all-targets --locked -- -D warnings
	shellcheck -x docker/offline/build.sh docker/stack.sh tests/docker/smoke.sh tests/docker/readme_images.sh tests/docker/image_switch.sh tests/e2e/with-stack.sh .ci/run .ci/install-compose-v2.sh .ci/prerequisites.sh tests/setup/check_prerequisites.sh tests/swarm/run.sh tests/dependents/compose.sh tests/lib/poll.sh tests/e2e/run.sh tests/e2e/storm-rules.sh tests/deploy/check.sh tests/deploy/dashboard_nodes.sh tests/podman/run.sh tests/vagrant/vm.sh tests/vagrant/vm-lib.sh tests/vagrant/vm-bad-input.sh tests/vagrant/check.sh deploy/vagrant/provision.sh deploy/vagrant/build-box.sh deploy/vagrant/save-images.sh

# test-vm last: the longest (about 13 min under QEMU's emulation on 2 cores; docs/vm.md,
# BENCHMARKS.md), and everything before it tells more, sooner.
test: prerequisites-test lint test-setup test-rust test-images test-deploy test-compose-v1 test-compose-v2 test-dependents-compose test-image-switch test-vagrant test-swarm test-podman test-vm ## everything CI runs

# The test binaries that need no Docker engine: every crate's lib and bin tests (the healing
# core, the journal, the container task loop with a fake runtime, ...), the CLI's journal and
# error tests, the check that the daemon's modules import each other without a cycle, the demo
# app's routes.
UNIT_TESTS := --lib --bins --test journal_cli --test cli_errors --test routes --test module_graph

test-unit: ## fast tier: the tests that need no Docker (no images either), seconds after a build
	cargo nextest run --workspace --locked --no-fail-fast $(UNIT_TESTS)

test-setup: ## .ci/prerequisites.sh against stubbed system commands
	bash tests/setup/check_prerequisites.sh

test-images: images ## docs/images.md names the versions (and about the sizes) the build made
	bash tests/docker/readme_images.sh
	@# The check itself: a table naming another version must fail it.
	! bash tests/docker/readme_images.sh <(sed 's/`latest`, `0.1.0`/`latest`, `9.9.9`/' docs/images.md) >/dev/null

test-rust: images ## unit and Docker integration tests
	cargo nextest run --workspace --locked --no-fail-fast

test-smoke: images ## `make up` on unique ports and project name: healthy, app answers, scraped
	bash tests/docker/smoke.sh

test-image-switch: images ## Prometheus and Alertmanager switched offline -> upstream-style -> offline: healthy, data kept
	bash tests/docker/image_switch.sh

test-e2e: images ## the stack end to end: faults -> recovery -> metrics, every dashboard query, storm alert
	bash tests/e2e/with-stack.sh

test-compose-v1: images ## test-smoke and test-e2e under Compose v1 (docker-compose 1.29)
	@v=$$($(COMPOSE_V1) version --short 2>/dev/null) && [[ $$v == 1.* ]] || \
		{ echo "make: Compose v1 is missing ('$(COMPOSE_V1) version --short' says '$$v'); install it: sudo apt-get install docker-compose" >&2; exit 1; }
	COMPOSE="$(COMPOSE_V1)" bash tests/docker/smoke.sh
	COMPOSE="$(COMPOSE_V1)" bash tests/e2e/with-stack.sh

test-compose-v2: images ## test-smoke and test-e2e under Compose v2 (docker compose)
	@v=$$($(COMPOSE_V2) version --short 2>/dev/null) && [[ $$v == 2.* ]] || \
		{ echo "make: Compose v2 is missing ('$(COMPOSE_V2) version --short' says '$$v'); install it: bash .ci/install-compose-v2.sh" >&2; exit 1; }
	COMPOSE="$(COMPOSE_V2)" bash tests/docker/smoke.sh
	COMPOSE="$(COMPOSE_V2)" bash tests/e2e/with-stack.sh

test-dependents-compose: images ## dependents (network_mode: service:vpn, depends_on restart: true) under Compose v1 and v2
	cargo build --locked -p selfheal --bin selfheal
	COMPOSE="$(COMPOSE_V1)" bash tests/dependents/compose.sh
	COMPOSE="$(COMPOSE_V2)" bash tests/dependents/compose.sh

test-deploy: ## promtool, amtool and dashboard checks; the dashboard's node variable against a real Prometheus
	bash tests/deploy/check.sh
	cargo build --locked -p selfheal --bin selfheal
	bash docker/offline/build.sh busybox
	bash tests/deploy/dashboard_nodes.sh

test-swarm: images ## selfheal on a real 3-node Swarm (engines in network namespaces; root)
	bash tests/swarm/run.sh

test-podman: ## selfheal on a real rootful Podman (own socket and storage; root): heals, honours, reconnects
	cargo build --locked -p selfheal --bin selfheal
	bash docker/offline/build.sh busybox
	bash tests/podman/run.sh

test-vagrant: ## vagrant validate and shellcheck
	bash tests/vagrant/check.sh

test-vm: images ## bad input refused in one line; the Vagrantfile booted with vagrant-libvirt (KVM, else QEMU emulation): provisioned, healed, re-provisioned, destroyed (root)
	bash .ci/prerequisites.sh vm
	bash tests/vagrant/vm-bad-input.sh
	bash tests/vagrant/vm.sh

bench: images ## benchmarks (about 17 min, not part of test): results in bench/results, method in BENCHMARKS.md
	cargo build --release --locked -p selfheal --bins --examples $(STATIC)
	$(RELEASE_DIR)/examples/bench all --out bench/results

screenshot: images ## regenerate docs/status-page.png and docs/status-page-dark.png from a real run (headless Chromium)
	cargo test --locked -p selfheal --test status_page -- --ignored --exact screenshot --nocapture

drill: ## fault drill against the running stack's app, rounds spaced past the watchdog's backoff (ARGS="--rounds 5 --slo 30s", or "--back-to-back" to test the backoff)
	cargo build --release --locked -p selfheal --bin selfheal $(STATIC)
	$(RELEASE_DIR)/selfheal drill --report .build/drill/report.md $(ARGS)
