#!/usr/bin/env bash
# Brings up the offline stack under a unique compose project with the e2e
# overrides, runs tests/e2e/run.sh against it and always tears it down again
# (containers, networks, volumes), whatever happened.
#
# Needs the images (make images). Grafana is not started (it is not needed and
# cannot be pulled offline).
# Env: COMPOSE (default: "docker compose" if available, else docker-compose),
#      STORM_WINDOW (5m), STORM_THRESHOLD (4), KEEP_STACK=1 to leave it up for debugging.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if [[ -z ${COMPOSE:-} ]]; then
    if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
read -r -a compose_cmd <<<"$COMPOSE"

export COMPOSE_PROJECT_NAME="selfheal-e2e-$$-$RANDOM"
# The stack's watchdog heals this project's containers only, never anything else on the host.
export SELFHEAL_FILTER_LABEL=com.docker.compose.project=$COMPOSE_PROJECT_NAME
export STORM_WINDOW=${STORM_WINDOW:-5m}
export STORM_THRESHOLD=${STORM_THRESHOLD:-4}
CHAOS_TOKEN=${CHAOS_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export CHAOS_TOKEN

gen=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-e2e-rules.XXXXXX")
# compose.yaml and the override interpolate these on every call, `down` included.
export SELFHEAL_E2E_STORM_RULES=$gen/selfheal-storm.yml
export GRAFANA_ADMIN_PASSWORD=${GRAFANA_ADMIN_PASSWORD:-e2e-$RANDOM$RANDOM}
compose() { "${compose_cmd[@]}" --project-directory "$root" -f "$root/compose.yaml" -f "$here/compose.e2e.yaml" "$@"; }

cleanup() {
    local rc=$?
    if [[ ${KEEP_STACK:-0} == 1 ]]; then
        echo "[e2e] KEEP_STACK=1: leaving project $COMPOSE_PROJECT_NAME up; remove it with:"
        echo "      COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME SELFHEAL_E2E_STORM_RULES=$gen/selfheal-storm.yml CHAOS_TOKEN=x GRAFANA_ADMIN_PASSWORD=x $COMPOSE -f compose.yaml -f tests/e2e/compose.e2e.yaml down -v --remove-orphans"
    else
        compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || echo "[e2e] warning: compose down failed for $COMPOSE_PROJECT_NAME" >&2
        rm -rf "$gen"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/storm-rules.sh" "$gen/selfheal-storm.yml" "$STORM_WINDOW" "$STORM_THRESHOLD"
# Prometheus runs as uid 10001 in its image.
chmod 0755 "$gen"
chmod 0644 "$gen/selfheal-storm.yml"

# Free loopback ports (compose.yaml reads APP_PORT, ... ), so a stack already
# running on the default ports is not disturbed.
read -r APP_PORT WATCHDOG_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export APP_PORT WATCHDOG_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT
export SELFHEAL_BIND=127.0.0.1
DOCKER_GID=${DOCKER_GID:-$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)}
export DOCKER_GID

# The images docker/stack.sh up would use (upstream, or the offline stand-ins here).
eval "$(bash "$root/docker/stack.sh" image-env)"
echo "[e2e] starting project $COMPOSE_PROJECT_NAME"
compose up -d --no-build app watchdog prometheus alertmanager node-exporter

url_of() { # SERVICE PORT -> http://host:port as published on the host
    local addr
    addr=$(compose port "$1" "$2" | tail -n 1)
    [[ -n $addr ]] || { echo "[e2e] $1:$2 is not published on the host" >&2; return 1; }
    echo "http://${addr/0.0.0.0/127.0.0.1}"
}
# The app's URL is not fixed here: run.sh reads it from Docker after each restart.
PROM_URL=$(url_of prometheus 9090)
AM_URL=$(url_of alertmanager 9093)
export PROM_URL AM_URL

bash "$here/run.sh"
