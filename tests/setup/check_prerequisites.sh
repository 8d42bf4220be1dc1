#!/usr/bin/env bash
# .ci/prerequisites.sh against stubbed system commands (dpkg-query, apt-get, id, sudo, cargo):
# nothing missing does nothing; missing as root installs exactly what is missing and says so
# first; missing without root or sudo prints the one command and fails before installing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
script=$root/.ci/prerequisites.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/prereq-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

ok() { printf 'ok    %s\n' "$1"; passed=$((passed + 1)); }
bad() { printf 'FAIL  %s\n' "$1"; failed=$((failed + 1)); }

# stubs MISSING UID SUDO: a bin dir where dpkg-query reports MISSING (space separated) as not
# installed, id -u prints UID, sudo works if SUDO=yes; apt-get and sudo record their calls.
# The stubs are shell scripts written here: their $1 and $* are theirs, not this one's.
# shellcheck disable=SC2016
stubs() {
    local dir=$work/bin-$RANDOM
    mkdir -p "$dir"
    cat >"$dir/dpkg-query" <<STUB
#!/bin/sh
for m in $1; do [ "\$4" = "\$m" ] && exit 1; done
printf 'install ok installed'
STUB
    printf '#!/bin/sh\n[ "$1" = -u ] && echo %s && exit 0\nexec /usr/bin/id "$@"\n' "$2" >"$dir/id"
    printf '#!/bin/sh\necho "apt-get $*" >>%s/calls\n' "$work" >"$dir/apt-get"
    if [[ $3 == yes ]]; then
        printf '#!/bin/sh\n[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\necho "sudo $*" >>%s/calls\nexec "$@"\n' "$work" >"$dir/sudo"
    else
        printf '#!/bin/sh\nexit 1\n' >"$dir/sudo"
    fi
    printf '#!/bin/sh\nexit 0\n' >"$dir/cargo"
    chmod +x "$dir"/*
    echo "$dir"
}

run() { # run BIN MODE -> sets out, rc
    rm -f "$work/calls"
    set +e
    out=$(PATH="$1:$PATH" bash "$script" "$2" 2>&1)
    rc=$?
    set -e
    calls=$(cat "$work/calls" 2>/dev/null || true)
}

run "$(stubs "" 0 no)" up
if [[ $rc -eq 0 && -z $calls && -z $out ]]; then ok "nothing missing: nothing done, nothing said"; else bad "nothing missing: rc=$rc out=$out calls=$calls"; fi

run "$(stubs "prometheus busybox-static" 0 no)" offline
if [[ $rc -eq 0 && $out == *"installing Debian packages: prometheus busybox-static"* &&
    $calls == *"apt-get install -y -qq --no-install-recommends prometheus busybox-static"* ]]; then
    ok "root: says what, then installs exactly what is missing"
else bad "root: rc=$rc out=$out calls=$calls"; fi

# The registry path of `make up` needs none of the offline images' packages.
run "$(stubs "prometheus busybox-static" 0 no)" up
if [[ $rc -eq 0 && -z $calls ]]; then ok "up installs no offline-image packages"; else bad "up: rc=$rc out=$out calls=$calls"; fi

run "$(stubs "prometheus" 1000 no)" offline
if [[ $rc -ne 0 && $out == *"sudo apt-get install -y --no-install-recommends prometheus"* && -z $calls ]]; then
    ok "no root, no sudo: prints the one command and fails before installing"
else bad "no root, no sudo: rc=$rc out=$out calls=$calls"; fi

run "$(stubs "jq" 1000 yes)" up
if [[ $rc -eq 0 && $calls == *"sudo apt-get install -y -qq --no-install-recommends jq"* ]]; then
    ok "no root, password-less sudo: installs through sudo"
else bad "sudo: rc=$rc out=$out calls=$calls"; fi

run "$(stubs "" 0 no)" bogus
if [[ $rc -eq 2 && $out == *"usage"* ]]; then ok "an unknown mode is refused"; else bad "usage: rc=$rc out=$out"; fi

printf 'prerequisites checks: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
