#!/usr/bin/env bash
# The dashboard's node dimension against a real Prometheus: three real watchdogs on this
# host, scraped as job "watchdog" the way deploy/swarm/prometheus.yml labels them, two with
# a node label (a, b) and one without (as on a single host). Each watches one busybox
# container of its own (--filter-label); a's and c's get one probe fault, so there are
# recoveries to show. Then, with the dashboard's queries that use $node
# (check_dashboards.py --print-exprs --only-using node):
#   - node=a: every query returns data; each per-node panel returns exactly node a;
#     the container variable lists a's container only;
#   - node=All (the variable's allValue, .*): every query returns data; each per-node panel
#     returns a, b and the series without a node label;
#   - node=All, container=c's: every query returns data, so the unlabelled watchdog's series
#     match the All value (single-host dashboards keep working).
#
# Needs: prometheus (Debian: prometheus), docker, python3, the watchdog binary
# (cargo build -p selfheal --bin selfheal) and the selfheal/busybox image
# (bash docker/offline/build.sh busybox). Everything listens on 127.0.0.1; processes,
# containers, the network and the temp dir are removed on any exit. 20 to 30 s.
#
# Env: SELFHEAL_BIN (target/debug/selfheal), BUSYBOX_IMAGE (selfheal/busybox:latest).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${SELFHEAL_BIN:-$root/target/debug/selfheal}
image=${BUSYBOX_IMAGE:-selfheal/busybox:latest}
checker=$root/tests/deploy/check_dashboards.py
promq=$root/tests/e2e/promq.py
id=selfheal-dash-$$-$RANDOM
nodes=(a b c) # c: scraped without a node label

log() { echo "[dashboard-nodes] $*"; }
fail() {
    echo "[dashboard-nodes] FAIL: $*" >&2
    exit 1
}

missing=()
command -v prometheus >/dev/null || missing+=("prometheus (apt: prometheus)")
command -v docker >/dev/null || missing+=("docker")
[[ -x $bin ]] || missing+=("$bin (cargo build -p selfheal --bin selfheal)")
docker image inspect "$image" >/dev/null 2>&1 || missing+=("image $image (bash docker/offline/build.sh busybox)")
((${#missing[@]} == 0)) || fail "missing: ${missing[*]}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-dashboard-nodes.XXXXXX")
pids=()
containers=()
network=""
cleanup() {
    local pid c
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for c in "${containers[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    [[ -z $network ]] || docker network rm "$network" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=tests/lib/poll.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/poll.sh"
POLL_EVERY=0.5
# wait_until DESC SECS CMD...: polls CMD until it succeeds or SECS pass.
wait_until() {
    local desc=$1 secs=$2
    shift 2
    eventually "$secs" output_to "$tmp/wait.out" "$@" ||
        fail "$desc: still not true after ${secs}s: $(tail -c 600 "$tmp/wait.out")"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- containers and watchdogs ---------------------------------------------------
docker network create "$id" >/dev/null
network=$id
for n in "${nodes[@]}"; do
    # The health file lives in /tmp so a restart (the same command) puts it back after a fault.
    containers+=("$id-$n")
    docker run -d --name "$id-$n" --network "$id" \
        --label selfheal.enable=true --label "dashboard-nodes.test=$id-$n" \
        --label selfheal.probe.http=:8080/health --label selfheal.probe.interval=500ms \
        --label selfheal.start-period=1s --label selfheal.stop-timeout=1s \
        "$image" sh -c 'mkdir -p /tmp/www && echo ok >/tmp/www/health && exec httpd -f -p 8080 -h /tmp/www' \
        >/dev/null
done

declare -A addr
watchdog_address() { grep -ao 'listening on [0-9.]*:[0-9]*' "$tmp/watchdog-$1.log" | tail -n1 | cut -d' ' -f3; }
for n in "${nodes[@]}"; do
    mkdir "$tmp/state-$n"
    env -u SELFHEAL_CONFIG RUST_LOG=info "$bin" watch --listen 127.0.0.1:0 --state-dir "$tmp/state-$n" \
        --filter-label "dashboard-nodes.test=$id-$n" --backoff-initial 100ms \
        >/dev/null 2>"$tmp/watchdog-$n.log" &
    pids+=($!)
done
for n in "${nodes[@]}"; do
    wait_until "watchdog $n logs its address" 15 watchdog_address "$n"
    addr[$n]=$(watchdog_address "$n")
done
log "watchdogs: a=${addr[a]} b=${addr[b]} c=${addr[c]} (c without a node label)"

# --- Prometheus -----------------------------------------------------------------
prom_port=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: watchdog
    static_configs:
      - { targets: ["${addr[a]}"], labels: { node: a } }
      - { targets: ["${addr[b]}"], labels: { node: b } }
      - { targets: ["${addr[c]}"] }
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
export PROM_URL=http://127.0.0.1:$prom_port
started=$(date +%s)

all_up() { [[ $(python3 "$promq" value 'sum(up{job="watchdog"})') == 3.0 ]]; }
wait_until "Prometheus scrapes the three watchdogs" 20 all_up
watched() { [[ $(python3 "$promq" value 'sum(selfheal_container_state{state="healthy"})') == 3.0 ]]; }
wait_until "each watchdog sees its container healthy" 20 watched

# --- one recovery on a and on c -------------------------------------------------
for n in a c; do
    docker exec "$id-$n" rm /tmp/www/health
done
recovered() {
    [[ $(python3 "$promq" value 'count(sum by (instance) (selfheal_recovery_duration_seconds_count) > 0)') == 2.0 ]]
}
wait_until "a's and c's watchdogs record a recovery" 30 recovered
healthy_again() { watched; }
wait_until "the containers are healthy again" 20 healthy_again
log "a and c recovered from a probe fault ($((SECONDS)) s so far)"

# --- the dashboard's node-aware queries -----------------------------------------
# run_queries LABEL --set...: every query that uses $node, as a range query since the start;
# each must return a series. A recovery's samples may reach Prometheus a scrape or two after
# the watchdogs report it, so the queries are asked again for up to 20 s before it fails.
run_queries() {
    local label=$1
    shift
    python3 "$checker" --print-exprs --tsv --only-using node \
        --set __rate_interval=5s --set __interval=1s --set __range=5m "$@" >"$tmp/queries.tsv" ||
        fail "could not extract the dashboard queries"
    local deadline=$((SECONDS + 20)) end total empty n where expr
    while :; do
        end=$(date +%s)
        total=0
        empty=0
        : >"$tmp/empty.txt"
        while IFS=$'\t' read -r where expr; do
            total=$((total + 1))
            n=$(python3 "$promq" series "$expr" "$started" "$end" 1) || fail "query failed: $where: $expr"
            if ((n < 1)); then
                empty=$((empty + 1))
                printf '[dashboard-nodes] no series (%s): %s\n        %s\n' "$label" "$where" "$expr" >>"$tmp/empty.txt"
            fi
        done <"$tmp/queries.tsv"
        ((total > 0)) || fail "no dashboard query uses \$node"
        ((empty == 0 || SECONDS >= deadline)) && break
        sleep 1
    done
    if ((empty > 0)); then
        cat "$tmp/empty.txt" >&2
        fail "$label: $empty of $total queries returned no series after 20 s (listed above)"
    fi
    log "ok: $label: all $total node-aware queries return data"
}

# per_node_panels WANT --set...: each per-node panel's instant result has node labels WANT.
per_node_panels() {
    local want=$1
    shift
    local where expr got count=0
    while IFS=$'\t' read -r where expr; do
        count=$((count + 1))
        got=$(python3 "$promq" label-values "$expr" node) || fail "query failed: $where: $expr"
        [[ $got == "$want" ]] || fail "$where: node labels $got, expected $want: $expr"
    done < <(python3 "$checker" --print-exprs --tsv --only-using node "$@" | grep -F 'per node')
    ((count >= 4)) || fail "expected at least 4 per-node panels, found $count"
    log "ok: $count per-node panels, one series per node: $want"
}

run_queries "node=a" --set node=a
per_node_panels '["a"]' --set node=a
container_var=$(python3 "$checker" --print-exprs --tsv --set node=a | grep -F "variable \$container" | cut -f2)
got=$(python3 "$promq" label-values "count by (container) ($container_var)" container)
[[ $got == "[\"$id-a\"]" ]] || fail "container variable with node=a: $got ($container_var)"
log "ok: the container variable with node=a lists $got"

# All: no --set node, so the checker substitutes the variable's allValue, as Grafana does.
run_queries "node=All"
per_node_panels '["", "a", "b"]'

run_queries "node=All, container=$id-c (no node label)" --set "container=$id-c"

log "passed in $SECONDS s"
