#!/usr/bin/env bash
# Runs the compose stack: `up` (start, wait until healthy, print URLs), `down`, `logs`, `ps`.
# Used by `make up/down/logs` and by the smoke test (tests/docker/smoke.sh).
#
# Env: COMPOSE (docker-compose or "docker compose"), COMPOSE_PROJECT_NAME (selfheal),
#      UP_TIMEOUT seconds to wait for health (180), VOLUMES=1 makes `down` delete the volumes,
#      plus the variables compose.yaml reads (ports, SELFHEAL_BIND, CHAOS_TOKEN, ...).
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

# "SERVICE IMAGE" per service of the resolved compose file.
service_images() {
    compose config | awk '
        /^[^ ]/ { in_services = ($0 == "services:"); next }
        in_services && /^  [^ ]/ { service = $1; sub(/:$/, "", service); next }
        in_services && /^    image:/ { print service, $2 }'
}

# The services to start: every one whose image exists, or for Grafana can be pulled.
select_services() {
    local service image
    while read -r service image; do
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
    *) die "usage: docker/stack.sh up|down|logs [-f] [SERVICE]|ps|health SERVICE|free-ports [N]" ;;
esac
