#!/usr/bin/env bash
# make test-vm, first part: the real tests/vagrant/vm.sh and deploy/vagrant/build-box.sh given
# bad input. Each case must fail with exactly one line on stderr saying what to install or
# change, and start nothing: no libvirtd, no QEMU, no Vagrant, no run directory.
#
#   missing QEMU             qemu-system-x86_64 not on PATH
#   missing libvirt          libvirtd not on PATH
#   a taken port             SELFHEAL_VM_APP_PORT set to a port something listens on
#   too little memory        SELFHEAL_VM_MEMORY above what /proc/meminfo has available
#   box build, no network    an empty box cache and a Debian mirror that does not answer
#
# Needs root (vm.sh refuses anything else first) and what `.ci/prerequisites.sh vm` installs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/lib/poll.sh
source "$repo/tests/lib/poll.sh"

[[ $(id -u) == 0 ]] || { echo "vm-bad-input: run as root (as make test-vm does)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-vm-bad-input.XXXXXX")
holder=""
cleanup() {
    [[ -z $holder ]] || kill "$holder" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

failures=0
# The processes and run directories a case must not leave (or start).
traces() {
    {
        pgrep -x 'libvirtd|virtlogd|qemu-system-x86|qemu-system-x86_64' || true
        pgrep -f '/usr/bin/vagrant' || true
        find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'selfheal-vm-[0-9]*' 2>/dev/null || true
    } | sort
}

# case NAME EXPECTED_TEXT ENV... -- COMMAND...: COMMAND fails, its stderr is one line holding
# EXPECTED_TEXT, and nothing new is running or left.
case_() {
    local name=$1 expected=$2 before after rc=0 lines
    shift 2
    local -a env=()
    while [[ $1 != -- ]]; do env+=("$1"); shift; done
    shift
    before=$(traces)
    env "${env[@]}" "$@" >"$work/out" 2>"$work/err" </dev/null || rc=$?
    after=$(traces)
    lines=$(grep -c . "$work/err" || true)
    if ((rc == 0)); then
        echo "FAIL $name: exit status 0"
    elif ((lines != 1)); then
        echo "FAIL $name: $lines lines on stderr, expected one:"
        sed 's/^/    /' "$work/err"
    elif ! grep -qF -- "$expected" "$work/err"; then
        echo "FAIL $name: stderr does not say '$expected':"
        sed 's/^/    /' "$work/err"
    elif [[ $before != "$after" ]]; then
        echo "FAIL $name: something was started or left behind:"
        diff <(echo "$before") <(echo "$after") | sed 's/^/    /'
    else
        echo "ok   $name: $(cat "$work/err")"
        return 0
    fi
    failures=$((failures + 1))
}

# A PATH holding every command of this one but HIDDEN...
path_without() {
    local dir=$work/path-without-$1 p f
    mkdir -p "$dir"
    IFS=: read -r -a dirs <<<"$PATH"
    for p in "${dirs[@]}"; do
        [[ -d $p ]] || continue
        for f in "$p"/*; do
            [[ -x $f && ! -e $dir/${f##*/} ]] && ln -s "$f" "$dir/${f##*/}"
        done
    done
    for f in "$@"; do rm -f "$dir/$f"; done
    echo "$dir"
}

vm=("bash" "$here/vm.sh")

case_ "missing QEMU" "missing qemu-system-x86_64: apt-get install qemu-system-x86" \
    PATH="$(path_without qemu qemu-system-x86_64)" -- "${vm[@]}"
case_ "missing libvirt" "missing libvirtd: apt-get install libvirt-daemon-system" \
    PATH="$(path_without libvirt libvirtd)" -- "${vm[@]}"

# A port something listens on, given as the app's host port.
port=$(bash "$repo/docker/stack.sh" free-ports 1)
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(600)' "$port" &
holder=$!
listening() { ! python3 -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; }
eventually 10 listening || { echo "vm-bad-input: could not hold port $port" >&2; exit 1; }
case_ "a taken port" "port $port (app, SELFHEAL_VM_APP_PORT) is taken on 127.0.0.1" \
    SELFHEAL_VM_APP_PORT="$port" -- "${vm[@]}"
kill "$holder"
holder=""

available=$(awk '$1 == "MemAvailable:" { print int($2 / 1024) }' /proc/meminfo)
case_ "too little memory" "of memory available, the VM needs" \
    SELFHEAL_VM_MEMORY=$((available + 1024)) -- "${vm[@]}"

# Nothing listens on a fresh free port: the mirror's connection is refused at once.
dead=$(bash "$repo/docker/stack.sh" free-ports 1)
case_ "box build without network (build-box.sh)" "cannot reach http://127.0.0.1:$dead/debian (no network?)" \
    SELFHEAL_VM_MIRROR="http://127.0.0.1:$dead/debian" -- bash "$repo/deploy/vagrant/build-box.sh" "$work/x.box"
[[ -z $(find "$work" -maxdepth 1 -name '.box-build.*') && ! -e $work/x.box ]] ||
    { echo "FAIL box build without network: left $(ls -A "$work")"; failures=$((failures + 1)); }
# The same through vm.sh, with an empty box cache so that it must build the box.
case_ "box build without network (vm.sh, empty cache)" "cannot reach http://127.0.0.1:$dead/debian (no network?)" \
    SELFHEAL_VM_MIRROR="http://127.0.0.1:$dead/debian" SELFHEAL_VM_CACHE="$work/cache" -- "${vm[@]}"

if ((failures > 0)); then
    echo "vm-bad-input: $failures case(s) failed" >&2
    exit 1
fi
echo "vm-bad-input: every bad input gave one line and started nothing"
