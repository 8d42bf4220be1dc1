#!/usr/bin/env bash
# Dependents under compose (COMPOSE, e.g. `docker-compose` or `docker compose`): a `vpn`
# service (busybox httpd, the watchdog's probe, restart: unless-stopped) and two apps with
# `network_mode: service:vpn`, each serving its own port on vpn's address. For each way vpn
# starts again (frozen -> the watchdog restarts it; its process killed -> Docker's restart
# policy; `docker restart` by hand) both apps serve again and each has one more `dependency`
# incident. Then `up -d --force-recreate vpn`: one container per service, no name conflict,
# apps serving, and a following `up -d` recreates nothing. Under Compose v2 also
# `depends_on: {db: {condition: service_healthy, restart: true}}`: restarting db restarts the
# app after db is healthy; the app without `restart: true` is untouched.
# Runs the watchdog binary SELFHEAL_BIN (default target/debug/selfheal) scoped to the project
# with --watch-all.
# Removes everything after, pass or fail. Needs the images (`make images`), curl and jq.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
read -r -a compose <<<"${COMPOSE:-docker compose}"
bin=${SELFHEAL_BIN:-$root/target/debug/selfheal}
project="shdeps-$$-$RANDOM"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-deps.XXXXXX")
wd_pid=
image=selfheal/busybox:latest

fail() {
    echo "dependents-compose: FAIL: $*" >&2
    [[ -f $tmp/watchdog.log ]] && tail -60 "$tmp/watchdog.log" >&2
    exit 1
}
say() { echo "dependents-compose: $*"; }

cleanup() {
    [[ -n $wd_pid ]] && kill "$wd_pid" 2>/dev/null && wait "$wd_pid" 2>/dev/null
    "${compose[@]}" -p "$project" -f "$tmp/compose.yaml" down -v --remove-orphans -t 1 >/dev/null 2>&1 || true
    # Anything the project left (a parked container of a failed recreate).
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=tests/lib/poll.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/poll.sh"
POLL_EVERY=0.2

version=$("${compose[@]}" version --short 2>/dev/null) ||
    fail "${compose[*]} does not work (Compose v1: apt-get install docker-compose; v2: bash .ci/install-compose-v2.sh)"
v2=false
[[ $version == 2.* || $version == v2.* ]] && v2=true
docker image inspect "$image" >/dev/null 2>&1 || fail "$image is missing: run make images"
[[ -x $bin ]] || fail "$bin is missing: cargo build -p selfheal"

vpn_labels='      selfheal.probe.http: ":8080/health"
      selfheal.start-period: "0s"'
app() { # NAME PORT [extra lines]
    cat <<EOF
  $1:
    image: $image
    command: ["httpd", "-f", "-p", "$2", "-h", "/www"]
    init: true
    stop_grace_period: 1s
${3:-}
EOF
}
{
    echo "services:"
    cat <<EOF
  vpn:
    image: $image
    restart: unless-stopped
    stop_grace_period: 1s
    labels:
$vpn_labels
EOF
    app app1 8081 "    network_mode: service:vpn"
    app app2 8082 "    network_mode: service:vpn"
    if $v2; then
        cat <<EOF
  db:
    image: $image
    restart: unless-stopped
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 1s
      retries: 2
EOF
        app web 8080 "    depends_on:
      db: {condition: service_healthy, restart: true}"
        app worker 8080 "    depends_on:
      db: {condition: service_healthy}"
    fi
} >"$tmp/compose.yaml"

dc() { "${compose[@]}" -p "$project" -f "$tmp/compose.yaml" "$@"; }
# By compose's labels: the same under v1 and v2, stopped containers included.
cid() {
    docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1"
}
ip_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(cid "$1")"; }
serves() { curl -fsS --max-time 1 -o /dev/null "http://$(ip_of vpn):$1/health"; }
started() { docker inspect -f '{{.State.StartedAt}}' "$(cid "$1")"; }
epoch() { date -d "$1" +%s.%N; }
api() { curl -fsS --max-time 2 "http://127.0.0.1:$port$1"; }
name_of() { docker inspect -f '{{.Name}}' "$(cid "$1")" | cut -c2-; }
dependency_incidents() { # SERVICE: recovered dependency incidents of its container name
    api "/api/v1/incidents?container=$(name_of "$1")" |
        jq '[.[] | select(.trigger == "dependency" and .outcome == "recovered")] | length'
}
state() { api /api/v1/containers | jq -r --arg n "$(name_of "$1")" '.[] | select(.name == $n) | .state'; }
has_incidents() { [[ $(dependency_incidents "$1") == "$2" ]]; }
is_state() { [[ $(state "$1") == "$2" ]]; }
one_container_each() {
    local s
    for s in vpn app1 app2; do
        [[ $(cid "$s" | wc -l) == 1 ]] || return 1
    done
    [[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$project" --filter name=selfheal-replaced) ]]
}

say "project $project under ${compose[*]} $version"
dc up -d >/dev/null 2>&1 || fail "up"
# --watch-all within the project, and no selfheal.enable label: a watchdog of another stack on
# this host (which heals what carries selfheal.enable) leaves these containers alone.
"$bin" watch --listen 127.0.0.1:0 --state-dir "$tmp/state" --watch-all \
    --filter-label "com.docker.compose.project=$project" >"$tmp/watchdog.log" 2>&1 &
wd_pid=$!
listening() { grep -q "listening on" "$tmp/watchdog.log"; }
eventually 30 listening || fail "the watchdog did not start"
port=$(grep -o 'listening on [0-9.]*:[0-9]*' "$tmp/watchdog.log" | head -1 | sed 's/.*://')
for s in vpn app1 app2; do
    eventually 30 is_state "$s" healthy || fail "$s not healthy"
done
eventually 10 serves 8081 || fail "app1 does not serve"
eventually 10 serves 8082 || fail "app2 does not serve"
via=$(api /api/v1/containers | jq -r --arg n "$(name_of app1)" '.[] | select(.name == $n) | .depends_on[0].via')
[[ $via == network ]] || fail "app1 depends_on via is $via"
say "ok: graph: app1 depends on vpn via network"

round=0
parent_restarted() { # HOW
    local before
    before=$(started vpn)
    case $1 in
        frozen) docker kill -s STOP "$(cid vpn)" >/dev/null ;;
        killed)
            docker run --rm --pid host --network none "$image" kill -9 \
                "$(docker inspect -f '{{.State.Pid}}' "$(cid vpn)")"
            ;;
        by-hand) docker restart -t 1 "$(cid vpn)" >/dev/null ;;
    esac
    newer() { [[ $(started vpn) != "$before" ]] && [[ $(docker inspect -f '{{.State.Running}}' "$(cid vpn)") == true ]]; }
    eventually 60 newer || fail "$1: vpn did not start again"
    round=$((round + 1))
    for p in 8081 8082; do
        eventually 60 serves "$p" || fail "$1: port $p not served again"
    done
    for s in app1 app2; do
        eventually 30 has_incidents "$s" "$round" || fail "$1: $s has $(dependency_incidents "$s") dependency incidents, want $round"
    done
    say "ok: vpn $1: app1 and app2 serve again, one dependency incident each"
}
parent_restarted frozen
parent_restarted killed
parent_restarted by-hand

# Recreated parent.
dc up -d --force-recreate vpn >/dev/null 2>&1 || fail "up --force-recreate vpn"
for p in 8081 8082; do
    eventually 60 serves "$p" || fail "recreate: port $p not served again"
done
eventually 30 one_container_each || fail "recreate: not one container per service: $(dc ps)"
ids() { for s in vpn app1 app2; do cid "$s"; done; }
before=$(ids)
dc up -d >/dev/null 2>&1 || fail "up -d after the recreate"
if [[ $before != "$(ids)" ]]; then
    # Compose v2 hashes a `network_mode: service:X` service's config with X's container id, so
    # it recreates dependents made before X's recreate once more (observed with 2.40); then
    # the end state must hold and a further `up -d` must be still.
    $v2 || fail "a following up -d recreated: $before -> $(ids)"
    say "note: compose $version recreated the apps once more on the following up -d"
    for p in 8081 8082; do
        eventually 60 serves "$p" || fail "after up -d: port $p not served"
    done
    eventually 30 one_container_each || fail "after up -d: not one container per service"
    before=$(ids)
    dc up -d >/dev/null 2>&1 || fail "a second up -d"
    [[ $before == "$(ids)" ]] || fail "a second up -d recreated: $before -> $(ids)"
fi
say "ok: vpn recreated: one container per service, apps serve, up -d settles"

if $v2; then
    label=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.depends_on"}}' "$(cid web)")
    [[ $label == *db:service_healthy:true* ]] || fail "web's compose depends_on label is $label"
    eventually 30 is_state web healthy || fail "web not healthy"
    web_before=$(started web)
    worker_before=$(started worker)
    db_before=$(started db)
    docker restart -t 1 "$(cid db)" >/dev/null
    db_up() { [[ $(started db) != "$db_before" ]]; }
    eventually 30 db_up || fail "db did not start again"
    eventually 30 has_incidents web 1 || fail "web has $(dependency_incidents web) dependency incidents, want 1"
    # When Docker first said db is healthy after its restart, from its own event.
    db_healthy_at=$(docker events --since "$(epoch "$(started db)")" --until "$(date +%s.%N)" \
        --filter "container=$(cid db)" --filter event=health_status --format '{{.TimeNano}} {{.Action}}' |
        awk '/healthy$/ && !/unhealthy/ { printf "%.9f\n", $1 / 1e9; exit }')
    [[ -n $db_healthy_at ]] || fail "no health_status: healthy event of db after its restart"
    web_start=$(epoch "$(started web)")
    awk -v a="$web_start" -v b="$db_healthy_at" 'BEGIN { exit !(a > b) }' ||
        fail "web restarted at $web_start, before db was healthy ($db_healthy_at)"
    [[ $(started web) != "$web_before" ]] || fail "web was not restarted"
    [[ $(started worker) == "$worker_before" ]] || fail "worker (no restart: true) was restarted"
    say "ok: depends_on restart: true: web restarted after db was healthy; worker untouched"
fi
say "PASS"
