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
# shellcheck source=tests/lib/poll.sh
source "$repo/tests/lib/poll.sh"
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
  expect "no password or chaos token passed when unset" test \
    "$(jq -c '.[0].vm.calls[] | select(.method == "provision") | .options.env | keys' "$cfg")" = '["SELFHEAL_DIR","SELFHEAL_IMAGES_DIR"]'
  expect "KVM by default: no libvirt driver set" test "$(jq -r '.[0].vm.providers.libvirt.driver // "unset"' "$cfg")" = unset
  expect "libvirt: a virtio RNG from the host" test "$(jq -c '.[0].vm.providers.libvirt.calls[] | select(.method == "random") | .options' "$cfg")" = '{"model":"random"}'
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

vagrantfile_vm_test_settings() {
  local cfg="$work/vagrant-test.json" images="$work/vm-images"
  mkdir -p "$images"
  vagrant_config SELFHEAL_VM_BOX=selfheal-bookworm-abc SELFHEAL_VM_ACCEL=emulation SELFHEAL_VM_APP_PORT=18080 \
    SELFHEAL_VM_GRAFANA_PORT=13000 SELFHEAL_VM_IMAGES="$images" CHAOS_TOKEN=tok SELFHEAL_VM_CA_CERTS=/etc/cas >"$cfg"
  expect "extra CAs synced and named to the provisioner" test "$(jq -r '.[0].vm.calls[]
      | select(.method == "synced_folder" and .args[0] == "/etc/cas") | .args[1]' "$cfg"),$(jq -r '.[0].vm.calls[]
      | select(.method == "provision") | .options.env.SELFHEAL_CA_DIR' "$cfg")" = /opt/selfheal-ca,/opt/selfheal-ca
  expect "box from SELFHEAL_VM_BOX" test "$(jq -r '.[0].vm.box' "$cfg")" = selfheal-bookworm-abc
  expect "emulation: libvirt driver qemu, a TCG CPU model" test \
    "$(jq -c '.[0].vm.providers.libvirt | [.driver, .cpu_mode, .cpu_model]' "$cfg")" = '["qemu","custom","qemu64"]'
  expect "emulation: the provisioner is told (SELFHEAL_EMULATED_CPU=1)" test \
    "$(jq -r '.[0].vm.calls[] | select(.method == "provision") | .options.env.SELFHEAL_EMULATED_CPU' "$cfg")" = 1
  expect "host ports moved, guest ports kept" test "$(jq -c '[.[0].vm.calls[] | select(.method == "network") | .options
      | "\(.guest)>\(.host)"] | sort' "$cfg")" = '["3000>13000","8080>18080","9090>9090","9093>9093","9100>9100"]'
  expect "saved images synced to /opt/selfheal-images" test "$(jq -r --arg d "$images" '.[0].vm.calls[]
      | select(.method == "synced_folder" and .args[0] == $d) | .args[1]' "$cfg")" = /opt/selfheal-images
  expect "CHAOS_TOKEN passed to the provisioner" test \
    "$(jq -r '.[0].vm.calls[] | select(.method == "provision") | .options.env.CHAOS_TOKEN' "$cfg")" = tok
  local out
  if out="$(env SELFHEAL_VM_ACCEL=fast vagrant validate --ignore-provider 2>&1)"; then
    echo "vagrant validate accepted SELFHEAL_VM_ACCEL=fast"
    return 1
  fi
  grep -q "SELFHEAL_VM_ACCEL must be kvm or emulation" <<<"$out" || { echo "$out"; return 1; }
}
check "Vagrantfile: SELFHEAL_VM_BOX, _ACCEL=emulation, per-port host ports, saved images, CHAOS_TOKEN" vagrantfile_vm_test_settings

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
  env_file_content "$a" 999 chaos-tok >"$work/env"
  expect "env file carries the chaos token" grep -qx 'CHAOS_TOKEN=chaos-tok' "$work/env"
  expect "online: no image variables" bash -c "! grep -q _IMAGE= '$work/env'"
  env_file_content "$a" 999 t PROMETHEUS_IMAGE=selfheal/prometheus:latest >"$work/env-offline"
  expect "offline: image variables" grep -qx 'PROMETHEUS_IMAGE=selfheal/prometheus:latest' "$work/env-offline"
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
  expect "saved_images, Docker 25+ archive" test "$(jq -n '[{Config: "blobs/sha256/abc", RepoTags: ["selfheal/app:latest"]}]' | saved_images)" = \
    "sha256:abc selfheal/app:latest"
  expect "saved_images, older archive" test "$(jq -n '[{Config: "def.json", RepoTags: ["a:1", "a:2"]}]' | saved_images | tr '\n' ';')" = \
    "sha256:def a:1;sha256:def a:2;"
  expect "installed docker-ce stays" test "$(docker_source 1 0 0)" = docker-ce
  expect "installed docker.io stays, even online" test "$(docker_source 0 1 1)" = docker.io
  expect "nothing installed, repo answers: docker-ce" test "$(docker_source 0 0 1)" = docker-ce
  expect "nothing installed, repo silent: docker.io" test "$(docker_source 0 0 0)" = docker.io
}
check "provision.sh pure functions (os check, apt line, password, env file, verdicts, build plan, saved images, engine)" pure_functions

vm_lib_functions() {
  # shellcheck source=tests/vagrant/vm-lib.sh
  source "$here/vm-lib.sh"
  printf 'MemTotal: 24000000 kB\nMemAvailable: 2097152 kB\n' >"$work/meminfo"
  expect "2 GiB available is too little for 3584 MiB" grep -q 'only 2048 MiB of memory available, the VM needs 3584 MiB' \
    <<<"$(memory_problem "$work/meminfo" 3584)"
  expect "2 GiB is enough for 1024 MiB" test -z "$(memory_problem "$work/meminfo" 1024)"
  expect "auto with KVM working: kvm" test "$(accel_choice auto 1)" = kvm
  expect "auto without KVM: emulation" test "$(accel_choice auto 0)" = emulation
  expect "emulation asked: emulation" test "$(accel_choice emulation 1)" = emulation
  expect "kvm asked, KVM not working: one line, failure" bash -c "! (source '$here/vm-lib.sh'; accel_choice kvm 0) 2>'$work/accel.err' && grep -q 'KVM cannot run a guest' '$work/accel.err'"
  expect "a bad value: failure" bash -c "! (source '$here/vm-lib.sh'; accel_choice fast 1) 2>/dev/null"
  printf 'a\n' >"$work/k1"
  printf 'b\n' >"$work/k2"
  expect "box key: 12 hex digits, changes with the script" test "$(box_key "$work/k1" | grep -cxE '[0-9a-f]{12}')" = 1 -a "$(box_key "$work/k1")" != "$(box_key "$work/k2")"
  expect "free subnet skips used ones" test "$(free_subnet $'192.168.200.0/24 dev virbr1\n    inet 192.168.201.1/24')" = 192.168.202.0/24
  local free taken
  free="$(bash "$repo/docker/stack.sh" free-ports 1)"
  expect "a free port is free" port_free "$free"
  # A port the kernel picks and a holder keeps bound (no race with another process over a
  # port chosen first and bound later).
  python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(5)' "$work/held-port" &
  local holder=$!
  eventually 5 test -s "$work/held-port" || { kill "$holder"; echo "the port holder did not start"; return 1; }
  taken="$(cat "$work/held-port")"
  eventually 5 bash -c "! (source '$here/vm-lib.sh'; port_free $taken)" || { kill "$holder"; echo "expected: a bound port is taken"; return 1; }
  kill "$holder"
  expect "a missing tool named with its package" bash -c "source '$here/vm-lib.sh'; PATH=/nonexistent missing_tools | /bin/grep -qx 'missing mmdebstrap: apt-get install mmdebstrap (or: bash .ci/prerequisites.sh vm)'"
  printf '/a 1 t1\n/b 2 t2\n' >"$work/snap1"
  printf '/b 2 t2\n/a 1 t1\n' >"$work/snap2"
  printf '/a 1 t9\n/b 2 t2\n' >"$work/snap3"
  expect "same containers, other order: no change" test -z "$(snapshot_changes "$work/snap1" "$work/snap2")"
  expect "a restarted container named" test "$(snapshot_changes "$work/snap1" "$work/snap3" | tr '\n' ';')" = "before: /a 1 t1;after:  /a 1 t9;"
  printf '==> Docker Engine: docker-ce is installed\n    unchanged: /etc/x\n    wrote: /etc/y\n' >"$work/prov"
  expect "a written file counts as a change" test "$(provision_changes "$work/prov")" = "    wrote: /etc/y"
}
check "test-vm helpers (memory, accelerator, box key, subnet, ports, missing tools, snapshots)" vm_lib_functions

# --- provision.sh run against stubbed system commands --------------------------------------------

# Real tools the script may use; anything else it calls is "command not found" and fails the run.
mkdir -p "$work/bin"
for tool in bash cat cmp install mkdir mktemp rm sed grep awk date sleep head tail base64 tr jq dirname stat tar find sort touch; do
  ln -s "$(command -v "$tool")" "$work/bin/$tool"
done
for stub in apt-get dpkg dpkg-query systemctl id usermod gpg curl docker update-ca-certificates; do
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
  expect_file_has "$m/calls.1" '^apt-get install .*ca-certificates.*curl.*jq.*gnupg'
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

no_container() {
  local m
  m="$(new_machine nocontainer)"
  # compose ps lists every service but node-exporter.
  grep -v node-exporter "$m/state/services" >"$m/state/services.tmp"
  expect_provision_fails "$m" 'not ready: node-exporter: no container' SELFHEAL_STUB_PS_SERVICES="$m/state/services.tmp"
}
check "provision: fails naming a service that has no container" no_container

emulated_cpu() {
  local m
  m="$(new_machine emulated)"
  mkdir -p "$m/project/deploy/vagrant"
  : >"$m/project/deploy/vagrant/compose.emulation.yaml"
  provision "$m" SELFHEAL_EMULATED_CPU=1 || { cat "$m/out.1"; return 1; }
  expect_file_has "$m/out.1" 'health checks: QEMU.s software emulation .*every 30 s with a 20 s timeout'
  # Every compose call, up and ps included, with the emulation file merged over compose.yaml.
  expect_file_lacks "$m/calls.1" "^docker compose --project-directory $m/project -f $m/project/compose.yaml --env-file"
  expect_file_has "$m/calls.1" "^docker compose .*-f $m/project/compose.yaml -f $m/project/deploy/vagrant/compose.emulation.yaml .* up -d"
  expect_file_has "$m/calls.1" "^docker compose .*-f $m/project/deploy/vagrant/compose.emulation.yaml .* ps -a --format"
  provision "$m" || { cat "$m/out.2"; return 1; }
  expect_file_has "$m/out.2" "health checks: compose.yaml's own"
  expect_file_lacks "$m/calls.2" 'compose.emulation.yaml'
  rm "$m/project/deploy/vagrant/compose.emulation.yaml"
  expect_provision_fails "$m" 'compose.emulation.yaml not found' SELFHEAL_EMULATED_CPU=1
}
check "provision: under emulation the health checks come from compose.emulation.yaml, and it says so" emulated_cpu

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

# offline_machine NAME: a machine whose Docker repository and registry do not answer, with the
# host's saved images (one archive per image, manifest only) and a fake Compose installer.
offline_machine() {
  local m name
  m="$(new_machine "$1")"
  touch "$m/state/offline.download.docker.com" "$m/state/offline.registry-1.docker.io"
  jq '.services |= with_entries(if (.value.image | startswith("selfheal/")) then .value.image += ":latest" else . end)' \
    "$m/state/compose.json" >"$m/state/compose.tmp" && mv "$m/state/compose.tmp" "$m/state/compose.json"
  mkdir -p "$m/images" "$m/project/.ci"
  for name in demo-app watchdog prometheus alertmanager node-exporter; do
    mkdir -p "$m/archive/$name"
    jq -n --arg n "$name" '[{Config: "blobs/sha256/id-\($n)", RepoTags: ["selfheal/\($n):latest"], Layers: []}]' \
      >"$m/archive/$name/manifest.json"
    tar -C "$m/archive/$name" -cf "$m/images/$name.tar" manifest.json
  done
  # shellcheck disable=SC2016 # the fake installer's own variables
  printf '%s\n' '#!/bin/bash' 'echo "compose-installer COMPOSE_PLUGIN_DIR=$COMPOSE_PLUGIN_DIR" >>"$STUB_STATE/calls.log"' \
    'if [[ -e $COMPOSE_PLUGIN_DIR/docker-compose ]]; then echo "==> Compose v2 already installed"; exit 0; fi' \
    'mkdir -p "$COMPOSE_PLUGIN_DIR" && touch "$COMPOSE_PLUGIN_DIR/docker-compose"' >"$m/project/.ci/install-compose-v2.sh"
  printf '%s\n' "$m"
}

offline_first_and_second_run() {
  local m
  m="$(offline_machine offline)"
  mkdir -p "$m/ca"
  printf 'FAKE CA\n' >"$m/ca/proxy.crt"
  provision "$m" SELFHEAL_IMAGES_DIR="$m/images" SELFHEAL_CA_DIR="$m/ca" || { cat "$m/out.1"; return 1; }
  expect_file_has "$m/root/usr/local/share/ca-certificates/selfheal/proxy.crt" '^FAKE CA$'
  expect_file_has "$m/calls.1" '^update-ca-certificates'
  expect_file_has "$m/out.1" "Docker's apt repository \\(https://download.docker.com/linux/debian\\) does not answer within 5s: Debian's docker.io"
  expect_file_has "$m/calls.1" '^apt-get install .*docker.io .*apparmor'
  expect_file_lacks "$m/calls.1" '^apt-get install .*(gnupg|python3-pip)'
  expect_file_lacks "$m/calls.1" '^apt-get install .*docker-ce'
  expect "no Docker apt source written" test ! -e "$m/root/etc/apt/sources.list.d/docker.list"
  expect_file_has "$m/calls.1" "^compose-installer COMPOSE_PLUGIN_DIR=$m/root/usr/local/lib/docker/cli-plugins"
  expect_file_has "$m/out.1" 'no registry answers \(https://registry-1.docker.io/v2/, 5s\): loading the images the host built'
  for name in demo-app watchdog prometheus alertmanager node-exporter; do
    expect_file_has "$m/calls.1" "^docker load -q -i $m/images/$name.tar"
  done
  expect_file_lacks "$m/calls.1" '^docker (build|compose .* build)'
  expect_file_has "$m/out.1" 'not starting grafana: grafana/grafana-oss:11.2.0 is not here and no registry answers'
  expect_file_has "$m/calls.1" '^docker compose .* up -d --no-build --remove-orphans app watchdog prometheus alertmanager node-exporter$'
  for var in PROMETHEUS ALERTMANAGER NODE_EXPORTER; do
    expect_file_has "$m/root/etc/selfheal/selfheal.env" "^${var}_IMAGE=selfheal/"
  done
  expect_file_has "$m/root/etc/selfheal/selfheal.env" '^CHAOS_TOKEN=[A-Za-z0-9]{24}$'
  expect_file_has "$m/out.1" 'Grafana +not started'
  expect_file_has "$m/out.1" 'all services healthy'

  fingerprint_files "$m" >"$m/files.1"
  provision "$m" SELFHEAL_IMAGES_DIR="$m/images" SELFHEAL_CA_DIR="$m/ca" || { cat "$m/out.2"; return 1; }
  expect_file_lacks "$m/calls.2" '^update-ca-certificates'

  fingerprint_files "$m" >"$m/files.2"
  expect "second offline run rewrote no file" cmp -s "$m/files.1" "$m/files.2"
  expect_file_lacks "$m/calls.2" '^(apt-get|usermod|gpg) '
  expect_file_lacks "$m/calls.2" '^docker load'
  expect_file_has "$m/out.2" "Debian's docker.io is installed; keeping it"
  expect_file_has "$m/out.2" 'unchanged: image selfheal/prometheus:latest'
  expect_file_has "$m/out.2" 'chaos token: kept from'
}
check "provision offline: docker.io + Compose from PyPI, the host's images loaded, Grafana left out, said; second run changes nothing" offline_first_and_second_run

offline_without_images() {
  local m
  m="$(offline_machine noimages)"
  expect_provision_fails "$m" 'no registry answers and no saved images in .*save-images.sh' SELFHEAL_IMAGES_DIR="$m/nothing-here"
  expect_file_lacks "$m/calls.1" '^docker compose .* up'
}
check "provision offline: no saved images stops with the command that makes them" offline_without_images

repo_answers() {
  local m
  m="$(new_machine online)"
  provision "$m" || { cat "$m/out.1"; return 1; }
  expect_file_has "$m/out.1" "Docker's apt repository answers: docker-ce"
  expect_file_has "$m/out.1" 'images: a registry answers'
  expect_file_lacks "$m/calls.1" 'compose-installer|docker load'
}
check "provision online: says Docker's repository and the registry answer" repo_answers

summary="vagrant checks: $passed passed, $failed failed"
((skipped == 0)) || summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
