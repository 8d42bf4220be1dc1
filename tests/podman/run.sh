#!/usr/bin/env bash
# selfheal watching a real Podman (rootful) through `podman system service`, on its own socket
# and storage (temp dirs), never the Docker engine's containers. The third-party busybox image
# comes from Docker (`docker save | podman load`). With the real `selfheal watch` binary
# (SELFHEAL_BIN, default target/debug/selfheal) pointed at the Podman socket:
#   - `selfheal check` names the engine (Podman and its version);
#   - an own-probe freeze (`podman kill --signal STOP` on an httpd with selfheal.probe.http) is
#     healed: Podman's kill event names no signal, and it must not read as a user's stop;
#   - a crash of a container without a restart policy is healed;
#   - a user's `podman kill` and a `podman pause` are honoured (not restarted);
#   - a `container:` network dependent is restarted after its parent;
#   - a HEALTHCHECK turning unhealthy is healed: without systemd Podman runs no checks, so this
#     script runs `podman healthcheck run` on a schedule (a bounded loop) and the real Podman
#     emits its real per-check health events;
#   - incidents, metrics and the status page show the Podman containers;
#   - the service killed while watched: /healthz degraded, no incident opened, and the watchdog
#     reconnects when the service is back.
# BENCH_OUT=FILE appends one line per measured round (freeze to serving, health reaction).
# Needs root, podman and runc (.ci/prerequisites.sh test), curl, jq, and selfheal/busybox in
# Docker (docker/offline/build.sh busybox). Removes everything it made, pass or fail.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${SELFHEAL_BIN:-$root/target/debug/selfheal}
image=selfheal/busybox:latest
tmp=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-podman.XXXXXX")
sock=$tmp/podman.sock
svc_pid=
wd_pid=
hc_pid=
port=

fail() {
    echo "podman: FAIL: $*" >&2
    [[ -f $tmp/watchdog.log ]] && tail -40 "$tmp/watchdog.log" >&2
    exit 1
}
say() { echo "podman: $*"; }

# Podman on this test's own storage, runtime state, temp dir and network configs. runc, and
# ulimits set here: crun cannot set RLIMIT_NOFILE without CAP_SYS_RESOURCE, and rejects
# cgroup v1 hybrid hosts.
cat >"$tmp/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
events_logger = "file"
EOF
export CONTAINERS_CONF=$tmp/containers.conf
storage=(--root "$tmp/root" --runroot "$tmp/run" --tmpdir "$tmp/libpod" --network-config-dir "$tmp/networks")
pm() { podman "${storage[@]}" "$@"; }

start_service() {
    # Not through pm: $! is then podman's own pid, and stopping it stops the service.
    podman "${storage[@]}" system service --time=0 "unix://$sock" >>"$tmp/service.log" 2>&1 &
    svc_pid=$!
    answers() { curl -fsS --max-time 1 --unix-socket "$sock" -o /dev/null http://podman/_ping 2>/dev/null; }
    eventually 30 answers ||
        fail "podman system service did not answer on $sock: $(tail -5 "$tmp/service.log")"
}
stop_service() {
    [[ -n $svc_pid ]] || return 0
    kill "$svc_pid" 2>/dev/null || true
    wait "$svc_pid" 2>/dev/null || true
    svc_pid=
}

cleanup() {
    set +e
    [[ -n $hc_pid ]] && kill "$hc_pid" 2>/dev/null && wait "$hc_pid" 2>/dev/null
    [[ -n $wd_pid ]] && kill "$wd_pid" 2>/dev/null && wait "$wd_pid" 2>/dev/null
    # Twice: Podman 4.3.1's `rm -af` may take a network parent before its dependent, refuse
    # it, and remove it on a second pass.
    pm rm -af -t 0 >/dev/null 2>&1 || pm rm -af -t 0 >"$tmp/rm.log" 2>&1 || { echo "podman: cleanup: podman rm -af:" >&2; cat "$tmp/rm.log" >&2; }
    stop_service
    # The storage may hold mounts of its own: unmounted before the directory goes.
    findmnt -rn -o TARGET | grep "^$tmp/" | sort -r | xargs -r umount -l
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=tests/lib/poll.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/poll.sh"
POLL_EVERY=0.2

[[ $(id -u) == 0 ]] || fail "needs root (rootful Podman)"
command -v podman >/dev/null || fail "podman is missing: bash .ci/prerequisites.sh test"
command -v runc >/dev/null || fail "runc is missing: bash .ci/prerequisites.sh test"
docker image inspect "$image" >/dev/null 2>&1 || fail "$image is missing: bash docker/offline/build.sh busybox"
[[ -x $bin ]] || fail "$bin is missing: cargo build -p selfheal --bin selfheal"

docker save "$image" | pm load -q >/dev/null || fail "podman load of $image"
start_service
say "Podman $(pm version --format '{{.Server.Version}}') on $sock"

check_out=$("$bin" check --docker-host "unix://$sock" 2>&1) || true
[[ $check_out == *"engine Podman "* ]] || fail "selfheal check does not name Podman: $check_out"
say "ok: selfheal check: $(grep '^engine' <<<"$check_out")"

"$bin" watch --docker-host "unix://$sock" --listen 127.0.0.1:0 --state-dir "$tmp/state" \
    --backoff-initial 200ms --backoff-reset 1s >"$tmp/watchdog.log" 2>&1 &
wd_pid=$!
listening() { grep -q "listening on" "$tmp/watchdog.log" 2>/dev/null; }
eventually 30 listening || fail "the watchdog did not start"
port=$(grep -o 'listening on [0-9.]*:[0-9]*' "$tmp/watchdog.log" | head -1 | sed 's/.*://')
api() { curl -fsS --max-time 2 "http://127.0.0.1:$port$1"; }
connected() { grep -q "connected to Docker.*engine=Podman" "$tmp/watchdog.log"; }
eventually 30 connected || fail "the watchdog did not connect to Podman"

# Fast probes; no start period, so a fault soon after a start counts.
probe_labels=(--label selfheal.enable=true --label selfheal.probe.http=:8080/health
    --label selfheal.probe.interval=300ms --label selfheal.probe.timeout=200ms
    --label selfheal.probe.failures=2 --label selfheal.start-period=0s --label selfheal.stop-timeout=1)
run() { pm run -d --stop-timeout 1 "$@" >/dev/null || fail "podman run $*"; }
run --name web "${probe_labels[@]}" "$image"
run --name crash --label selfheal.enable=true --label selfheal.start-period=0s "$image"
run --name victim --label selfheal.enable=true "$image"
run --name frozen --label selfheal.enable=true "$image"
run --name vpn "${probe_labels[@]}" "$image"
run --name app --network container:vpn --label selfheal.enable=true "$image" \
    httpd -f -p 8081 -h /www
# /tmp is a fresh tmpfs each start: a restart cures what /tmp/sick says.
run --name hc --label selfheal.enable=true --label selfheal.start-period=0s --tmpfs /tmp \
    --health-cmd 'test ! -e /tmp/sick' --health-interval 0 --health-retries 1 "$image"

# The Podman scheduler of health checks: every 300 ms, for at most 4 minutes.
(
    for _ in $(seq 800); do
        timeout 5 podman "${storage[@]}" healthcheck run hc >/dev/null 2>&1 || true
        sleep 0.3
    done
) &
hc_pid=$!

state() { api /api/v1/containers | jq -r --arg n "$1" '.[] | select(.name == $n) | .state'; }
is_state() { [[ $(state "$1") == "$2" ]]; }
for c in web crash victim frozen vpn app hc; do
    eventually 30 is_state "$c" healthy || fail "$c is $(state "$c"), not healthy"
done
say "ok: seven Podman containers watched and healthy"

started() { pm inspect -f '{{.State.StartedAt}}' "$1"; }
running() { [[ $(pm inspect -f '{{.State.Running}}' "$1") == true ]]; }
ip_of() { pm inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
serves() { curl -fsS --max-time 1 -o /dev/null "http://$(ip_of "$1"):$2/health"; }
restarted() { [[ $(started "$1") != "$2" ]] && running "$1"; }
incidents() { # CONTAINER TRIGGER: its incidents with that trigger
    api "/api/v1/incidents?container=$1" | jq --arg t "$2" '[.[] | select(.trigger == $t)] | length'
}
has_incident() { [[ $(incidents "$1" "$2") -ge 1 ]]; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }


# 1. Own probe: a frozen httpd. Podman's kill event names no signal.
rounds=${FREEZE_ROUNDS:-1}
for r in $(seq "$rounds"); do
    before=$(started web)
    t0=$(now)
    pm kill --signal STOP web >/dev/null
    eventually 60 restarted web "$before" || fail "frozen web was not restarted (state $(state web))"
    eventually 30 serves web 8080 || fail "web does not serve after its restart"
    took=$(since "$t0")
    [[ -n ${BENCH_OUT:-} ]] && echo "freeze_to_serving $r $took" >>"$BENCH_OUT"
    eventually 30 is_state web healthy || fail "web not healthy after round $r"
done
if [[ -n ${BENCH_OUT:-} ]]; then
    # The floor: the same freeze healed at once by a plain API restart, no detection.
    run --name floor "$image"
    for r in $(seq "$rounds"); do
        t0=$(now)
        pm kill --signal STOP floor >/dev/null
        curl -fsS --max-time 30 --unix-socket "$sock" -X POST "http://podman/containers/floor/restart?t=1" ||
            fail "floor restart"
        eventually 30 serves floor 8080 || fail "floor does not serve"
        echo "floor_freeze_restart_to_serving $r $(since "$t0")" >>"$BENCH_OUT"
    done
fi
eventually 10 has_incident web probe_failed || fail "no probe incident for web"
say "ok: frozen httpd (kill --signal STOP) restarted by the own probe and serving ($took s)"

# 2. A crash (the process killed from the host; no restart policy).
before=$(started crash)
kill -9 "$(pm inspect -f '{{.State.Pid}}' crash)"
eventually 60 restarted crash "$before" || fail "crashed container was not restarted (state $(state crash))"
eventually 10 has_incident crash died || fail "no died incident for crash"
say "ok: a crash without a restart policy healed"

# 3. A user's kill and pause are honoured.
pm kill victim >/dev/null
eventually 30 is_state victim stopped || fail "victim killed by the user is $(state victim), not stopped"
pm pause frozen >/dev/null
eventually 30 is_state frozen paused || fail "paused container is $(state frozen), not paused"
# The other faults are healed within seconds; these stay as the user left them meanwhile.
before_web=$(started web)
pm kill --signal STOP web >/dev/null
eventually 60 restarted web "$before_web" || fail "second freeze not healed"
[[ $(pm inspect -f '{{.State.Status}}' victim) == exited ]] || fail "victim was started again"
[[ $(pm inspect -f '{{.State.Status}}' frozen) == paused ]] || fail "the paused container was changed"
[[ $(incidents victim died) == 0 ]] || fail "victim's kill opened an incident"
pm unpause frozen >/dev/null
eventually 30 is_state frozen healthy || fail "unpaused container is $(state frozen)"
say "ok: podman kill and podman pause honoured"

# 4. A network dependent restarted after its parent.
before_vpn=$(started vpn)
before_app=$(started app)
pm kill --signal STOP vpn >/dev/null
eventually 60 restarted vpn "$before_vpn" || fail "frozen vpn not restarted"
eventually 60 restarted app "$before_app" || fail "app (network container:vpn) not restarted after vpn"
eventually 30 serves vpn 8081 || fail "app does not serve in vpn's namespace again"
eventually 30 has_incident app dependency || fail "no dependency incident for app"
say "ok: container:vpn dependent restarted after its parent, serving"

# 5. HEALTHCHECK: Podman's per-check health events.
for r in $(seq "${HEALTH_ROUNDS:-1}"); do
    before=$(started hc)
    restarts_before=$(grep -c 'restarting container=hc ' "$tmp/watchdog.log" || true)
    t0=$(now)
    pm exec hc touch /tmp/sick
    eventually 60 restarted hc "$before" || fail "unhealthy hc not restarted (state $(state hc))"
    eventually 30 is_state hc healthy || fail "hc is $(state hc) after its restart"
    line=$(grep 'restarting container=hc ' "$tmp/watchdog.log" | sed -n "$((restarts_before + 1))p")
    [[ -n $line ]] || fail "no restart of hc in the watchdog's log"
    reaction=$(grep -o 'reaction=[0-9.]*[mµn]*s' <<<"$line")
    begun=$(date -d "$(cut -d' ' -f1 <<<"$line")" +%s.%N)
    if [[ -n ${BENCH_OUT:-} ]]; then
        {
            echo "health_event_to_restart $r ${reaction#reaction=}"
            echo "health_fault_to_restart $r $(echo "$begun - $t0" | bc)"
            # The floor of the reaction: the one inspect a Podman health event costs.
            echo "floor_inspect $r $(curl -fsS -o /dev/null -w '%{time_total}' --unix-socket "$sock" http://podman/containers/hc/json)"
        } >>"$BENCH_OUT"
    fi
done
eventually 10 has_incident hc unhealthy || fail "no unhealthy incident for hc: $(api /api/v1/incidents?container=hc)"
say "ok: unhealthy (podman healthcheck run) restarted and healthy again ($reaction)"

# 6. Incidents, metrics and the status page show the Podman containers.
metrics=$(api /metrics)
for c in web crash hc app; do
    grep -q "app_recovery_events_total{container=\"$c\"" <<<"$metrics" || fail "no recovery metric for $c"
done
page=$(curl -fsS --max-time 2 -H 'Accept: text/html' "http://127.0.0.1:$port/")
for c in web crash victim frozen vpn app hc; do
    grep -q ">$c<" <<<"$page" || fail "the status page does not show $c"
done
say "ok: incidents, metrics and the status page show the Podman containers"

# 7. The service goes away mid-stream, then comes back.
open_before=$(api /api/v1/incidents | jq 'length')
stop_service
degraded() { ! curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; }
eventually 30 degraded || fail "/healthz still ok with the Podman service gone"
curl -sS --max-time 2 "http://127.0.0.1:$port/healthz" | jq -e '.docker_up == false' >/dev/null ||
    fail "/healthz does not say the engine is down"
grep -q "Docker connection lost" "$tmp/watchdog.log" || fail "no line saying the connection was lost"
start_service
healthy_again() { curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; }
eventually 60 healthy_again || fail "the watchdog did not reconnect"
[[ $(api /api/v1/incidents | jq 'length') == "$open_before" ]] || fail "an incident was opened during the outage"
for c in web crash vpn app hc; do
    eventually 30 is_state "$c" healthy || fail "$c is $(state "$c") after the reconnect"
done
say "ok: service killed: /healthz degraded, no incident, reconnected; the watchdog said:"
grep -m1 "connection lost" "$tmp/watchdog.log" | cut -d' ' -f2- >&2
say "PASS"
