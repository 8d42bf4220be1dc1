#!/usr/bin/env bash
# selfheal on a real 3-node Docker Swarm, on one machine: the host engine is the one manager,
# two more engines run as workers, each in its own network namespace (and UTS namespace, for its
# own node hostname) behind a bridge with a private /24 that only this test uses.
#
# It deploys the real deploy/swarm/stack.yml (with this machine's offline images, a filter that
# keeps its watchdogs to this test's containers, and no Grafana, which has no image here), then
# tests/swarm/apps.yml as a user's stack joined to its network, and checks, on the real engines
# and the real Prometheus:
#   1. a probe-only hang (SIGSTOP, no HEALTHCHECK) of a task on worker 1, `condition: any`, is
#      stopped by worker 1's watchdog and replaced by Swarm; the worker learnt the condition
#      from the manager's watchdog (no label), as for 2;
#   2. the same on worker 2 under `condition: on-failure`: the old task ends Failed (a kill),
#      not Complete, and is replaced;
#   3. a task whose HEALTHCHECK turns unhealthy is replaced by Swarm, and worker 1's watchdog
#      records an observed incident with its time to recover;
#   4. a probed task whose replacement Swarm puts on the other worker (its node is paused): the
#      first node's watchdog closes the incident `recovered`, with the time to recover the
#      other node's watchdog reported, the other node opens none, and its budget for the slot
#      counts the end the first node ordered;
#   5. `docker service ps` shows exactly one replacement per fault;
#   6. Prometheus on the manager finds all three watchdogs (dockerswarm_sd_configs, with the
#      `node` label) and holds the incidents of both workers; every dashboard query that uses
#      the `node` variable returns the worker's series;
#   7. a service that no node may run is reported stuck, by the leader's watchdog alone, and
#      the stack's own rules fire SwarmServiceStuck; Alertmanager is scraped;
#   8. Swarm alone (a task nobody watches) never heals the probe-only hang: after 30 s the
#      frozen task is still the one running.
# It prints what BENCHMARKS.md reports: fault -> replacement running, fault -> healthy, the
# time from the old task's exit to the new one's start (Swarm's restart delay), the
# watchdog's time to recover, and each node's watchdog footprint.
# Everything is torn down on exit, also on failure, within bounded waits: the stacks, the swarm
# (every node leaves), docker_gwbridge on the host and its iptables rules, the engines (by pid),
# the namespaces, veths, bridge and the one iptables rule the test adds.
#
#   tests/swarm/run.sh          needs root; IMAGE_PREFIX (selfheal) names the images to use:
#                               PREFIX/watchdog, PREFIX/prometheus, PREFIX/alertmanager,
#                               PREFIX/busybox (make images)
# It refuses to run when the host engine is already in a swarm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=${IMAGE_PREFIX:-selfheal}
id=$(printf '%04x' $((RANDOM % 65536)))
tag="sw$id"
stack="sh$id"   # deploy/swarm/stack.yml
apps="${stack}a" # tests/swarm/apps.yml
br="${tag}b"
driver=$(docker info -f '{{.Driver}}')
work=$(mktemp -d "/tmp/selfheal-swarm.XXXXXX")
started=$(date +%s)
swarm_inited=0
gwbridge_before=0
deployed=0
fwd_rule=()
net=""

log() { echo "[swarm-test +$(($(date +%s) - started))s] $*" >&2; }
fail() {
    log "FAIL: $*"
    if ((deployed)); then
        docker service ls -q --filter "label=com.docker.stack.namespace=$stack" >"$work/svcs" 2>/dev/null
        docker service ls -q --filter "label=com.docker.stack.namespace=$apps" >>"$work/svcs" 2>/dev/null
        xargs -r docker service ps --no-trunc --format '  {{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}' <"$work/svcs" >&2
        docker service logs --tail 40 "${stack}_watchdog" >&2 2>/dev/null
    fi
    exit 1
}

# shellcheck source=tests/lib/poll.sh
source "$here/../lib/poll.sh"
# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every second until it succeeds.
wait_for() {
    local what=$1 limit=$2
    shift 2
    eventually "$limit" output_to /dev/null "$@" || fail "$what: not within ${limit}s"
}

engine() { docker -H "unix://$work/e$1/run/docker.sock" "${@:2}"; }

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    log "teardown (exit $rc)"
    if ((deployed)); then
        timeout 60 docker stack rm "$apps" >/dev/null 2>&1
        timeout 60 docker stack rm "$stack" >/dev/null 2>&1
    fi
    for n in 1 2; do
        [[ -S $work/e$n/run/docker.sock ]] && timeout 30 docker -H "unix://$work/e$n/run/docker.sock" swarm leave --force >/dev/null 2>&1
    done
    if ((swarm_inited)); then
        timeout 60 docker swarm leave --force >/dev/null 2>&1
        # Stack containers the host's agent may still be removing.
        local deadline=$(($(date +%s) + 30))
        ours() {
            docker ps -aq --filter "label=com.docker.stack.namespace=$stack"
            docker ps -aq --filter "label=com.docker.stack.namespace=$apps"
        }
        while [[ -n $(ours) ]] && (($(date +%s) < deadline)); do
            sleep 1
        done
        ours | xargs -r docker rm -f >/dev/null 2>&1
        # The stack's named volumes on the host engine (the workers' go with their data roots).
        docker volume ls -q --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker volume rm >/dev/null 2>&1
        if ((!gwbridge_before)); then
            timeout 30 docker network rm docker_gwbridge >/dev/null 2>&1
        fi
    fi
    for n in 1 2; do
        local pidfile=$work/e$n/pid
        if [[ -s $pidfile ]]; then
            local pid
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null
            local deadline=$(($(date +%s) + 20))
            while kill -0 "$pid" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.5; done
            kill -9 "$pid" 2>/dev/null
        fi
    done
    # fuse-overlayfs daemons the engines started for their containers (by pid, found by the
    # work dir in their arguments, which no other process names).
    for pid in $(pgrep -f "fuse-overlayfs.*$work" || true); do kill "$pid" 2>/dev/null; done
    # What a killed engine may have left mounted under the work dir.
    awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    if ((${#fwd_rule[@]})); then
        iptables -D FORWARD "${fwd_rule[@]}" 2>/dev/null
    fi
    for n in 1 2; do
        ip netns del "${tag}n$n" 2>/dev/null
        ip link del "${tag}h$n" 2>/dev/null
    done
    ip link del "$br" 2>/dev/null
    rm -rf "$work"
    log "teardown done"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || fail "needs root (network namespaces, a bridge, extra engines)"
state=$(docker info -f '{{.Swarm.LocalNodeState}}')
[[ $state == inactive ]] || {
    trap - EXIT
    rm -rf "$work"
    echo "swarm test: the host engine is already in a swarm ($state); refusing to touch it" >&2
    exit 1
}
for image in watchdog prometheus alertmanager busybox; do
    docker image inspect "$prefix/$image:latest" >/dev/null 2>&1 ||
        fail "image $prefix/$image:latest missing (IMAGE_PREFIX=$prefix docker/offline/build.sh $image)"
done
docker network inspect docker_gwbridge >/dev/null 2>&1 && gwbridge_before=1

# A private /24 that nothing on the host routes yet.
for _ in $(seq 1 20); do
    candidate="10.$((200 + RANDOM % 50)).$((RANDOM % 250))"
    ip -4 route | grep -q "^$candidate\." || ip -4 addr | grep -q " $candidate\." || {
        net=$candidate
        break
    }
done
[[ -n $net ]] || fail "no free 10.x.y.0/24 found"
log "nodes on $net.0/24: manager $net.1 (host engine), workers $net.2 and $net.3; stack $stack"

ip link add "$br" type bridge
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up
# Docker's FORWARD policy drops bridged traffic (br_netfilter): let the nodes talk.
fwd_rule=(-i "$br" -o "$br" -j ACCEPT)
iptables -I FORWARD "${fwd_rule[@]}"

for n in 1 2; do
    ns="${tag}n$n"
    ip netns add "$ns"
    ip link add "${tag}h$n" type veth peer name "${tag}p$n"
    ip link set "${tag}p$n" netns "$ns"
    ip link set "${tag}h$n" master "$br" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$net.$((n + 1))/24" dev "${tag}p$n"
    ip -n "$ns" link set "${tag}p$n" up
    # No default route: nothing leaves the namespaces (a Swarm agent's image pull fails at once
    # instead of waiting for DNS timeouts, then uses the image loaded below).
    mkdir -p "$work/e$n/run"
    echo '{}' >"$work/e$n/daemon.json"
    # nsenter, not `ip netns exec`: that remounts /sys and dockerd then finds no cgroups.
    # Its own UTS namespace (its node hostname) and mount namespace: there its own run dir is
    # /run, so /var/run/docker.sock, which the stack mounts into the watchdog, is this node's
    # engine and not the host's (which every other test on this machine uses).
    # shellcheck disable=SC2016 # expanded by the inner sh
    nsenter --net="/var/run/netns/$ns" unshare --uts --mount --propagation private sh -c \
        'hostname "$1"; mount --bind "$2" /run; shift 2; exec "$@"' sh "${tag}w$n" "$work/e$n/run" \
        dockerd --config-file "$work/e$n/daemon.json" --data-root "$work/e$n/data" \
        --exec-root "$work/e$n/exec" --pidfile "$work/e$n/pid" -H unix:///run/docker.sock \
        --storage-driver "$driver" >"$work/e$n/log" 2>&1 &
done
own_engine() { # /var/run/docker.sock inside engine N's namespaces is that engine
    [[ $(nsenter --target "$(cat "$work/e$1/pid")" --mount --net docker -H unix:///var/run/docker.sock info -f '{{.Name}}') == "${tag}w$1" ]]
}
for n in 1 2; do
    wait_for "engine $n up" 60 engine "$n" info
    own_engine "$n" || fail "engine $n: /var/run/docker.sock in its namespace is not its own"
    docker save "$prefix/watchdog:latest" "$prefix/busybox:latest" | engine "$n" load -q >/dev/null
done
log "two engines up, images loaded"

docker swarm init --advertise-addr "$net.1" --listen-addr "$net.1:2377" >/dev/null
swarm_inited=1
token=$(docker swarm join-token -q worker)
for n in 1 2; do
    engine "$n" swarm join --token "$token" --advertise-addr "$net.$((n + 1))" \
        --listen-addr "$net.$((n + 1)):2377" "$net.1:2377" >/dev/null
done
ready() { [[ $(docker node ls --format '{{.Status}}' | grep -c Ready) == 3 ]]; }
wait_for "3 nodes ready" 60 ready
log "swarm of 3 nodes ready"

# The real stack, with this machine's images. Grafana has no image here: its service is removed
# at once (its dashboard's queries are checked against this Prometheus below instead).
(cd "$root/deploy/swarm" &&
    WATCHDOG_IMAGE="$prefix/watchdog:latest" PROMETHEUS_IMAGE="$prefix/prometheus:latest" \
        ALERTMANAGER_IMAGE="$prefix/alertmanager:latest" \
        SELFHEAL_FILTER_LABEL="com.docker.stack.namespace=$apps" SELFHEAL_SWARM_STUCK_AFTER=5s \
        docker stack deploy --resolve-image never -c stack.yml "$stack" >/dev/null)
deployed=1
docker service rm "${stack}_grafana" >/dev/null
(cd "$here" && IMAGE_PREFIX=$prefix W1="${tag}w1" W2="${tag}w2" NET="${stack}_selfheal" \
    docker stack deploy --resolve-image never -c apps.yml "$apps" >/dev/null)
converged() { # every service but `stuck` runs all its tasks: watchdog, prometheus, alertmanager, 5 apps
    local lines
    lines=$({
        docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}} {{.Replicas}}'
        docker service ls --filter "label=com.docker.stack.namespace=$apps" --format '{{.Name}} {{.Replicas}}'
    } | grep -v "^${apps}_stuck ")
    [[ $(wc -l <<<"$lines") == 8 ]] && ! grep -vE ' ([0-9]+)/\1$' <<<"$lines"
}
wait_for "the stacks running on every node" 120 converged
log "stacks deployed: $(docker service ls --format '{{.Name}}={{.Replicas}}' | grep -E "^($stack|$apps)_" | tr '\n' ' ')"

# A PromQL query through a one-off busybox on the stack's overlay network: prints the value
# of the first series, or nothing.
promql() {
    docker run --rm --name "${stack}_q$RANDOM" --network "${stack}_selfheal" "$prefix/busybox:latest" timeout 15 \
        wget -q -O - "http://prometheus:9090/api/v1/query?query=$(jq -rn --arg q "$1" '$q|@uri')" 2>/dev/null |
        jq -r '.data.result[0].value[1] // empty'
}
at_least() { # at_least QUERY N
    local v
    v=$(promql "$1")
    [[ -n $v ]] && awk -v v="$v" -v n="$2" 'BEGIN { exit !(v >= n) }'
}

wait_for "Prometheus finds the 3 watchdogs" 120 at_least 'count(up{job="watchdog"} == 1)' 3
log "Prometheus scrapes 3 watchdogs: $(promql 'count by () (up{job="watchdog"})') targets, nodes: $(promql 'count(count by (node) (up{job="watchdog"}))')"

task_container() { # task_container NODE SERVICE: the running container of the service there
    engine "$1" ps -q --filter "label=com.docker.swarm.service.name=${apps}_$2"
}
has_task() { [[ -n $(task_container "$1" "$2") ]]; } # has_task NODE SERVICE
tasks() { docker service ps -q "${apps}_$1" | wc -l; }
running_other_than() { # running_other_than NODE SERVICE OLD
    local c
    c=$(task_container "$1" "$2")
    [[ -n $c && $c != "$3" ]]
}

# api NODE PATH: GET a worker's watchdog API (its address on the stack's network), by a one-off
# busybox on that network.
api() {
    local ip
    ip=$(engine "$1" ps -q --filter "label=com.docker.swarm.service.name=${stack}_watchdog" |
        xargs -r docker -H "unix://$work/e$1/run/docker.sock" inspect \
            -f "{{(index .NetworkSettings.Networks \"${stack}_selfheal\").IPAddress}}")
    [[ -n $ip ]] || return 1
    docker run --rm --name "${stack}_a$RANDOM" --network "${stack}_selfheal" "$prefix/busybox:latest" timeout 15 \
        wget -q -O - "http://$ip:9100$2" 2>/dev/null
}
learnt() { # learnt NODE SERVICE CONDITION: that node's watchdog knows the service's restart condition
    api "$1" /api/v1/swarm/tasks |
        jq -e --arg s "${apps}_$2" --arg c "$3" 'any(.tasks[]; .service == $s and .restart_condition == $c)'
}

# 0. No task carries selfheal.swarm.restart-condition: the workers learn it from the manager's
#    watchdog (--swarm-peers tasks.watchdog:9100).
wait_for "worker 1's watchdog learns hang's condition (any) from the manager's" 60 learnt 1 hang any
wait_for "worker 2's watchdog learns hang-fail's condition (on-failure) from the manager's" 60 learnt 2 hang-fail on-failure
log "workers learnt the restart conditions from the manager's watchdog"

# fault NODE SERVICE: SIGSTOP the service's task on worker NODE once its watchdog saw it healthy,
# then wait for Swarm's replacement. Prints the seconds from fault to replacement running.
fault() {
    local node=$1 service=$2 old t0
    wait_for "$service task running on worker $node" 60 has_task "$node" "$service"
    old=$(task_container "$node" "$service")
    wait_for "$service watched and healthy on worker $node" 60 at_least \
        "sum(selfheal_container_state{node=\"${tag}w$node\",container=~\"${apps}_${service}[.].*\",state=\"healthy\"})" 1
    t0=$(date +%s.%N)
    engine "$node" kill -s STOP "$old" >/dev/null
    echo "$t0" >"$work/fault_at"
    log "$service: task $old on worker $node frozen (SIGSTOP)"
    wait_for "$service replaced" 90 running_other_than "$node" "$service" "$old"
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }'
}

# 1. probe-only hang, condition any, worker 1.
took=$(fault 1 hang)
log "hang (any): replacement running ${took}s after the fault"
wait_for "worker 1's watchdog records the recovery of hang" 60 at_least \
    "sum(selfheal_recovery_duration_seconds_count{node=\"${tag}w1\",container=~\"${apps}_hang[.].*\",trigger=\"probe_failed\"})" 1
at_least "sum(app_recovery_events_total{node=\"${tag}w1\",trigger=\"probe_failed\",result=\"success\"})" 1 ||
    fail "no successful recovery of hang counted on worker 1"

# 2. probe-only hang, condition on-failure, worker 2.
took=$(fault 2 hang-fail)
log "hang-fail (on-failure): replacement running ${took}s after the fault"
wait_for "worker 2's watchdog records the recovery of hang-fail" 60 at_least \
    "sum(selfheal_recovery_duration_seconds_count{node=\"${tag}w2\",trigger=\"probe_failed\"})" 1
ended=$(docker service ps "${apps}_hang-fail" --filter desired-state=shutdown --format '{{.CurrentState}}')
log "hang-fail's ended task: $ended"
grep -q '^Failed' <<<"$ended" || fail "under on-failure the stopped task must end Failed, not: $ended"

# 3. HEALTHCHECK turns unhealthy (frozen), worker 1: Swarm replaces it, the watchdog observes.
took=$(fault 1 sick)
sick_t0=$(cat "$work/fault_at")
log "sick (HEALTHCHECK): replacement running ${took}s after the fault"
wait_for "worker 1's watchdog records the observed incident of sick with its time to recover" 60 at_least \
    "sum(selfheal_recovery_duration_seconds_count{node=\"${tag}w1\",container=~\"${apps}_sick[.].*\",trigger=\"unhealthy\"})" 1
at_least "sum(app_recovery_events_total{node=\"${tag}w1\",container=~\"${apps}_sick[.].*\",trigger=\"unhealthy\",result=\"observed\"})" 1 ||
    fail "the unhealthy task was not recorded as observed"
ttr=$(promql "sum(selfheal_recovery_duration_seconds_sum{node=\"${tag}w1\",container=~\"${apps}_sick[.].*\"})")
log "sick: time to recover measured by the watchdog: ${ttr}s"

old_sick=$(docker service ps "${apps}_sick" --filter desired-state=shutdown -q --no-trunc | head -1)
new_sick=$(task_container 1 sick)
finished=$(engine 1 ps -aq --filter "label=com.docker.swarm.task.id=$old_sick" | xargs -r docker -H "unix://$work/e1/run/docker.sock" inspect -f '{{.State.FinishedAt}}')
healthy_by() { [[ $(engine 1 inspect -f '{{.State.Health.Status}}' "$new_sick") == healthy ]]; }
wait_for "sick's replacement healthy" 60 healthy_by
# Docker's own times (same host clock): the replacement's first passing check, its start, the
# old task's exit.
healthy_at=$(engine 1 inspect "$new_sick" | jq -r '[.[0].State.Health.Log[] | select(.ExitCode == 0)][0].End')
started_at=$(engine 1 inspect -f '{{.State.StartedAt}}' "$new_sick")
since_fault() { awk -v a="$sick_t0" -v b="$(date -d "$1" +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log "sick: old task exited at +$(since_fault "$finished")s, replacement started at +$(since_fault "$started_at")s, first passing check at +$(since_fault "$healthy_at")s after the fault"

# 4. The replacement on another node: roam's node is paused (its running task stays, no new
#    task may go there), its task frozen; its watchdog stops it, Swarm starts the replacement on
#    the other worker, and the first watchdog hears of it from the other one's API.
roam_host=$(docker service ps "${apps}_roam" --filter desired-state=running --format '{{.Node}}')
case $roam_host in
"${tag}w1") here_n=1 there_n=2 ;;
"${tag}w2") here_n=2 there_n=1 ;;
*) fail "roam runs on '$roam_host', not a worker" ;;
esac
wait_for "roam watched and healthy on worker $here_n" 60 at_least \
    "sum(selfheal_container_state{node=\"$roam_host\",container=~\"${apps}_roam[.].*\",state=\"healthy\"})" 1
docker node update --availability pause "$roam_host" >/dev/null
old_roam=$(task_container "$here_n" roam)
t0=$(date +%s.%N)
engine "$here_n" kill -s STOP "$old_roam" >/dev/null
log "roam: task on worker $here_n frozen, that node paused"
wait_for "roam's replacement running on worker $there_n" 90 has_task "$there_n" roam
log "roam: replacement running on worker $there_n $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s after the fault"
docker node update --availability active "$roam_host" >/dev/null
roam_closed() {
    api "$here_n" "/api/v1/incidents?container=$old_roam" |
        jq -e '[.[] | select(.outcome == "recovered" and .time_to_recover_seconds > 0)] | length == 1'
}
wait_for "worker $here_n's watchdog closes roam's incident as recovered, told by worker $there_n's" 60 roam_closed
wait_for "roam's time to recover in Prometheus, from worker $here_n" 60 at_least \
    "sum(selfheal_recovery_duration_seconds_count{node=\"$roam_host\",container=~\"${apps}_roam[.].*\"})" 1
roam_ttr=$(promql "sum(selfheal_recovery_duration_seconds_sum{node=\"$roam_host\",container=~\"${apps}_roam[.].*\"})")
log "roam: incident closed on worker $here_n with time to recover ${roam_ttr}s (replacement on worker $there_n)"
new_roam=$(task_container "$there_n" roam)
there_incidents=$(api "$there_n" "/api/v1/incidents?container=$new_roam" | jq 'if type == "array" then length else error("not a list") end') ||
    fail "worker $there_n's watchdog API did not list incidents"
[[ $there_incidents == 0 ]] || fail "worker $there_n opened $there_incidents incidents for roam's replacement; expected none"
adopted() { # the slot's budget on the other node counts the end worker here_n ordered
    api "$there_n" /api/v1/containers |
        jq -e --arg id "$new_roam" 'any(.[]; (.id | startswith($id)) and .restarts_in_window == 1)'
}
wait_for "worker $there_n's watchdog counts roam's end on worker $here_n in the slot's budget" 30 adopted
log "roam: the slot's budget moved with it (1 restart in the window on worker $there_n)"

# 5. Exactly one replacement per fault: two tasks in each service's history, one running.
for service in hang hang-fail sick roam; do
    n=$(tasks "$service")
    [[ $n == 2 ]] || fail "$service: $n tasks in docker service ps, expected 2 (one replacement)"
    docker service ps "${apps}_$service" --format '  {{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}'
done
log "exactly one replacement per fault"

# 6. Prometheus holds the incidents of both workers where faults were injected.
nodes=$(promql 'count(count by (node) (selfheal_recovery_duration_seconds_count > 0))')
[[ $nodes == 2 ]] || fail "Prometheus holds incidents of $nodes nodes, expected 2"
log "Prometheus holds the incidents of both workers; watchdogs scraped on 3 nodes"

# Every dashboard query that uses the `node` variable, for worker 1, as a range query over
# this run (what a panel would draw): each returns a series, and the per-node ones (by node)
# only worker 1's. One busybox on the stack's network runs them all (URLs on its stdin).
w1="${tag}w1"
python3 "$root/tests/deploy/check_dashboards.py" --grafana "$root/deploy/grafana" --print-exprs \
    --only-using node --tsv --set "node=$w1" --set __rate_interval=1m --set __interval=15s \
    --set __range=1h >"$work/queries.tsv" || fail "could not extract the dashboard's queries"
now=$(date +%s)
cut -f2 "$work/queries.tsv" | while IFS= read -r q; do
    printf 'http://prometheus:9090/api/v1/query_range?query=%s&start=%s&end=%s&step=15\n' \
        "$(jq -rn --arg q "$q" '$q|@uri')" "$started" "$now"
done >"$work/urls"
docker run --rm -i --name "${stack}_d$RANDOM" --network "${stack}_selfheal" "$prefix/busybox:latest" \
    sh -c 'while read -r u; do wget -q -O - "$u" | tr -d "\n"; echo; done' <"$work/urls" >"$work/answers"
[[ $(wc -l <"$work/answers") == $(wc -l <"$work/queries.tsv") ]] || fail "dashboard queries: not every query answered"
empty=0
while IFS=$'\t' read -r where expr <&3 && IFS= read -r answer <&4; do
    n=$(jq '.data.result | length' <<<"$answer")
    nodes=$(jq -c '[.data.result[].metric.node // empty] | unique' <<<"$answer")
    if [[ $n == 0 ]]; then
        empty=$((empty + 1))
        log "no series: $where: $expr"
    elif [[ $expr == *"by (node)"* && $nodes != "[\"$w1\"]" ]]; then
        fail "$where: nodes $nodes, expected [\"$w1\"]"
    fi
done 3<"$work/queries.tsv" 4<"$work/answers"
((empty == 0)) || fail "$empty dashboard queries returned no series for node $w1"
log "all $(wc -l <"$work/queries.tsv") node-aware dashboard queries answer for node $w1; per-node panels show it alone"

# 7. The stuck service: reported once, by the leader (the manager, the host engine).
wait_for "the stuck service reported" 60 at_least "sum(selfheal_swarm_service_stuck{service=\"${apps}_stuck\"})" 1
reporters=$(promql "count(selfheal_swarm_service_stuck{service=\"${apps}_stuck\"})")
leaders=$(promql 'count(selfheal_swarm_leader == 1)')
[[ $reporters == 1 && $leaders == 1 ]] ||
    fail "the stuck service is reported by $reporters watchdogs, $leaders leaders; expected 1 and 1"
log "stuck service reported by the leader's watchdog only"
wait_for "the stack's rules fire SwarmServiceStuck" 60 at_least \
    "sum(ALERTS{alertname=\"SwarmServiceStuck\",service=\"${apps}_stuck\",alertstate=\"firing\"})" 1
wait_for "Prometheus scrapes the stack's Alertmanager" 60 at_least 'sum(up{job="alertmanager"})' 1
log "SwarmServiceStuck firing; Alertmanager up"
# 8. Swarm alone: the frozen task nobody probes stays, Running, for good.
alone=$(task_container 2 alone)
engine 2 kill -s STOP "$alone" >/dev/null
log "alone: task $alone on worker 2 frozen; Swarm alone has 30 s to notice"
same_task_30s() {
    local deadline=$(($(date +%s) + 30))
    while (($(date +%s) < deadline)); do
        [[ $(task_container 2 alone) == "$alone" ]] || return 1
        sleep 2
    done
}
same_task_30s || fail "Swarm replaced the unwatched frozen task: the test's premise is wrong"
[[ $(tasks alone) == 1 ]] || fail "alone: a replacement appeared"
log "alone: after 30 s still the same frozen task: $(docker service ps "${apps}_alone" --format '{{.CurrentState}}')"

for n in 0 1 2; do
    if ((n)); then
        s=$(engine "$n" stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.CPUPerc}}' | grep "${stack}_watchdog")
    else
        s=$(docker stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.CPUPerc}}' | grep "${stack}_watchdog")
    fi
    log "footprint node $n: $s"
done
log "PASS"
