#!/usr/bin/env bash
# make test-vm: the project's Vagrantfile booted for real with vagrant-libvirt, provisioned by the
# real deploy/vagrant/provision.sh, checked from the host, provisioned again, destroyed.
#
#  1. Box: a Debian 12 libvirt box built from Debian's packages (deploy/vagrant/build-box.sh),
#     cached in $SELFHEAL_VM_CACHE (/var/cache/selfheal/vm) under a key hashed from the build
#     script; a changed script builds a new one and drops the old.
#  2. Accelerator: KVM when a KVM guest boots here (a kernel-only probe with a deadline), else
#     QEMU's software emulation (libvirt driver "qemu"). SELFHEAL_VM_ACCEL=auto|kvm|emulation.
#  3. libvirt: uses a libvirtd that answers, or starts libvirtd and virtlogd and stops them (by
#     pid) at the end; its own storage pool and management network, named after this run.
#  4. `vagrant up --provider=libvirt` with the images the host built (`make images`) saved and
#     synced in; with no registry here the VM loads them (provision.sh's offline path).
#  5. From the host, through the forwarded ports (free ones, picked here): every service healthy,
#     the status page, a hang injected into the app healed by the watchdog, the recovery counted
#     by Prometheus (app_recovery_events_total, selfheal_recovery_duration_seconds) and in the
#     watchdog's incidents.
#  6. `vagrant provision` again: no container recreated or restarted, nothing installed/written.
#  7. On exit, even on failure: vagrant destroy -f, then the domain, volumes, pool, network and
#     the daemons this run started are removed, and it checks none is left.
# Timings (with the accelerator and each one's floor) are printed at the end: BENCHMARKS.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/vagrant/vm-lib.sh
source "$here/vm-lib.sh"
# shellcheck source=tests/lib/poll.sh
source "$repo/tests/lib/poll.sh"

cache=${SELFHEAL_VM_CACHE:-/var/cache/selfheal/vm}
memory=${SELFHEAL_VM_MEMORY:-3072}
cpus=${SELFHEAL_VM_CPUS:-2}
up_timeout=${SELFHEAL_VM_UP_TIMEOUT:-1500}
run_id="selfheal-vm-$(date +%s)-$$"
started=$SECONDS

log() { printf '[test-vm %4ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { printf 'test-vm: %s\n' "$*" >&2; exit 1; }

# --- preflight: one line per problem, before anything starts --------------------------------------

[[ $(id -u) == 0 ]] || die "run as root: it starts libvirtd and uses qemu:///system (sudo make test-vm)"
problems="$(missing_tools)"
[[ -z $problems ]] || die "$problems"
vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt' ||
    die "missing the vagrant-libvirt plugin: apt-get install vagrant-libvirt"
problem="$(memory_problem /proc/meminfo $((memory + 512)))"
[[ -z $problem ]] || die "$problem"

# Host side of the forwarded ports: the ones given, checked, or free ones picked here.
declare -A port_var=([grafana]=SELFHEAL_VM_GRAFANA_PORT [prometheus]=SELFHEAL_VM_PROMETHEUS_PORT
    [alertmanager]=SELFHEAL_VM_ALERTMANAGER_PORT [app]=SELFHEAL_VM_APP_PORT [watchdog]=SELFHEAL_VM_WATCHDOG_PORT)
declare -A port
read -r -a free < <(bash "$repo/docker/stack.sh" free-ports 5)
i=0
for service in grafana prometheus alertmanager app watchdog; do
    var=${port_var[$service]}
    if [[ -n ${!var:-} ]]; then
        port[$service]=${!var}
        port_free "${!var}" || die "port ${!var} ($service, $var) is taken on 127.0.0.1: set $var to a free port or unset it"
    else
        port[$service]=${free[$i]}
    fi
    export "$var=${port[$service]}"
    i=$((i + 1))
done

# --- cleanup: registered before anything is created ------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/$run_id.XXXXXX")
# libvirt's QEMU runs as libvirt-qemu: it must reach the pool in here.
chmod 0755 "$work"
export VAGRANT_HOME=$work/vagrant-home VAGRANT_DOTFILE_PATH=$work/dotfile VAGRANT_CHECKPOINT_DISABLE=1
export VAGRANT_DEFAULT_PROVIDER=libvirt LIBVIRT_DEFAULT_URI=qemu:///system
started_daemons=()
network_made=0
pool_made=0
kvm_saved=""

virsh_q() { virsh -q "$@" 2>/dev/null; }

cleanup() {
    local rc=$? pid name left=()
    trap - EXIT INT TERM
    set +e
    log "cleanup (exit status $rc)"
    if [[ -d $VAGRANT_DOTFILE_PATH ]]; then
        (cd "$repo" && timeout 300 vagrant destroy -f) >"$work/destroy.log" 2>&1 || {
            echo "test-vm: vagrant destroy failed:" >&2
            tail -n 20 "$work/destroy.log" >&2
        }
        # vagrant-libvirt's port-forwarding ssh processes, should destroy have missed one.
        for file in "$VAGRANT_DOTFILE_PATH"/machines/default/libvirt/pids/ssh_*.pid; do
            [[ -f $file ]] && kill "$(cat "$file")" 2>/dev/null
        done
    fi
    if virsh_q version >/dev/null; then
        for name in $(virsh_q list --all --name | grep "^$run_id" || true); do
            virsh_q destroy "$name" >/dev/null
            virsh_q undefine "$name" --nvram >/dev/null || virsh_q undefine "$name" >/dev/null
        done
        if ((pool_made)); then
            for name in $(virsh_q vol-list "$run_id" | awk '{print $1}'); do
                virsh_q vol-delete --pool "$run_id" "$name" >/dev/null
            done
            virsh_q pool-destroy "$run_id" >/dev/null
            virsh_q pool-undefine "$run_id" >/dev/null
        fi
        if ((network_made)) && virsh_q net-info "$run_id" >/dev/null; then
            virsh_q net-destroy "$run_id" >/dev/null
            virsh_q net-undefine "$run_id" >/dev/null
        fi
        virsh_q list --all --name | grep -q "^$run_id" && left+=("domain")
        virsh_q pool-list --all --name | grep -qx "$run_id" && left+=("pool $run_id")
        virsh_q net-list --all --name | grep -qx "$run_id" && left+=("network $run_id")
    fi
    if [[ -n $kvm_saved ]]; then
        chgrp "${kvm_saved% *}" /dev/kvm && chmod "${kvm_saved#* }" /dev/kvm
    fi
    for pid in "${started_daemons[@]}"; do
        kill "$pid" 2>/dev/null
        eventually 20 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null
    done
    rm -rf "$work"
    if ((${#left[@]} > 0)); then
        echo "test-vm: left behind: ${left[*]}" >&2
        ((rc != 0)) || rc=1
    fi
    log "done: exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. the box --------------------------------------------------------------------------------------

key=$(box_key "$repo/deploy/vagrant/build-box.sh")
box=selfheal-bookworm-$key
mkdir -p "$cache/boxes" "$VAGRANT_HOME"
chmod 0755 "$cache" "$cache/boxes"
# The box list lives in the cache; everything else of Vagrant's home is this run's.
ln -s "$cache/boxes" "$VAGRANT_HOME/boxes"
box_seconds=0
if [[ -d $cache/boxes/$box ]]; then
    log "box $box: cached ($cache/boxes)"
else
    log "box $box: building (deploy/vagrant/build-box.sh; cache $cache)"
    t0=$SECONDS
    bash "$repo/deploy/vagrant/build-box.sh" "$work/$box.box"
    vagrant box add --name "$box" "$work/$box.box" >"$work/box-add.log" 2>&1 ||
        { cat "$work/box-add.log" >&2; die "vagrant box add failed"; }
    rm -f "$work/$box.box"
    box_seconds=$((SECONDS - t0))
    # Boxes of older build scripts are never used again.
    for old in "$cache"/boxes/selfheal-bookworm-*; do
        [[ $old == "$cache/boxes/$box" ]] || { log "dropping the old box ${old##*/}"; rm -rf "$old"; }
    done
    log "box built and added in ${box_seconds}s"
fi
chmod -R a+rX "$cache/boxes/$box"
box_dir=$(find "$cache/boxes/$box" -name metadata.json -printf '%h\n' | head -n 1)
[[ -n $box_dir ]] || die "box $box has no metadata.json under $cache/boxes/$box"

# --- 2. the accelerator -------------------------------------------------------------------------------

# A KVM guest that boots the box's kernel to its root-mount panic proves KVM runs guests here;
# nested KVM on some hosts hangs instead, which the deadline catches.
kvm_works=0
if [[ ${SELFHEAL_VM_ACCEL:-auto} != emulation && -w /dev/kvm ]]; then
    # (In a subshell, whose stderr also takes bash's note when QEMU aborts.)
    if (timeout 10 qemu-system-x86_64 -accel kvm -cpu host -m 256 -smp 1 -display none -no-reboot \
        -nodefaults -serial stdio -kernel "$box_dir/vmlinuz" \
        -append "console=ttyS0 root=/dev/nonexistent panic=-1" >"$work/kvm-probe.log" 2>&1 </dev/null) 2>/dev/null &&
        grep -q 'Kernel panic' "$work/kvm-probe.log"; then
        kvm_works=1
    fi
fi
accel=$(accel_choice "${SELFHEAL_VM_ACCEL:-auto}" "$kvm_works") || exit 1
if [[ $accel == kvm ]]; then
    log "accelerator: KVM (a KVM guest booted its kernel)"
else
    why="SELFHEAL_VM_ACCEL=emulation"
    if [[ ${SELFHEAL_VM_ACCEL:-auto} != emulation ]]; then
        why="a KVM guest did not boot its kernel within 10s ($(tail -n 1 "$work/kvm-probe.log" 2>/dev/null | cut -c1-120 || echo no /dev/kvm))"
        # A host that is itself a PVM guest (the machine this was built on: a Firecracker VM
        # booted with nested_pvm=1) offers /dev/kvm through kvm_pvm, which runs only guest
        # kernels built for PVM; Debian's kernel is not one, and hangs right after it loads.
        [[ ! -d /sys/module/kvm_pvm ]] ||
            why+="; this host's /dev/kvm is kvm_pvm (PVM), which runs only guest kernels built for PVM, not Debian's"
    fi
    log "accelerator: emulation (QEMU TCG, libvirt driver qemu): $why"
fi
export SELFHEAL_VM_ACCEL=$accel SELFHEAL_VM_MEMORY=$memory SELFHEAL_VM_CPUS=$cpus

# --- 3. libvirt ----------------------------------------------------------------------------------------

# libvirt caches what each QEMU binary can do, and drops the cache when it says KVM was usable
# at probing time but the QEMU user (libvirt-qemu, group kvm) cannot open /dev/kvm now. Where
# /dev/kvm is root's alone (0600, no udev rule applied, as on the machine this was built on),
# every libvirt call then probes QEMU again: 2 to 4 s each, about 100 s of one `vagrant up`.
# For the run, /dev/kvm gets what Debian's udev rule gives it (root:kvm 0660); cleanup puts the
# old owner and mode back.
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null && [[ $(stat -c '%G %a' /dev/kvm) != "kvm 660" ]]; then
    kvm_saved=$(stat -c '%g %a' /dev/kvm)
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    log "/dev/kvm: root:kvm 0660 for the run, as udev sets it (was gid/mode $kvm_saved), so libvirt keeps its QEMU probe"
fi
if virsh_q version >/dev/null; then
    log "libvirtd answers already: using it"
else
    log "starting virtlogd and libvirtd (stopped again at the end)"
    for daemon in virtlogd libvirtd; do
        "$daemon" -d || die "$daemon -d failed"
        pid=$(cat "/run/$daemon.pid" 2>/dev/null) || die "$daemon left no /run/$daemon.pid"
        started_daemons=("$pid" "${started_daemons[@]}")
    done
    eventually 30 virsh_q version >/dev/null || die "libvirtd does not answer on qemu:///system"
fi
mkdir -p "$work/pool"
virsh_q pool-define-as "$run_id" dir --target "$work/pool" >/dev/null || die "cannot define storage pool $run_id"
pool_made=1
virsh_q pool-start "$run_id" >/dev/null || die "cannot start storage pool $run_id"
subnet=$(free_subnet "$(ip -4 route; ip -4 addr)") || die "no free 192.168.200-254.0/24 for the VM's network"
# vagrant-libvirt creates the management network; cleanup removes it.
network_made=1
log "libvirt: pool $run_id in $work/pool, network $run_id on $subnet, domain prefix $run_id"

# Settings of this machine only, in this run's Vagrant home: Vagrant merges them under the
# project's Vagrantfile, which stays the one that is tested.
cat >"$VAGRANT_HOME/Vagrantfile" <<EOF
Vagrant.configure("2") do |config|
  config.vm.provider "libvirt" do |lv|
    lv.default_prefix = "$run_id"
    lv.storage_pool_name = "$run_id"
    lv.management_network_name = "$run_id"
    lv.management_network_address = "$subnet"
    lv.graphics_type = "none"
  end
end
EOF

# --- 4. the images and vagrant up ----------------------------------------------------------------------

images_dir=$cache/images
log "saving the host's images for the VM (deploy/vagrant/save-images.sh $images_dir)"
bash "$repo/deploy/vagrant/save-images.sh" "$images_dir"
export SELFHEAL_VM_IMAGES=$images_dir SELFHEAL_VM_BOX=$box
# The host's own extra CAs (a TLS-inspecting proxy's, on the machine this was built on): the VM
# reaches PyPI through the same network and must trust them too.
if [[ -z ${SELFHEAL_VM_CA_CERTS:-} ]] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    export SELFHEAL_VM_CA_CERTS=/usr/local/share/ca-certificates
    log "the host's extra CA certificates go to the VM too ($SELFHEAL_VM_CA_CERTS)"
fi
CHAOS_TOKEN=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
export CHAOS_TOKEN

# Each line of Vagrant's output with the seconds since it started, to split boot from provisioning.
stamp() { local t0=$1 line; while IFS= read -r line; do printf '%6.1f %s\n' "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$line"; done; }

cd "$repo"
log "vagrant up --provider=libvirt (box $box, $accel, $cpus CPUs, $memory MiB; ports: $(for s in "${!port[@]}"; do printf '%s=%s ' "$s" "${port[$s]}"; done))"
t_up=$(date +%s.%N)
# (Vagrant's upload progress bar, one carriage return per step, is left out.)
if ! timeout "$up_timeout" vagrant up --provider=libvirt 2>&1 | stdbuf -oL tr '\r' '\n' | grep --line-buffered -v 'Progress: ' |
    stamp "$t_up" | tee "$work/up.log"; then
    die "vagrant up failed (output above)"
fi
up_seconds=$(awk -v a="$t_up" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
boot_seconds=$(awk '/Running provisioner: selfheal/ { printf "%.0f", $1; exit }' "$work/up.log")
grep -q 'all services healthy' "$work/up.log" || die "provisioning did not report all services healthy"
log "vagrant up: ${up_seconds}s to all healthy (boot and rsync until the provisioner started: ${boot_seconds}s)"

# --- 5. checks from the host ------------------------------------------------------------------------

url() { printf 'http://127.0.0.1:%s%s' "${port[$1]}" "$2"; }
answers() { curl -fsS -o /dev/null --max-time 3 "$1"; }
promq() { # EXPR -> the first sample's value, 0 when empty
    curl -fsS --max-time 5 "$(url prometheus /api/v1/query)" --data-urlencode "query=$1" |
        jq -r '.data.result[0].value[1] // "0"'
}
incidents() { curl -fsS --max-time 5 "$(url watchdog /api/v1/incidents)" | jq 'if type == "array" then length else (.incidents // []) | length end'; }

for check in "app /health" "watchdog /healthz" "prometheus /-/ready" "alertmanager /-/ready"; do
    read -r service path <<<"$check"
    eventually 60 answers "$(url "$service" "$path")" || die "$service does not answer on $(url "$service" "$path") (forwarded port)"
    log "ok: $service answers on $(url "$service" "$path")"
done
if grep -q 'not starting grafana' "$work/up.log"; then
    log "ok: grafana not started, as provisioning said (no registry answers, no offline Grafana image)"
else
    eventually 60 answers "$(url grafana /api/health)" || die "grafana does not answer on $(url grafana /api/health)"
    log "ok: grafana answers on $(url grafana /api/health)"
fi
targets_up() {
    curl -fsS --max-time 5 "$(url prometheus /api/v1/targets)" |
        jq -e '(.data.activeTargets | length) > 0 and all(.data.activeTargets[]; .health == "up")' >/dev/null
}
eventually 60 targets_up || die "not every Prometheus scrape target is up in the VM"
log "ok: every Prometheus target up"
curl -fsS --max-time 5 -H 'Accept: text/html' "$(url watchdog /)" | grep -qi '<html' ||
    die "the watchdog's status page (GET / with Accept: text/html) does not answer with HTML"
log "ok: status page answers on $(url watchdog /)"

# The fault: /chaos/hang makes every request of the app hang; only the watchdog's probe sees it.
recoveries_before=$(promq 'sum(app_recovery_events_total)')
durations_before=$(promq 'sum(selfheal_recovery_duration_seconds_count)')
duration_sum_before=$(promq 'sum(selfheal_recovery_duration_seconds_sum)')
incidents_before=$(incidents)
log "fault: POST /chaos/hang (recoveries counted so far: $recoveries_before, incidents: $incidents_before)"
t_fault=$(date +%s.%N)
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H "Authorization: Bearer $CHAOS_TOKEN" \
    "$(url app /chaos/hang)") || true
[[ $code == 202 ]] || die "POST /chaos/hang answered $code, expected 202"
# The first /health that answers again after the hang is a new process: the hang never ends.
app_healthy() { curl -fs -o /dev/null --max-time 1 "$(url app /health)"; }
# Emulated, the watchdog's restart alone may take a minute (deploy/vagrant/compose.emulation.yaml).
fault_deadline=120
[[ $accel == kvm ]] || fault_deadline=300
POLL_EVERY=0.2 eventually "$fault_deadline" app_healthy || die "the app did not answer /health within ${fault_deadline}s of the fault"
fault_seconds=$(awk -v a="$t_fault" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
log "app healthy again ${fault_seconds}s after the fault (seen from the host)"
counted() {
    local r d
    r=$(promq 'sum(app_recovery_events_total)')
    d=$(promq 'sum(selfheal_recovery_duration_seconds_count)')
    awk -v r="$r" -v r0="$recoveries_before" -v d="$d" -v d0="$durations_before" 'BEGIN { exit !(r > r0 && d > d0) }'
}
eventually 60 counted || die "Prometheus did not count the recovery (app_recovery_events_total, selfheal_recovery_duration_seconds_count)"
recovered_in=$(awk -v s="$(promq 'sum(selfheal_recovery_duration_seconds_sum)')" -v s0="$duration_sum_before" \
    -v d="$(promq 'sum(selfheal_recovery_duration_seconds_count)')" -v d0="$durations_before" \
    'BEGIN { printf "%.1f", (s - s0) / (d - d0) }')
trigger=$(curl -fsS --max-time 5 "$(url prometheus /api/v1/query)" --data-urlencode 'query=app_recovery_events_total > 0' |
    jq -r '[.data.result[].metric | "\(.trigger)/\(.result)"] | join(",")')
log "ok: Prometheus counted it: app_recovery_events_total $recoveries_before -> $(promq 'sum(app_recovery_events_total)') ($trigger); the watchdog measured ${recovered_in}s first failure -> healthy"
more_incidents() { (($(incidents) > incidents_before)); }
eventually 30 more_incidents || die "the watchdog's /api/v1/incidents has no new incident"
log "ok: the watchdog recorded the incident ($incidents_before -> $(incidents))"

# The floor of fault -> healthy: a plain restart of the app, timed inside the VM.
# shellcheck disable=SC2016 # expanded by the VM's shell
restart_ms=$(vagrant ssh -c 'cid=$(sudo docker ps -q -f label=com.docker.compose.service=app); t=$(date +%s%N);
    sudo docker restart -t 3 "$cid" >/dev/null; until curl -fs -o /dev/null --max-time 1 http://127.0.0.1:8080/health; do
    (( $(date +%s%N) - t < 300000000000 )) || exit 1; sleep 0.1; done;
    echo $(( ($(date +%s%N) - t) / 1000000 ))' 2>/dev/null | tr -dc '0-9')
restart_seconds=$(awk -v m="$restart_ms" 'BEGIN { printf "%.1f", m / 1000 }')
log "floor: docker restart of the app -> /health answers, inside the VM: ${restart_seconds}s"

# --- 6. provisioning again changes nothing ----------------------------------------------------------

snapshot() {
    vagrant ssh -c "sudo docker ps -aq | xargs -r sudo docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}'" 2>/dev/null |
        tr -d '\r' | grep '^/' >"$1"
}
snapshot "$work/before"
[[ -s $work/before ]] || die "cannot list the VM's containers over vagrant ssh"
t0=$(date +%s.%N)
vagrant ssh -c true >/dev/null 2>&1
ssh_seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
log "vagrant provision (again)"
t0=$(date +%s.%N)
vagrant provision 2>&1 | tee "$work/provision2.log" || die "the second vagrant provision failed (output above)"
provision_seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
snapshot "$work/after"
changes=$(snapshot_changes "$work/before" "$work/after")
[[ -z $changes ]] || die "the second provisioning recreated or restarted containers:
$changes"
changed=$(provision_changes "$work/provision2.log")
[[ -z $changed ]] || die "the second provisioning changed something:
$changed"
log "ok: second provisioning in ${provision_seconds}s: $(wc -l <"$work/after") containers with the same ids and StartedAt, nothing installed, written or loaded (floor: vagrant ssh -c true ${ssh_seconds}s)"

# --- timings ----------------------------------------------------------------------------------------
cat <<EOF
test-vm timings (accelerator: $accel; $cpus vCPUs, $memory MiB; host $(nproc) cores):
  box build + vagrant box add      ${box_seconds}s (0: cached)
  vagrant up -> all healthy        ${up_seconds}s   floor: boot + rsync until the provisioner starts ${boot_seconds}s
  second vagrant provision         ${provision_seconds}s   floor: vagrant ssh -c true ${ssh_seconds}s
  fault (hang) -> /health again    ${fault_seconds}s from the host; watchdog's own measure ${recovered_in}s   floor: docker restart -> /health ${restart_seconds}s
EOF
log "passed"
