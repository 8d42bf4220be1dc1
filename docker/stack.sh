#!/usr/bin/env bash
# Runs the compose stack: `up` (start, wait until healthy, print URLs), `down`, `logs`, `ps`.
# Used by `make up/down/logs` and by the smoke test (tests/docker/smoke.sh).
#
# Env: COMPOSE (docker-compose or "docker compose"), COMPOSE_PROJECT_NAME (selfheal),
#      UP_TIMEOUT seconds to wait for health (180), VOLUMES=1 makes `down` delete the volumes,
#      STACK_SERVICES "a b" limits `up` to those services,
#      SELFHEAL_IMAGES auto|upstream|offline (auto: the upstream images compose.yaml pins when a
#      registry answers, else the offline stand-ins), BUILD_OFFLINE=1 (re)builds the stand-ins
#      `up` selects (make up sets it; otherwise only missing ones are built),
#      plus the variables compose.yaml reads (ports, SELFHEAL_BIND, CHAOS_TOKEN, *_IMAGE, ...).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-selfheal}
read -r -a compose_cmd <<<"${COMPOSE:-docker-compose}"
password_file=$root/.build/grafana-admin-password

compose() { "${compose_cmd[@]}" -f "$root/compose.yaml" "$@"; }
die() { echo "stack: $*" >&2; exit 1; }

# The watchdog joins the Docker group of this host's socket.
if [[ -z ${DOCKER_GID:-} ]]; then
    DOCKER_GID=$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)
fi
export DOCKER_GID

# Grafana must not keep its default password: take GRAFANA_ADMIN_PASSWORD, else a generated
# one kept in .build/ (git-ignored) so it survives restarts.
if [[ -z ${GRAFANA_ADMIN_PASSWORD:-} ]]; then
    if [[ ! -s $password_file ]]; then
        mkdir -p "$(dirname "$password_file")"
        (umask 077 && head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$password_file")
    fi
    GRAFANA_ADMIN_PASSWORD=$(<"$password_file")
fi
export GRAFANA_ADMIN_PASSWORD

# The demo app's fault injection (what `selfheal drill` uses) is on in this stack, behind a
# token of its own; CHAOS_TOKEN=  (empty, set explicitly) turns it off.
chaos_file=$root/.build/chaos-token
if [[ -z ${CHAOS_TOKEN+set} ]]; then
    if [[ ! -s $chaos_file ]]; then
        mkdir -p "$(dirname "$chaos_file")"
        (umask 077 && head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$chaos_file")
    fi
    CHAOS_TOKEN=$(<"$chaos_file")
fi
export CHAOS_TOKEN

# The image variables that have an offline stand-in: VARIABLE -> build.sh image name.
declare -A stand_in=(
    [PROMETHEUS_IMAGE]=prometheus
    [ALERTMANAGER_IMAGE]=alertmanager
    [NODE_EXPORTER_IMAGE]=node-exporter
)
offline_prefix=selfheal

# The upstream image compose.yaml pins for VARIABLE (its ${VARIABLE:-default}).
upstream_image() {
    sed -n "s/.*[\$]{$1:-\([^}]*\)}.*/\1/p" "$root/compose.yaml" | head -n 1
}

# Sets every image variable the user left unset: the upstream image when it is here or a
# registry answers, else the offline stand-in, which it builds (with the Debian packages it
# needs) when missing or BUILD_OFFLINE=1. Says which kind it used, and why.
choose_images() {
    local mode=${SELFHEAL_IMAGES:-auto} var image pulled="" why="" err
    local -a offline=() upstream=() build=()
    case $mode in auto | upstream | offline) ;; *) die "SELFHEAL_IMAGES=$mode: expected auto, upstream or offline" ;; esac
    for var in "${!stand_in[@]}"; do
        if [[ -n ${!var:-} ]]; then
            echo "stack: $var=${!var} (yours)"
            continue
        fi
        image=$(upstream_image "$var")
        [[ -n $image ]] || die "compose.yaml has no default for $var"
        if [[ $mode == offline ]]; then
            offline+=("$var")
        elif docker image inspect "$image" >/dev/null 2>&1; then
            upstream+=("$var=$image")
        elif [[ $pulled != failed ]] && err=$(timeout 300 docker pull -q "$image" 2>&1 >/dev/null); then
            pulled=yes
            upstream+=("$var=$image")
        elif [[ $mode == upstream ]]; then
            die "SELFHEAL_IMAGES=upstream, but $image cannot be pulled: ${err:-no registry answered}"
        else
            # One failed pull is enough to know: don't wait on the registry once per image.
            [[ -n $why ]] || why="docker pull $image: $(tail -n 1 <<<"${err:-no registry answered}")"
            pulled=failed
            offline+=("$var")
        fi
    done
    for image in "${upstream[@]}"; do
        export "${image?}"
    done
    ((${#upstream[@]} == 0)) || echo "stack: upstream images: ${upstream[*]#*=}"
    ((${#offline[@]} > 0)) || return 0
    for var in "${offline[@]}"; do
        image=$offline_prefix/${stand_in[$var]}:latest
        export "$var=$image"
        if [[ ${BUILD_OFFLINE:-0} == 1 ]] || ! docker image inspect "$image" >/dev/null 2>&1; then
            build+=("${stand_in[$var]}")
        fi
    done
    if [[ $mode == offline ]]; then
        echo "stack: offline images (SELFHEAL_IMAGES=offline)"
    else
        echo "stack: no registry answered ($why); using the offline images built from Debian's packages"
    fi
    if ((${#build[@]} > 0)); then
        # busybox: the stand-ins have no shell; volume_owner needs stat and chown.
        bash "$root/.ci/prerequisites.sh" offline
        bash "$root/docker/offline/build.sh" "${build[@]}" busybox
    fi
    for var in "${offline[@]}"; do
        echo "stack:   $var=${!var} ($(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "${!var}"))"
    done
}

# Prometheus and Alertmanager run as nobody (65534) in both kinds of image; the offline images of
# earlier versions ran as 10001. A data volume that belongs to someone else is handed to nobody
# once, before the service starts, so switching kinds never fails on permissions.
volume_owner() { # VOLUME IMAGE
    local volume=${COMPOSE_PROJECT_NAME}_$1 tool=$2 owner
    docker volume inspect "$volume" >/dev/null 2>&1 || return 0
    # Both have stat and chown: selfheal/busybox, or the busybox-based upstream image.
    docker image inspect "$offline_prefix/busybox:latest" >/dev/null 2>&1 && tool=$offline_prefix/busybox:latest
    owner=$(docker run --rm --user 0 --network none -v "$volume:/data" --entrypoint stat "$tool" -c %u:%g /data) ||
        die "cannot read the owner of volume $volume with $tool"
    [[ $owner == 65534:65534 ]] && return 0
    echo "stack: volume $volume belongs to $owner; handing it to 65534:65534 (nobody), the user Prometheus and Alertmanager run as"
    docker run --rm --user 0 --network none -v "$volume:/data" --entrypoint chown "$tool" -R 65534:65534 /data ||
        die "cannot chown volume $volume"
}

# "SERVICE IMAGE" per service of the resolved compose file.
service_images() {
    compose config | awk '
        /^[^ ]/ { in_services = ($0 == "services:"); next }
        in_services && /^  [^ ]/ { service = $1; sub(/:$/, "", service); next }
        in_services && /^    image:/ { print service, $2 }'
}

# The services to start: every one (or those in STACK_SERVICES) whose image exists, or for
# Grafana can be pulled.
select_services() {
    local service image
    while read -r service image; do
        [[ -z ${STACK_SERVICES:-} || " $STACK_SERVICES " == *" $service "* ]] || continue
        if docker image inspect "$image" >/dev/null 2>&1; then
            echo "$service"
        elif [[ $image == selfheal/* ]]; then
            echo "stack: not starting $service: image $image is missing (make images builds it)" >&2
        elif timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
            echo "$service"
        else
            echo "stack: not starting $service: $image cannot be pulled (offline); everything else starts" >&2
        fi
    done < <(service_images)
}

# Health of one service's container: healthy, unhealthy, starting, none, or the state if not running.
service_health() {
    local id
    id=$(compose ps -q "$1" 2>/dev/null | head -n 1)
    [[ -n $id ]] || { echo missing; return; }
    docker inspect -f '{{if ne .State.Status "running"}}{{.State.Status}}{{else if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo missing
}

# How often Docker has restarted one service's container.
restart_count() {
    local id
    id=$(compose ps -q "$1" 2>/dev/null | head -n 1)
    [[ -n $id ]] && docker inspect -f '{{.RestartCount}}' "$id" 2>/dev/null || echo 0
}

wait_healthy() {
    local started=$SECONDS deadline=$((SECONDS + ${UP_TIMEOUT:-180})) service health
    local -a pending crashing
    while :; do
        pending=()
        for service in "$@"; do
            health=$(service_health "$service")
            case $health in
                healthy | none) ;;
                *) pending+=("$service:$health") ;;
            esac
        done
        [[ ${#pending[@]} -eq 0 ]] && return 0
        crashing=()
        for service in "${pending[@]}"; do
            (($(restart_count "${service%%:*}") >= 3)) && crashing+=("$service")
        done
        if ((SECONDS >= deadline)) || [[ ${#crashing[@]} -gt 0 ]]; then
            [[ ${#crashing[@]} -gt 0 ]] && pending=("${crashing[@]}")
            echo "stack: not healthy after $((SECONDS - started))s: ${pending[*]}" >&2
            for service in "${pending[@]}"; do
                echo "---- last logs of ${service%%:*} ----" >&2
                compose logs --no-color --tail 30 "${service%%:*}" >&2 || true
            done
            return 1
        fi
        sleep 1
    done
}

print_urls() {
    local bind=${SELFHEAL_BIND:-127.0.0.1} service
    [[ $bind == 0.0.0.0 ]] && bind=127.0.0.1
    echo "selfheal stack '$COMPOSE_PROJECT_NAME' is up:"
    for service in "$@"; do
        case $service in
            app)
                local chaos="fault injection off"
                [[ -n ${CHAOS_TOKEN:-} ]] && chaos="chaos token: ${chaos_file#"$root/"} or \$CHAOS_TOKEN"
                echo "  app           http://$bind:${APP_PORT:-8080}/ ($chaos)"
                ;;
            watchdog) echo "  watchdog      http://$bind:${WATCHDOG_PORT:-9100}/api/v1/containers" ;;
            prometheus) echo "  prometheus    http://$bind:${PROMETHEUS_PORT:-9090}/" ;;
            alertmanager) echo "  alertmanager  http://$bind:${ALERTMANAGER_PORT:-9093}/" ;;
            grafana) echo "  grafana       http://$bind:${GRAFANA_PORT:-3000}/ (admin password: ${password_file#"$root/"} or \$GRAFANA_ADMIN_PASSWORD)" ;;
        esac
    done
}

case ${1:-} in
    up)
        choose_images
        volume_owner prometheus-data "$PROMETHEUS_IMAGE"
        volume_owner alertmanager-data "$ALERTMANAGER_IMAGE"
        mapfile -t services < <(select_services)
        [[ ${#services[@]} -gt 0 ]] || die "no service can start"
        compose up -d --no-build --remove-orphans "${services[@]}"
        wait_healthy "${services[@]}"
        print_urls "${services[@]}"
        ;;
    down)
        if [[ ${VOLUMES:-0} == 1 ]]; then
            compose down --remove-orphans --volumes
        else
            compose down --remove-orphans
        fi
        ;;
    logs) shift; compose logs --no-color --tail 100 "$@" ;;
    ps) shift; compose ps "$@" ;;
    health) shift; service_health "$1" ;;
    image-env)
        # The image variables `up` would use, as shell assignments (for scripts that call
        # compose themselves): eval "$(docker/stack.sh image-env)".
        choose_images >&2
        for var in "${!stand_in[@]}"; do
            printf 'export %s=%q\n' "$var" "${!var}"
        done
        ;;
    free-ports)
        # N free loopback ports on one line, for stacks that must not collide with another.
        python3 - "${2:-5}" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
        ;;
    *) die "usage: docker/stack.sh up|down|logs [-f] [SERVICE]|ps|health SERVICE|image-env|free-ports [N]" ;;
esac
