# shellcheck shell=bash
# The parts of tests/vagrant/vm.sh (make test-vm) that decide without touching a VM: what is
# missing, whether memory and ports suffice, which accelerator, the box's cache key, what changed
# between two snapshots. Sourced by vm.sh, and unit-tested by tests/vagrant/check.sh.

# What test-vm runs, as "COMMAND|Debian package".
VM_TOOLS=(
    "qemu-system-x86_64|qemu-system-x86"
    "qemu-img|qemu-utils"
    "virsh|libvirt-clients"
    "libvirtd|libvirt-daemon-system"
    "virtlogd|libvirt-daemon-system"
    "dnsmasq|dnsmasq-base"
    "vagrant|vagrant"
    "mmdebstrap|mmdebstrap"
    "mkfs.ext4|e2fsprogs"
    "rsync|rsync"
    "curl|curl"
    "jq|jq"
    "docker|docker.io"
)

# One line per tool of VM_TOOLS that is not on PATH, naming the package that brings it.
missing_tools() {
    local entry
    for entry in "${VM_TOOLS[@]}"; do
        command -v "${entry%%|*}" >/dev/null 2>&1 ||
            printf 'missing %s: apt-get install %s (or: bash .ci/prerequisites.sh vm)\n' "${entry%%|*}" "${entry#*|}"
    done
}

# memory_problem MEMINFO NEED_MIB: one line when MemAvailable is below NEED_MIB, else nothing.
memory_problem() {
    local meminfo=$1 need=$2 avail
    avail=$(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' "$meminfo")
    [[ -n $avail ]] || { echo "cannot read MemAvailable from $meminfo"; return 0; }
    if ((avail < need)); then
        printf 'only %s MiB of memory available, the VM needs %s MiB (SELFHEAL_VM_MEMORY plus 512 for QEMU): free memory or lower SELFHEAL_VM_MEMORY (at least 2048)\n' "$avail" "$need"
    fi
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT and it can be bound.
port_free() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# accel_choice REQUESTED KVM_WORKS(0/1) -> "kvm" or "emulation" on stdout, or a line on stderr
# and status 1 when KVM was asked for and cannot run a guest here.
accel_choice() {
    local requested=$1 kvm_works=$2
    case $requested in
        emulation) echo emulation ;;
        kvm)
            if ((kvm_works)); then echo kvm; else
                echo "SELFHEAL_VM_ACCEL=kvm, but KVM cannot run a guest here; unset it (auto) or set emulation" >&2
                return 1
            fi
            ;;
        auto | "") if ((kvm_works)); then echo kvm; else echo emulation; fi ;;
        *)
            echo "SELFHEAL_VM_ACCEL=$requested: expected auto, kvm or emulation" >&2
            return 1
            ;;
    esac
}

# box_key FILE...: the cache key of a box, from the files that build it (12 hex digits).
box_key() {
    cat "$@" | sha256sum | cut -c1-12
}

# free_subnet ROUTES_TEXT: the first 192.168.N.0/24 (N from 200 to 254) that no route or
# address in ROUTES_TEXT (ip route / ip addr output) mentions.
free_subnet() {
    local routes=$1 n
    for ((n = 200; n <= 254; n++)); do
        if ! grep -q "192\.168\.$n\." <<<"$routes"; then
            echo "192.168.$n.0/24"
            return 0
        fi
    done
    return 1
}

# snapshot_changes BEFORE AFTER: lines "NAME ID STARTED_AT" of containers; prints what a second
# provisioning changed (a container recreated, restarted, gone or new), nothing when identical.
snapshot_changes() {
    local before=$1 after=$2
    diff <(sort "$before") <(sort "$after") | sed -n 's/^< /before: /p; s/^> /after:  /p'
}

# provision_changes OUTPUT_FILE: the lines of a provisioning run that say it changed something.
provision_changes() {
    grep -E '^==> installing:|^    wrote: |^    docker load |^    docker build |^    docker compose build|Recreat|Creat(ed|ing)|Start(ed|ing)' "$1" || true
}
