#!/usr/bin/env bash
# Checks of the VM path that need no hypervisor (run by `make test-vagrant`):
#  - `vagrant validate`: core config, the VirtualBox block (VBoxManage stubbed), the libvirt block
#    (Debian's vagrant-libvirt plugin), and the env settings as the Vagrantfile applies them;
#  - shellcheck on every shell script in the repository, `bash -n` on the provision script;
#  - deploy/vagrant/provision.sh's pure functions, sourced;
#  - the provision script run for real against stubbed system commands in a temp PATH and a temp
#    root: first run installs, second run changes nothing, and each failure path fails loudly.
# Closing line: "vagrant checks: N passed, N failed[, N skipped]"; exit 1 if anything failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
provision="$repo/deploy/vagrant/provision.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/selfheal-vagrant-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Vagrant keeps machine state in .vagrant/ beside the Vagrantfile; keep the work tree clean.
export VAGRANT_DOTFILE_PATH="$work/vagrant-dotfile"
export VAGRANT_CHECKPOINT_DISABLE=1

passed=0
failed=0
skipped=0

# check NAME COMMAND...: runs COMMAND in a subshell with errexit on (so any failing step inside
# fails the check) and prints its output only when it fails.
check() {
  local name="$1" rc
  shift
  set +e
  (
    set -e
    "$@"
  ) >"$work/check.out" 2>&1
  rc=$?
  set -e
  if ((rc == 0)); then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL  %s (exit %d)\n' "$name" "$rc"
    sed 's/^/      /' "$work/check.out" | tail -n 40
  fi
}

skip() {
  skipped=$((skipped + 1))
  printf 'skip  %s: %s\n' "$1" "$2"
}

# Assertion helpers: print what was expected and return 1.
expect() {
  local what="$1"
  shift
  "$@" || { echo "expected: $what"; return 1; }
}
expect_file_has() {
  grep -qE -- "$2" "$1" || { echo "expected /$2/ in $1:"; cat "$1"; return 1; }
}
expect_file_lacks() {
  if grep -qE -- "$2" "$1"; then
    echo "unexpected /$2/ in $1:"
    grep -E -- "$2" "$1"
    return 1
  fi
}

# --- shell scripts -------------------------------------------------------------------------------

# Every *.sh plus every file whose first line is a sh/bash shebang; build output and git excluded.
shell_scripts() {
  local f first
  while IFS= read -r -d '' f; do
    if [[ "$f" == *.sh ]]; then
      printf '%s\n' "$f"
      continue
    fi
    first="$(head -c 128 "$f" 2>/dev/null | head -n 1 | tr -d '\0')" || true
    if [[ "$first" =~ ^#!.*[/[:space:]](ba)?sh([[:space:]]|$) ]]; then
      printf '%s\n' "$f"
    fi
  done < <(find "$repo" \( -path "$repo/target" -o -path "$repo/.git" -o -path "$repo/.build" \
    -o -path "$repo/.vagrant" -o -name node_modules \) -prune -o -type f -print0) | sort
}

mapfile -t scripts < <(shell_scripts)
# shellcheck disable=SC2016 # $0, $1 and $@ belong to the inner shell
check "shell scripts found (${#scripts[@]}), including provision.sh and check.sh" \
  bash -c 'printf "%s\n" "$@" | grep -qx "$0" && printf "%s\n" "$@" | grep -qx "$1"' \
  "$provision" "$here/check.sh" "${scripts[@]}"
for script in "${scripts[@]}"; do
  check "shellcheck ${script#"$repo"/}" shellcheck -x "$script"
done
check "bash -n deploy/vagrant/provision.sh" bash -n "$provision"

# --- Vagrantfile ---------------------------------------------------------------------------------

cd "$repo"
check "vagrant validate --ignore-provider" vagrant validate --ignore-provider

# Vagrant checks VirtualBox is installed before validating its block; a VBoxManage that only
# answers --version lets the real provider validate the config.
mkdir -p "$work/vbox-bin"
# shellcheck disable=SC2016 # $1 belongs to the stub
printf '#!/bin/sh\n[ "$1" = --version ] && echo 7.0.20r163906\n' >"$work/vbox-bin/VBoxManage"
chmod +x "$work/vbox-bin/VBoxManage"
check "vagrant validate (virtualbox provider)" \
  env PATH="$work/vbox-bin:$PATH" VAGRANT_DEFAULT_PROVIDER=virtualbox vagrant validate

if vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt'; then
  check "vagrant validate (libvirt provider)" env VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate
elif [[ -n "${CI:-}" ]]; then
  check "vagrant validate (libvirt provider): vagrant-libvirt plugin installed (Debian package vagrant-libvirt)" false
else
  skip "vagrant validate (libvirt provider)" "vagrant-libvirt plugin not installed (apt-get install vagrant-libvirt)"
fi

vagrant_rejects() {
  local out
  if out="$(env "$@" vagrant validate --ignore-provider 2>&1)"; then
    echo "vagrant validate accepted $*"
    return 1
  fi
  grep -q "${1%%=*} must be a whole number" <<<"$out" || { echo "$out"; return 1; }
}
check "Vagrantfile rejects SELFHEAL_VM_CPUS=two" vagrant_rejects SELFHEAL_VM_CPUS=two
check "Vagrantfile rejects SELFHEAL_VM_MEMORY=512 (below 2048)" vagrant_rejects SELFHEAL_VM_MEMORY=512

vagrant_config() {
  env -u SELFHEAL_VM_CPUS -u SELFHEAL_VM_MEMORY -u GRAFANA_ADMIN_PASSWORD "$@" \
    ruby "$here/vagrantfile_config.rb" "$repo/Vagrantfile"
}

vagrantfile_defaults() {
  local cfg="$work/vagrant-default.json"
  vagrant_config >"$cfg"
  expect "box debian/bookworm64" test "$(jq -r '.[0].vm.box' "$cfg")" = debian/bookworm64
  expect "2 CPUs, 4096 MiB on both providers" test "$(jq -c '[.[0].vm.providers[] | [.cpus, .memory]] | unique' "$cfg")" = '[[2,4096]]'
  expect "providers virtualbox and libvirt" test "$(jq -c '.[0].vm.providers | keys' "$cfg")" = '["libvirt","virtualbox"]'
  expect "forwarded ports 3000 9090 9093 8080 9100 on 127.0.0.1, same port on both sides" test \
    "$(jq -c '[.[0].vm.calls[] | select(.method == "network" and .args[0] == "forwarded_port") | .options
      | select(.host_ip == "127.0.0.1" and .host == .guest) | .guest] | sort' "$cfg")" = '[3000,8080,9090,9093,9100]'
  expect "no other network" test "$(jq '[.[0].vm.calls[] | select(.method == "network")] | length' "$cfg")" = 5
  expect "project rsynced to /opt/selfheal without target/ and .git/" test "$(jq -r '.[0].vm.calls[]
      | select(.method == "synced_folder" and .args[1] == "/opt/selfheal") | .options
      | select(.type == "rsync" and (.rsync__exclude | index("target/")) and (.rsync__exclude | index(".git/")))
      | "ok"' "$cfg")" = ok
  expect "default /vagrant share disabled" test "$(jq -r '.[0].vm.calls[]
      | select(.method == "synced_folder" and .args[1] == "/vagrant") | .options.disabled' "$cfg")" = true
  local path
  path="$(jq -r '.[0].vm.calls[] | select(.method == "provision") | .options.path' "$cfg")"
  expect "provisioner is deploy/vagrant/provision.sh" test "$path" = deploy/vagrant/provision.sh
  expect "no password passed when GRAFANA_ADMIN_PASSWORD is unset" test \
    "$(jq -c '.[0].vm.calls[] | select(.method == "provision") | .options.env | keys' "$cfg")" = '["SELFHEAL_DIR"]'
}
check "Vagrantfile defaults: box, CPUs/memory, ports on 127.0.0.1, rsync, provisioner" vagrantfile_defaults

vagrantfile_env() {
  local cfg="$work/vagrant-env.json"
  vagrant_config SELFHEAL_VM_CPUS=3 SELFHEAL_VM_MEMORY=6144 GRAFANA_ADMIN_PASSWORD=from-host >"$cfg"
  expect "3 CPUs, 6144 MiB on both providers" test "$(jq -c '[.[0].vm.providers[] | [.cpus, .memory]] | unique' "$cfg")" = '[[3,6144]]'
  expect "GRAFANA_ADMIN_PASSWORD passed to the provisioner" test \
    "$(jq -r '.[0].vm.calls[] | select(.method == "provision") | .options.env.GRAFANA_ADMIN_PASSWORD' "$cfg")" = from-host
}
check "Vagrantfile applies SELFHEAL_VM_CPUS, SELFHEAL_VM_MEMORY, GRAFANA_ADMIN_PASSWORD" vagrantfile_env

# --- provision.sh: pure functions ----------------------------------------------------------------

pure_functions() {
  # shellcheck source=/dev/null  # checked on its own above
  source "$provision"
  printf 'ID=debian\nVERSION_CODENAME=bookworm\n' >"$work/os-debian"
  printf 'ID=ubuntu\nVERSION_CODENAME=noble\n' >"$work/os-ubuntu"
  expect "bookworm from a Debian os-release" test "$(os_codename "$work/os-debian")" = bookworm
  # shellcheck disable=SC2016 # $0 and $1 belong to the inner shell
  expect "Ubuntu refused" bash -c '! (source "$0"; os_codename "$1") 2>/dev/null' "$provision" "$work/os-ubuntu"
  expect "Docker apt line" test "$(docker_repo_line arm64 bookworm)" = \
    "deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable"
  local a b
  a="$(generate_password)"
  b="$(generate_password)"
  expect "24 letters/digits" grep -qxE '[A-Za-z0-9]{24}' <<<"$a"
  expect "two passwords differ" test "$a" != "$b"
  env_file_content "$a" 999 >"$work/env"
  expect "env file carries the socket's group" grep -qx 'DOCKER_GID=999' "$work/env"
  expect "env file binds 0.0.0.0" grep -qx 'SELFHEAL_BIND=0.0.0.0' "$work/env"
  expect "password read back" test "$(env_file_value "$work/env" GRAFANA_ADMIN_PASSWORD)" = "$a"
  expect "missing env file reads empty" test -z "$(env_file_value "$work/nope" GRAFANA_ADMIN_PASSWORD)"
  expect "running+healthy is ready" test -z "$(container_verdict app running healthy)"
  expect "running without healthcheck is ready" test -z "$(container_verdict app running none)"
  expect "starting is not ready" test "$(container_verdict app running starting)" = "app: health is starting"
  expect "exited is not ready" test "$(container_verdict app exited none)" = "app: container is exited"
  expect "all targets up" test -z "$(jq -n '{data:{activeTargets:[{labels:{job:"app",instance:"app:8080"},health:"up"}]}}' | prometheus_targets_down)"
  expect "a down target named" test "$(jq -n '{data:{activeTargets:[{labels:{job:"node",instance:"node-exporter:9100"},health:"down",lastError:"refused"}]}}' | prometheus_targets_down)" = \
    "prometheus target node (node-exporter:9100) is down: refused"
  expect "no targets is not ready" test -n "$(jq -n '{data:{activeTargets:[]}}' | prometheus_targets_down)"
  # shellcheck disable=SC2016 # a literal $X, as a Dockerfile has it
  printf 'FROM rust:1 AS builder\nFROM scratch as watchdog\nFROM --platform=$X scratch AS demo-app\nFROM scratch\n' >"$work/Dockerfile"
  expect "Dockerfile stages" test "$(dockerfile_stages "$work/Dockerfile" | tr '\n' ' ')" = "builder watchdog demo-app "
  expect "build plan" test "$(jq -n '{services:{a:{build:{context:"."},image:"selfheal/demo-app"},
      w:{image:"selfheal/watchdog:dev"},g:{image:"grafana/grafana-oss:11"},p:{image:"selfheal/prometheus"}}}' |
    build_plan builder watchdog | tr '\n' ';')" = "compose a;target watchdog selfheal/watchdog:dev;missing selfheal/prometheus;"
}
check "provision.sh pure functions (os check, apt line, password, env file, verdicts, build plan)" pure_functions

# --- provision.sh run against stubbed system commands --------------------------------------------

# Real tools the script may use; anything else it calls is "command not found" and fails the run.
mkdir -p "$work/bin"
for tool in bash cat cmp install mkdir mktemp rm sed grep awk date sleep head tail base64 tr jq dirname stat; do
  ln -s "$(command -v "$tool")" "$work/bin/$tool"
done
for stub in apt-get dpkg dpkg-query systemctl id usermod gpg curl docker; do
  ln -s "$here/stub-commands.sh" "$work/bin/$stub"
done
DOCKER_FPR=9DC858229FC7DD38854AE2D88D81803C0EBFCD88

# new_machine NAME: a fresh fake Debian 12 VM (state, root, synced project) under $work/NAME.
new_machine() {
  local m="$work/$1"
  mkdir -p "$m/state" "$m/root/etc" "$m/project/docker"
  printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n' >"$m/root/etc/os-release"
  : >"$m/state/calls.log"
  # The socket docker-ce creates, owned by group docker (gid 4242 on this fake machine).
  mkdir -p "$m/root/var/run"
  : >"$m/root/var/run/docker.sock"
  chgrp 4242 "$m/root/var/run/docker.sock"
  touch "$m/state/user"
  echo "$DOCKER_FPR" >"$m/state/key-fpr"
  printf 'app\nwatchdog\nprometheus\nalertmanager\nnode-exporter\ngrafana\n' >"$m/state/services"
  jq -n '{services: {
      app: {image: "selfheal/demo-app", build: {context: ".", dockerfile: "docker/Dockerfile", target: "demo-app"}},
      watchdog: {image: "selfheal/watchdog", build: {context: ".", dockerfile: "docker/Dockerfile", target: "watchdog"}},
      prometheus: {image: "selfheal/prometheus"},
      alertmanager: {image: "selfheal/alertmanager"},
      "node-exporter": {image: "selfheal/node-exporter"},
      grafana: {image: "grafana/grafana-oss:11.2.0"}}}' >"$m/state/compose.json"
  jq -n '{data: {activeTargets: [
      {labels: {job: "app", instance: "app:8080"}, health: "up"},
      {labels: {job: "node", instance: "node-exporter:9100"}, health: "up"}]}}' >"$m/state/targets.json"
  : >"$m/project/compose.yaml"
  printf 'FROM rust:1 AS build\nFROM scratch AS prometheus\nFROM scratch AS alertmanager\nFROM scratch AS node-exporter\n' \
    >"$m/project/docker/Dockerfile"
  printf '%s\n' "$m"
}

# provision MACHINE [VAR=value...]: runs the real script with a clean environment; output in
# MACHINE/out.N, calls of this run in MACHINE/calls.N (N counts runs).
provision() {
  local m="$1" n rc
  shift
  n=$(($(cat "$m/runs" 2>/dev/null || echo 0) + 1))
  echo "$n" >"$m/runs"
  local before
  before=$(wc -l <"$m/state/calls.log")
  set +e
  env -i PATH="$work/bin" HOME="$m" STUB_STATE="$m/state" STUB_PATH="$PATH" SELFHEAL_PROVISION_ROOT="$m/root" \
    SELFHEAL_DIR="$m/project" SELFHEAL_HEALTH_TIMEOUT=3 SELFHEAL_POLL_INTERVAL=0.1 "$@" \
    "$work/bin/bash" "$provision" >"$m/out.$n" 2>&1
  rc=$?
  set -e
  tail -n +"$((before + 1))" "$m/state/calls.log" >"$m/calls.$n"
  return "$rc"
}

fingerprint_files() {
  local m="$1"
  (cd "$m/root" && find . -type f ! -name os-release -printf '%p %m %T@\n' | sort && find . -type f -exec cat {} + | cksum)
}

first_and_second_run() {
  local m
  m="$(new_machine idempotent)"
  provision "$m" || { cat "$m/out.1"; return 1; }
  expect_file_has "$m/calls.1" '^apt-get install .*ca-certificates.*curl.*gnupg.*jq'
  expect_file_has "$m/calls.1" '^curl .*https://download.docker.com/linux/debian/gpg'
  expect_file_has "$m/calls.1" '^apt-get install .*docker-ce .*docker-ce-cli .*containerd.io .*docker-buildx-plugin .*docker-compose-plugin'
  expect "apt-get update after the Docker source was written" \
    awk '/^apt-get update/ { n++ } /^apt-get install.*docker-ce/ { exit !(n >= 2) }' "$m/calls.1"
  expect_file_has "$m/root/etc/apt/sources.list.d/docker.list" \
    '^deb \[arch=amd64 signed-by=/etc/apt/keyrings/docker.asc\] https://download.docker.com/linux/debian bookworm stable$'
  expect "keyring installed" test -s "$m/root/etc/apt/keyrings/docker.asc"
  expect_file_has "$m/root/etc/selfheal/selfheal.env" '^SELFHEAL_BIND=0\.0\.0\.0$'
  expect_file_has "$m/root/etc/selfheal/selfheal.env" '^GRAFANA_ADMIN_PASSWORD=[A-Za-z0-9]{24}$'
  expect_file_has "$m/root/etc/selfheal/selfheal.env" '^DOCKER_GID=4242$'
  expect "env file is 0600" test "$(stat -c %a "$m/root/etc/selfheal/selfheal.env")" = 600
  expect_file_has "$m/calls.1" '^usermod -aG docker vagrant'
  expect_file_has "$m/calls.1" "^docker compose .*--env-file $m/root/etc/selfheal/selfheal.env build"
  for stage in prometheus alertmanager node-exporter; do
    expect_file_has "$m/calls.1" "^docker build -f $m/project/docker/Dockerfile --target $stage -t selfheal/$stage "
  done
  expect_file_has "$m/calls.1" '^docker compose .* up -d'
  local password
  password="$(sed -n 's/^GRAFANA_ADMIN_PASSWORD=//p' "$m/root/etc/selfheal/selfheal.env")"
  expect_file_has "$m/out.1" "http://localhost:3000 .*password: $password"
  for port in 9090 9093 8080 9100; do expect_file_has "$m/out.1" "http://localhost:$port"; done
  expect_file_has "$m/out.1" 'all services healthy'

  fingerprint_files "$m" >"$m/files.1"
  provision "$m" || { cat "$m/out.2"; return 1; }
  fingerprint_files "$m" >"$m/files.2"
  expect "second run rewrote no file (paths, modes, mtimes, content)" cmp -s "$m/files.1" "$m/files.2"
  expect_file_lacks "$m/calls.2" '^(apt-get|usermod|gpg) '
  expect_file_lacks "$m/calls.2" '^systemctl (enable|start) '
  expect_file_lacks "$m/calls.2" '^curl .*/gpg'
  expect_file_has "$m/out.2" 'unchanged: /etc/apt/sources.list.d/docker.list'
  expect_file_has "$m/out.2" 'password: kept from'
  expect_file_has "$m/out.2" "password: $password"
}
check "provision: first run installs and starts; second run installs nothing, rewrites nothing" first_and_second_run

password_from_host() {
  local m
  m="$(new_machine password)"
  provision "$m" || { cat "$m/out.1"; return 1; }
  provision "$m" GRAFANA_ADMIN_PASSWORD=Host0nly || { cat "$m/out.2"; return 1; }
  expect_file_has "$m/root/etc/selfheal/selfheal.env" '^GRAFANA_ADMIN_PASSWORD=Host0nly$'
  expect_file_has "$m/out.2" 'wrote: /etc/selfheal/selfheal.env'
  provision "$m" GRAFANA_ADMIN_PASSWORD=Host0nly || { cat "$m/out.3"; return 1; }
  expect_file_has "$m/out.3" 'unchanged: /etc/selfheal/selfheal.env'
}
check "provision: GRAFANA_ADMIN_PASSWORD from the host replaces the stored one, once" password_from_host

changed_source() {
  local m
  m="$(new_machine source)"
  provision "$m" || { cat "$m/out.1"; return 1; }
  echo 'deb [arch=amd64] https://download.docker.com/linux/debian bullseye stable' >"$m/root/etc/apt/sources.list.d/docker.list"
  provision "$m" || { cat "$m/out.2"; return 1; }
  expect_file_has "$m/root/etc/apt/sources.list.d/docker.list" 'bookworm stable$'
  expect_file_has "$m/calls.2" '^apt-get update'
  expect_file_lacks "$m/calls.2" '^apt-get install'
}
check "provision: an edited Docker source is rewritten and re-read, nothing reinstalled" changed_source

daemon_stopped() {
  local m
  m="$(new_machine daemon)"
  provision "$m" || { cat "$m/out.1"; return 1; }
  rm "$m/state/svc/docker.active"
  provision "$m" || { cat "$m/out.2"; return 1; }
  expect_file_has "$m/calls.2" '^systemctl start docker'
  expect_file_lacks "$m/calls.2" '^systemctl enable'
}
check "provision: a stopped Docker daemon is started" daemon_stopped

# expect_provision_fails MACHINE MESSAGE_REGEX [VAR=value...]
expect_provision_fails() {
  local m="$1" msg="$2" n
  shift 2
  if provision "$m" "$@"; then
    n=$(cat "$m/runs")
    echo "provision succeeded but should have failed:"
    cat "$m/out.$n"
    return 1
  fi
  n=$(cat "$m/runs")
  expect_file_has "$m/out.$n" "$msg"
}

unhealthy_service() {
  local m
  m="$(new_machine unhealthy)"
  echo unhealthy >"$m/state/health.watchdog"
  expect_provision_fails "$m" 'not ready: watchdog: health is unhealthy'
  expect_file_has "$m/out.1" 'not healthy within 3s'
}
check "provision: fails by its deadline, naming an unhealthy service" unhealthy_service

exited_service() {
  local m
  m="$(new_machine exited)"
  echo exited >"$m/state/status.node-exporter"
  expect_provision_fails "$m" 'not ready: node-exporter: container is exited'
}
check "provision: fails naming a service whose container exited" exited_service

endpoint_down() {
  local m
  m="$(new_machine endpoint)"
  touch "$m/state/down.3000"
  expect_provision_fails "$m" 'not ready: grafana: http://127.0.0.1:3000/api/health does not answer'
}
check "provision: fails when a published endpoint does not answer" endpoint_down

target_down() {
  local m
  m="$(new_machine target)"
  jq -n '{data: {activeTargets: [{labels: {job: "node", instance: "node-exporter:9100"}, health: "down", lastError: "connection refused"}]}}' \
    >"$m/state/targets.json"
  expect_provision_fails "$m" 'not ready: prometheus target node \(node-exporter:9100\) is down'
}
check "provision: fails when a Prometheus scrape target is down" target_down

wrong_key() {
  local m
  m="$(new_machine key)"
  echo 0000000000000000000000000000000000000000 >"$m/state/key-fpr"
  expect_provision_fails "$m" "not Docker's"
  expect "no keyring left behind" test ! -e "$m/root/etc/apt/keyrings/docker.asc"
  expect_file_lacks "$m/calls.1" '^apt-get install .*docker-ce'
}
check "provision: refuses a signing key with the wrong fingerprint" wrong_key

not_debian() {
  local m
  m="$(new_machine ubuntu)"
  printf 'ID=ubuntu\nVERSION_CODENAME=noble\n' >"$m/root/etc/os-release"
  expect_provision_fails "$m" 'provisions Debian'
  expect_file_lacks "$m/calls.1" '^apt-get'
}
check "provision: refuses a system that is not Debian before installing anything" not_debian

no_build_route() {
  local m
  m="$(new_machine route)"
  printf 'FROM rust:1 AS build\n' >"$m/project/docker/Dockerfile"
  expect_provision_fails "$m" 'no way to build selfheal/prometheus'
  expect_file_lacks "$m/calls.1" '^docker compose .* up'
}
check "provision: stops before 'up' when a selfheal image has no build route" no_build_route

summary="vagrant checks: $passed passed, $failed failed"
((skipped == 0)) || summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
