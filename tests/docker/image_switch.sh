#!/usr/bin/env bash
# Switching Prometheus and Alertmanager between the offline stand-ins and upstream-style images
# keeps the stack healthy and its data: the health checks fit both kinds, and a volume written by
# an older image (uid 10001) is handed to nobody (65534) by `docker/stack.sh up`.
#
# No registry here, so the upstream images are stood in for by images made like them: the
# stand-in's binary on a busybox base (busybox's own wget, a shell, chown), running as nobody.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
stack=$root/docker/stack.sh
run_id=$$-$RANDOM
export COMPOSE_PROJECT_NAME="selfheal-switch-$run_id"
export GRAFANA_ADMIN_PASSWORD="switch-$RANDOM$RANDOM"
export STACK_SERVICES="prometheus alertmanager"
export UP_TIMEOUT=${UP_TIMEOUT:-120}
export SELFHEAL_BIND=127.0.0.1
read -r APP_PORT WATCHDOG_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT < <(bash "$stack" free-ports 5)
export APP_PORT WATCHDOG_PORT PROMETHEUS_PORT ALERTMANAGER_PORT GRAFANA_PORT
like_prom="selfheal-test/prometheus-upstream-like:$run_id"
like_am="selfheal-test/alertmanager-upstream-like:$run_id"
work=$(mktemp -d "${TMPDIR:-/tmp}/image-switch.XXXXXX")

fail() { echo "image-switch: FAIL: $*" >&2; exit 1; }
cleanup() {
    VOLUMES=1 bash "$stack" down >/dev/null 2>&1 || echo "image-switch: cleanup of $COMPOSE_PROJECT_NAME failed" >&2
    docker image rm -f "$like_prom" "$like_am" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

for image in selfheal/prometheus selfheal/alertmanager selfheal/busybox; do
    docker image inspect "$image:latest" >/dev/null 2>&1 || fail "$image:latest is missing (make images)"
done

# like_upstream STAND-IN TAG DATA_DIR: the stand-in with busybox in /bin instead of its own
# wget, as nobody, like prom/* (quay.io/prometheus/busybox base, USER nobody).
like_upstream() {
    mkdir -p "$work/$2"
    cat >"$work/$2/Dockerfile" <<DOCKERFILE
FROM $1
COPY --from=selfheal/busybox:latest /bin/busybox /bin/busybox
USER 0
RUN ["/bin/busybox", "sh", "-c", "rm -f /bin/wget && /bin/busybox --install -s /bin && chown -R 65534:65534 $3"]
USER 65534:65534
DOCKERFILE
    docker build --quiet --pull=false -t "$2" "$work/$2" >/dev/null 2>"$work/build.log" ||
        { cat "$work/build.log" >&2; fail "building $2"; }
}
like_upstream selfheal/prometheus:latest "$like_prom" /prometheus
like_upstream selfheal/alertmanager:latest "$like_am" /alertmanager
docker run --rm --entrypoint sh "$like_prom" -c 'readlink /bin/wget' | grep -q busybox ||
    fail "$like_prom does not run busybox's wget"

# A volume as an older offline image left it: owned by 10001, with a file in it.
for volume in prometheus-data alertmanager-data; do
    docker volume create --label "com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --label "com.docker.compose.volume=$volume" "${COMPOSE_PROJECT_NAME}_$volume" >/dev/null
    docker run --rm --user 0 --network none -v "${COMPOSE_PROJECT_NAME}_$volume:/data" selfheal/busybox:latest \
        sh -c 'echo old > /data/from-10001 && chown -R 10001:10001 /data'
done

# count(up) at TIME (default now): empty when Prometheus holds no sample from before then.
samples_at() {
    curl -fsS --max-time 5 "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" \
        --data-urlencode 'query=count(up)' ${1:+--data-urlencode "time=$1"} |
        jq -r '.data.result[0].value[1] // empty'
}

up_as() { # LABEL [VAR=VALUE ...]: stack.sh up with those image variables; checks health
    local label=$1 out
    shift
    echo "image-switch: up with $label"
    out=$(env "$@" bash "$stack" up 2>&1) || { echo "$out" >&2; fail "$label: the stack did not come up healthy"; }
    printf '    %s\n' "${out//$'\n'/$'\n'    }"
    for service in prometheus alertmanager; do
        [[ $(bash "$stack" health "$service") == healthy ]] || fail "$label: $service is not healthy"
    done
    local image
    image=$(bash "$stack" ps -q prometheus | xargs docker inspect -f '{{.Config.Image}}')
    LAST_OUT=$out
    LAST_IMAGE=$image
}

up_as "the offline stand-ins" SELFHEAL_IMAGES=offline
[[ $LAST_OUT == *"offline images (SELFHEAL_IMAGES=offline)"* ]] || fail "stack.sh did not say it used the offline images"
[[ $LAST_OUT == *"prometheus-data belongs to 10001:10001; handing it to 65534:65534"* ]] ||
    fail "stack.sh did not hand the old volume over"
[[ $LAST_IMAGE == selfheal/prometheus:latest ]] || fail "prometheus runs $LAST_IMAGE"
deadline=$((SECONDS + 60))
until [[ -n $(samples_at) ]]; do
    ((SECONDS < deadline)) || fail "Prometheus stored no sample"
    sleep 1
done
before=$(date +%s.%N)
echo "image-switch: ok: offline stand-ins healthy on the old volumes, samples stored"

up_as "upstream-style images" PROMETHEUS_IMAGE="$like_prom" ALERTMANAGER_IMAGE="$like_am"
[[ $LAST_OUT == *"PROMETHEUS_IMAGE=$like_prom (yours)"* ]] || fail "stack.sh did not say it used the given image"
[[ $LAST_IMAGE == "$like_prom" ]] || fail "prometheus runs $LAST_IMAGE, not $like_prom"
[[ -n $(samples_at "$before") ]] || fail "the data did not survive the switch: no sample from before $before"
docker run --rm --network none -v "${COMPOSE_PROJECT_NAME}_prometheus-data:/data" selfheal/busybox:latest \
    cat /data/from-10001 | grep -q old || fail "the old volume's file is gone"
echo "image-switch: ok: upstream-style images healthy (busybox wget), samples from before the switch kept"

up_as "the offline stand-ins again" SELFHEAL_IMAGES=offline
[[ $LAST_OUT != *"handing it to"* ]] || fail "a volume was handed over again: $LAST_OUT"
[[ $LAST_IMAGE == selfheal/prometheus:latest ]] || fail "prometheus runs $LAST_IMAGE"
echo "image-switch: PASS"
