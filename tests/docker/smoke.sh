#!/usr/bin/env bash
# Smoke test of `make up`: the stack started by docker/stack.sh under a unique project name and
# unique host ports gets every started service healthy, the app answers on 127.0.0.1, and
# Prometheus scrapes it (up{job="app"} == 1 through its HTTP API). Removes everything after,
# volumes included, pass or fail. Needs the images (`make images`), curl and jq.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
stack=$root/docker/stack.sh
export COMPOSE_PROJECT_NAME="selfheal-smoke-$$-$RANDOM"
export GRAFANA_ADMIN_PASSWORD="smoke-$RANDOM$RANDOM"
export UP_TIMEOUT=${UP_TIMEOUT:-180}
# This stack's watchdog heals this stack only, not other opted-in containers on the host.
export SELFHEAL_FILTER_LABEL="com.docker.compose.project=$COMPOSE_PROJECT_NAME"

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

# Free loopback ports, so a stack already running on the default ports is not disturbed.
read -r APP_PORT WATCHDOG_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT < <(bash "$stack" free-ports 5)
export APP_PORT WATCHDOG_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT
export SELFHEAL_BIND=127.0.0.1

cleanup() {
    VOLUMES=1 bash "$stack" down >/dev/null 2>&1 || echo "smoke: cleanup of $COMPOSE_PROJECT_NAME failed" >&2
}
trap cleanup EXIT

# shellcheck source=tests/lib/poll.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/poll.sh"

echo "smoke: project $COMPOSE_PROJECT_NAME, app on 127.0.0.1:$APP_PORT, prometheus on 127.0.0.1:$PROMETHEUS_PORT"
up_log=$(bash "$stack" up 2>&1) || { echo "$up_log" >&2; fail "the stack did not come up healthy"; }
echo "$up_log"
# It says which images it used: the upstream ones, or the offline stand-ins and why.
grep -Eq '^stack: (upstream images: |no registry answered \(|offline images )' <<<"$up_log" ||
    fail "docker/stack.sh up did not say which images it used"

mapfile -t started < <(bash "$stack" ps -q 2>/dev/null | xargs -r docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' | sort)
[[ ${#started[@]} -ge 4 ]] || fail "expected at least app, prometheus, alertmanager, node-exporter; started: ${started[*]}"
for service in app prometheus alertmanager node-exporter; do
    [[ " ${started[*]} " == *" $service "* ]] || fail "$service was not started"
done
for service in "${started[@]}"; do
    health=$(bash "$stack" health "$service")
    [[ $health == healthy ]] || fail "$service is $health"
    echo "smoke: ok: $service healthy"
done

body=$(curl -fsS --max-time 5 "http://127.0.0.1:$APP_PORT/") || fail "app does not answer on 127.0.0.1:$APP_PORT"
[[ $(jq -r .name <<<"$body") == demo-app ]] || fail "unexpected answer from the app: $body"
curl -fsS --max-time 5 "http://127.0.0.1:$APP_PORT/health" >/dev/null || fail "app /health is not 200"
echo "smoke: ok: app answers on 127.0.0.1:$APP_PORT"

# up{job=...} is 1 once a scrape succeeded (scrape interval 5s).
scraped() {
    local value
    value=$(curl -fsS --max-time 5 "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" \
        --data-urlencode "query=up{job=\"$1\"}" | jq -r '.data.result[0].value[1] // empty') || return 1
    [[ $value == 1 ]]
}
for job in app alertmanager node; do
    eventually 60 scraped "$job" || fail "Prometheus does not scrape $job: up{job=\"$job\"} != 1"
    echo "smoke: ok: prometheus scrapes $job (up{job=\"$job\"} == 1)"
done
if [[ " ${started[*]} " == *" watchdog "* ]]; then
    eventually 60 scraped watchdog || fail "Prometheus does not scrape watchdog"
    echo "smoke: ok: prometheus scrapes watchdog"
    app_name=$(bash "$stack" ps -q app | xargs docker inspect -f '{{.Name}}')
    watches_app() {
        curl -fsS --max-time 5 "http://127.0.0.1:$WATCHDOG_PORT/api/v1/containers" | grep -q -- "${app_name#/}"
    }
    eventually 60 watches_app || fail "the watchdog does not list ${app_name#/} in /api/v1/containers"
    echo "smoke: ok: the watchdog watches ${app_name#/}"
fi
echo "smoke: PASS (${started[*]})"
