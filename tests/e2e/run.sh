#!/usr/bin/env bash
# End-to-end proof that healing is observable, against a running stack:
#   1. inject a crash, a hang and an unhealthy fault into the app (its /chaos/*
#      endpoints) and wait, with deadlines, until the watchdog has recovered it;
#   2. through Prometheus's HTTP API: rate(app_recovery_events_total[5m]) > 0 for
#      the app, the recovery histogram has samples, every query of the Grafana
#      dashboards returns at least one series;
#   3. force a crash loop and see SelfhealRecoveryStorm fire in Prometheus and
#      reach Alertmanager.
#
# It starts nothing and removes nothing: tests/e2e/with-stack.sh brings a stack
# up with the right overrides, runs this, and tears it down. To run it against
# a stack you started yourself, see docs/observability.md ("End-to-end test").
#
# Env (required): COMPOSE_PROJECT_NAME, CHAOS_TOKEN (the app's token).
# Env (optional): APP_URL (default: the app container's published port 8080, read
#   from Docker after every restart), PROM_URL (http://127.0.0.1:9090),
#   AM_URL (http://127.0.0.1:9093), APP_CONTAINER (default: found by compose labels),
#   STORM_WINDOW (5m) and STORM_THRESHOLD (4): must match the storm rule the stack
#   runs (tests/e2e/storm-rules.sh), RECOVERY_TIMEOUT (180 s per fault),
#   STEP_TIMEOUT (120 s per other wait).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

project=${COMPOSE_PROJECT_NAME:?set COMPOSE_PROJECT_NAME to the stack\'s compose project}
token=${CHAOS_TOKEN:?set CHAOS_TOKEN to the app\'s chaos token}
app_url_fixed=${APP_URL:-}
export PROM_URL=${PROM_URL:-http://127.0.0.1:9090}
export AM_URL=${AM_URL:-http://127.0.0.1:9093}
storm_window=${STORM_WINDOW:-5m}
storm_threshold=${STORM_THRESHOLD:-4}
recovery_timeout=${RECOVERY_TIMEOUT:-180}
step_timeout=${STEP_TIMEOUT:-120}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-e2e.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
started=$(date +%s)
app=""

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

promq() { python3 "$here/promq.py" "$@"; }

# Best effort: what a human needs to see when a step fails.
diagnostics() {
    echo "---- diagnostics ----" >&2
    docker ps -a --filter "label=com.docker.compose.project=$project" \
        --format 'table {{.Names}}\t{{.Status}}' >&2 || true
    echo "-- scrape targets:" >&2
    promq targets >&2 || true
    if [[ -n $app ]]; then
        echo "-- recoveries of $app by trigger/result:" >&2
        promq json "sum by (trigger, result) (app_recovery_events_total{container=\"$app\"})" >&2 || true
        echo "-- state of $app:" >&2
        promq json "selfheal_container_state{container=\"$app\"} == 1" >&2 || true
    fi
    local watchdog
    watchdog=$(service_container watchdog 2>/dev/null || true)
    if [[ -n $watchdog ]]; then
        echo "-- last lines of $watchdog:" >&2
        docker logs --tail 40 "$watchdog" 2>&1 | sed 's/^/   /' >&2 || true
    fi
}

fail() {
    printf '[e2e] FAIL: %s\n' "$*" >&2
    diagnostics
    exit 1
}

# shellcheck source=tests/lib/poll.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/poll.sh"
# wait_until DESCRIPTION SECONDS CMD...: runs CMD once a second until it succeeds.
wait_until() {
    local desc=$1 secs=$2
    shift 2
    eventually "$secs" output_to "$tmp/wait.out" "$@" ||
        fail "$desc: still not true after ${secs}s. Last check said: $(tail -c 600 "$tmp/wait.out")"
}

# gt A B: A > B for decimal numbers ("none" counts as 0).
gt() { awk -v a="${1/none/0}" -v b="${2/none/0}" 'BEGIN { exit !(a + 0 > b + 0) }'; }

service_container() {
    local names
    names=$(docker ps --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}')
    if [[ $(wc -w <<<"$names") -ne 1 ]]; then
        echo "expected one running '$1' container in project $project, got: '$names'" >&2
        return 1
    fi
    echo "$names"
}

# ---- conditions polled by wait_until -------------------------------------------

prometheus_ready() { curl -fsS --max-time 3 "$PROM_URL/-/ready"; }

all_targets_up() {
    local out job
    out=$(promq targets)
    echo "$out"
    for job in prometheus app watchdog alertmanager node; do
        grep -qx "$job=up" <<<"$out" || return 1
    done
}

# The app's URL on the host. Without APP_URL it is read from Docker each time:
# a container published on an ephemeral port gets a new one after every restart.
app_url() {
    if [[ -n $app_url_fixed ]]; then
        echo "$app_url_fixed"
        return
    fi
    local addr
    addr=$(docker port "$app" 8080/tcp | grep -m1 -E '^[0-9.]+:[0-9]+$') || {
        echo "app container $app publishes no IPv4 host port for 8080" >&2
        return 1
    }
    echo "http://${addr/0.0.0.0/127.0.0.1}"
}

app_http_healthy() {
    local url
    url=$(app_url) || return 1
    curl -fsS --max-time 2 "$url/health"
}

app_state_healthy() {
    local v
    v=$(promq value "selfheal_container_state{container=\"$app\",state=\"healthy\"}")
    echo "selfheal_container_state{container=\"$app\",state=\"healthy\"} = $v"
    [[ $v == 1.0 ]]
}

app_healthy() { app_http_healthy && app_state_healthy; }

# recoveries TRIGGER_REGEX: total recoveries of the app with a matching trigger.
recoveries() { promq value "sum(app_recovery_events_total{container=\"$app\",trigger=~\"$1\"})"; }

recoveries_above() {
    local now
    now=$(recoveries "$1")
    echo "recoveries{trigger=~\"$1\"} = $now, was $2"
    gt "$now" "$2"
}

started_at() { docker inspect -f '{{.State.StartedAt}}' "$app"; }

restarted_since() { [[ $(started_at) != "$1" ]] && app_http_healthy; }

inject() {
    local code url
    url=$(app_url) || fail "cannot find the app's URL"
    code=$(curl -sS -o "$tmp/inject.out" -w '%{http_code}' --max-time 5 -X POST \
        -H "Authorization: Bearer $token" "$url/chaos/$1") || code="curl error $?"
    [[ $code == 202 ]] || fail "POST $url/chaos/$1 answered $code (expected 202): $(cat "$tmp/inject.out" 2>/dev/null)"
}

# ---- 0. the stack is up and scraped ---------------------------------------------

log "project $project; Prometheus $PROM_URL, Alertmanager $AM_URL, app ${app_url_fixed:-(port read from Docker)}"
wait_until "Prometheus ready at $PROM_URL" "$step_timeout" prometheus_ready
wait_until "all five scrape jobs up (prometheus app watchdog alertmanager node)" "$step_timeout" all_targets_up
if [[ -n ${APP_CONTAINER:-} ]]; then
    app=$APP_CONTAINER
else
    app=$(service_container app) || fail "cannot find the app container (set APP_CONTAINER)"
fi
log "app container: $app at $(app_url)"

storm_query=$(promq rule-query SelfhealRecoveryStorm) || fail "cannot read the rules from Prometheus"
if [[ $storm_query != *"[$storm_window]"*">= $storm_threshold"* ]]; then
    fail "Prometheus runs the storm rule '$storm_query', not window $storm_window / threshold $storm_threshold." \
        "Start the stack with -f tests/e2e/compose.e2e.yaml and a rules file from" \
        "tests/e2e/storm-rules.sh FILE $storm_window $storm_threshold (tests/e2e/with-stack.sh does both)."
fi

wait_until "the watchdog reports $app healthy" "$recovery_timeout" app_healthy

# ---- 1. faults and recoveries ---------------------------------------------------

# fault NAME EXPECTED_TRIGGERS: inject, wait for a recovery with one of the
# expected triggers to be counted, then for the app to be healthy again.
fault() {
    local name=$1 triggers=$2 before t0
    before=$(recoveries "$triggers") || fail "cannot query recoveries from Prometheus"
    t0=$SECONDS
    log "fault '$name': injecting; expecting a recovery with trigger ~ $triggers"
    inject "$name"
    wait_until "recovery of $app from '$name' (trigger ~ $triggers) counted in Prometheus" \
        "$recovery_timeout" recoveries_above "$triggers" "$before"
    wait_until "$app healthy again after '$name'" "$recovery_timeout" app_healthy
    log "fault '$name': recovered and healthy after $((SECONDS - t0))s"
}

fault crash 'died'
fault hang 'probe_failed|unhealthy'
fault unhealthy 'unhealthy|probe_failed'

# ---- 2. what Prometheus shows ---------------------------------------------------

rate=$(promq value "sum(rate(app_recovery_events_total{container=\"$app\"}[5m]))") || fail "query failed"
gt "$rate" 0 || fail "rate(app_recovery_events_total{container=\"$app\"}[5m]) is $rate, expected > 0"
log "ok: rate(app_recovery_events_total{container=\"$app\"}[5m]) = $rate"

count=$(promq value "sum(selfheal_recovery_duration_seconds_count{container=\"$app\"})") || fail "query failed"
gt "$count" 0 || fail "selfheal_recovery_duration_seconds_count{container=\"$app\"} is $count, expected > 0"
inf=$(promq value "sum(selfheal_recovery_duration_seconds_bucket{container=\"$app\",le=\"+Inf\"})") || fail "query failed"
gt "$inf" 0 || fail "selfheal_recovery_duration_seconds_bucket{le=\"+Inf\"} for $app is $inf, expected > 0"
log "ok: recovery histogram has $count samples"

p95_has_value() {
    local v
    v=$(promq value "container:selfheal_recovery_duration_seconds:p95_1h{container=\"$app\"}")
    echo "container:selfheal_recovery_duration_seconds:p95_1h = $v"
    gt "$v" 0
}
wait_until "recording rule p95 time to recover is a number > 0 for $app" "$step_timeout" p95_has_value
log "ok: $(cat "$tmp/wait.out")"

# Every dashboard query, with Grafana's variables replaced as the checker does,
# as a range query over this test run (what a panel would draw).
python3 "$root/tests/deploy/check_dashboards.py" --print-exprs \
    --set "container=$app" --set __rate_interval=1m --set __interval=15s --set __range=1h \
    >"$tmp/queries.jsonl" || fail "could not extract the dashboard queries"
end=$(date +%s)
empty=0
total=0
while IFS=$'\t' read -r where expr; do
    total=$((total + 1))
    n=$(promq series "$expr" "$started" "$end" 15) || fail "query failed: $where: $expr"
    if [[ $n -lt 1 ]]; then
        empty=$((empty + 1))
        printf '[e2e] no series: %s\n        %s\n' "$where" "$expr" >&2
    fi
done < <(python3 -c '
import json, sys
for line in sys.stdin:
    q = json.loads(line)
    print(q["where"] + "\t" + q["expr"])' <"$tmp/queries.jsonl")
((total > 0)) || fail "no dashboard queries found"
((empty == 0)) || fail "$empty of $total dashboard queries returned no series (listed above)"
log "ok: all $total dashboard queries return data"

# ---- 3. crash loop -> recovery storm alert -> Alertmanager ----------------------

storm_state() { promq prom-alert SelfhealRecoveryStorm "$app"; }
storm_firing() { [[ $(storm_state) == firing ]]; }
storm_in_alertmanager() { [[ $(promq am-alert SelfhealRecoveryStorm "$app") == active ]]; }

recent=$(promq value "sum(increase(app_recovery_events_total{container=\"$app\"}[$storm_window]))") || fail "query failed"
if awk -v r="${recent/none/0}" -v t="$storm_threshold" 'BEGIN { exit !(r + 0.5 < t) }'; then
    # Below the threshold: the alert must not fire yet, or it proves nothing.
    state=$(storm_state) || fail "cannot read alerts from Prometheus"
    [[ $state != firing ]] || fail "SelfhealRecoveryStorm already fires for $app with only $recent recoveries in $storm_window"
    log "storm alert not firing before the crash loop ($recent recoveries in the last $storm_window)"
else
    log "note: $recent recoveries in the last $storm_window already reach the threshold; skipping the not-yet-firing check"
fi

crashes=${STORM_CRASHES:-$((storm_threshold + 1))}
log "crash loop: $crashes crashes"
for ((i = 1; i <= crashes; i++)); do
    wait_until "$app answering before crash $i" "$recovery_timeout" app_http_healthy
    before=$(started_at) || fail "docker inspect $app failed"
    inject crash
    wait_until "$app restarted after crash $i" "$recovery_timeout" restarted_since "$before"
done

wait_until "SelfhealRecoveryStorm firing in Prometheus for $app" "$step_timeout" storm_firing
log "ok: SelfhealRecoveryStorm firing in Prometheus"
wait_until "SelfhealRecoveryStorm for $app received by Alertmanager ($AM_URL)" "$step_timeout" storm_in_alertmanager
log "ok: SelfhealRecoveryStorm active in Alertmanager"

log "e2e passed in $(($(date +%s) - started))s"
