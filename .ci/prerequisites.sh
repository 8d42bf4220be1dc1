#!/usr/bin/env bash
# Installs what `make up` or `make test` needs, the same way for a new user and for CI:
#
#   .ci/prerequisites.sh up       # Compose and the build tools
#   .ci/prerequisites.sh offline  # the Debian packages whose binaries go into the offline images
#                                 # (Prometheus, Alertmanager, node-exporter, busybox): what
#                                 # `make up` needs when no registry answers
#   .ci/prerequisites.sh test     # all of that, plus what the tests run: shellcheck, promtool
#                                 # and amtool, python3-yaml, vagrant, chromium, cargo-nextest,
#                                 # Compose v2, aiosmtpd (PyPI), podman and runc
#   .ci/prerequisites.sh vm       # all of that, plus what make test-vm needs: vagrant-libvirt,
#                                 # libvirt, QEMU (Debian 12's, pinned), mmdebstrap
#
# It installs only what is missing and says what before it does. When it cannot install (not
# root and no password-less sudo), it prints the one command that would and exits 1, before
# anything is built. Nothing missing: it does nothing, in well under a second.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }
die() { printf 'prerequisites: %s\n' "$*" >&2; exit 1; }

mode=${1:-}
# Debian packages, by who needs them:
#   the images and the stack: docker-compose (Compose v1), prometheus, prometheus-alertmanager,
#     prometheus-node-exporter, busybox-static (their binaries go into the offline images);
#   the Rust build: gcc (linker), libc6-dev, pkg-config, make, git, ca-certificates;
#   the stack scripts: curl, jq, procps, python3;
#   tests/deploy/check.sh: promtool, amtool (the prometheus packages above), python3-yaml;
#   tests/deploy/dashboard_nodes.sh: prometheus, busybox-static (the selfheal/busybox image);
#   tests/vagrant/check.sh: vagrant, vagrant-libvirt, ruby; lint: shellcheck;
#   crates/selfheal/tests/status_page.rs: chromium (headless), fonts-dejavu-core (its text);
#   .ci/install-compose-v2.sh (Compose v2 for the stack tests): python3-pip;
#   tests/swarm/run.sh (extra engines in network namespaces): iproute2, iptables, util-linux;
#   tests/podman/run.sh (selfheal on a rootful Podman): podman (with conmon), runc (the test's
#     runtime: crun fails on cgroup v1 hybrid hosts), netavark and aardvark-dns (its network);
#   tests/vagrant/vm.sh (make test-vm, mode vm): libvirt-daemon-system, libvirt-clients,
#     dnsmasq-base, mmdebstrap, e2fsprogs, rsync, and QEMU below.
up_packages=(ca-certificates curl git jq make gcc libc6-dev pkg-config procps python3 docker-compose)
offline_packages=(prometheus prometheus-alertmanager prometheus-node-exporter busybox-static)
case $mode in
    up) packages=("${up_packages[@]}") ;;
    offline) packages=("${offline_packages[@]}") ;;
    test | vm)
        packages=("${up_packages[@]}" "${offline_packages[@]}" python3-pip python3-yaml shellcheck vagrant vagrant-libvirt ruby
            chromium fonts-dejavu-core iproute2 iptables util-linux podman runc netavark aardvark-dns)
        if [[ $mode == vm ]]; then
            packages+=(libvirt-daemon-system libvirt-clients dnsmasq-base mmdebstrap e2fsprogs rsync)
        fi
        ;;
    *) printf 'usage: %s up|offline|test|vm\n' "$0" >&2; exit 2 ;;
esac
command -v dockerd >/dev/null || packages+=(docker.io)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    elif ((${#missing[@]} > 0)); then
        die "missing Debian packages; install them with:
    sudo apt-get install -y --no-install-recommends ${missing[*]}"
    fi
fi

if ((${#missing[@]} > 0)); then
    log "installing Debian packages: ${missing[*]}"
    "${as_root[@]}" apt-get update -qq </dev/null
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

# QEMU for test-vm: qemu-system-x86 with qemu-system-common and qemu-utils of the same version.
# A newer qemu-utils (a backport) does not fit Debian 12's qemu-system-x86, so all three are
# installed at the version apt would give qemu-system-x86, downgrading qemu-utils if needed.
if [[ $mode == vm ]]; then
    qemu=(qemu-system-x86 qemu-system-common qemu-utils)
    have=()
    for p in "${qemu[@]}"; do
        have+=("$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null || true)")
    done
    if [[ -z ${have[0]} || ${have[0]} != "${have[1]}" || ${have[0]} != "${have[2]}" ]]; then
        ((${#missing[@]} > 0)) || "${as_root[@]}" apt-get update -qq </dev/null
        version=$(apt-cache policy qemu-system-x86 | awk '$1 == "Candidate:" { print $2 }')
        [[ -n $version && $version != "(none)" ]] || die "apt has no qemu-system-x86 to install"
        pinned=()
        for p in "${qemu[@]}"; do pinned+=("$p=$version"); done
        log "installing QEMU $version: ${pinned[*]}"
        "${as_root[@]}" apt-get install -y -qq --no-install-recommends --allow-downgrades "${pinned[@]}" </dev/null >/dev/null
    fi
fi

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs) first"

if [[ $mode == test || $mode == vm ]]; then
    if ! command -v cargo-nextest >/dev/null; then
        log "installing cargo-nextest (cargo install --locked cargo-nextest)"
        cargo install --locked cargo-nextest </dev/null
    fi
    # The stack tests run under Compose v1 and v2.
    bash .ci/install-compose-v2.sh
    # The notification tests send email to a loopback SMTP server (crates/selfheal/tests/smtp_sink.py).
    if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
        log "installing aiosmtpd (python3 -m pip install --user aiosmtpd==1.4.6)"
        python3 -m pip install --quiet --user aiosmtpd==1.4.6 </dev/null ||
            python3 -m pip install --quiet --user --break-system-packages aiosmtpd==1.4.6 </dev/null
    fi
fi
