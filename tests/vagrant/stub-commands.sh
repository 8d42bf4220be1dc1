#!/usr/bin/env bash
# Stand-ins for the system commands deploy/vagrant/provision.sh runs, so the script can be run
# for real on a machine with no VM: check.sh links each command name to this file in a temp PATH.
# Every call is appended to $STUB_STATE/calls.log; the fake machine's state (installed packages,
# daemon state, group membership, the stack's health) lives in files under $STUB_STATE.
set -euo pipefail

state="${STUB_STATE:?STUB_STATE must be set}"
cmd="${0##*/}"
# The script under test runs with a PATH of stubs and a few tools; the stubs use the real one.
PATH="${STUB_PATH:?STUB_PATH must be set}"
printf '%s %s\n' "$cmd" "$*" >>"$state/calls.log"

has_arg() {
  local want="$1" arg
  shift
  for arg in "$@"; do [[ "$arg" == "$want" ]] && return 0; done
  return 1
}

case "$cmd" in
  apt-get)
    [[ "${1:-}" == update ]] && exit 0
    [[ "${1:-}" == install ]] || { echo "apt-get stub: unexpected $*" >&2; exit 100; }
    shift
    mkdir -p "$state/pkg"
    for arg in "$@"; do
      [[ "$arg" == -* ]] && continue
      # Refuses packages from a source whose lists were never fetched, like apt would.
      if [[ "$arg" == docker-ce ]] && ! grep -q '^apt-get update' "$state/calls.log"; then
        echo "E: Unable to locate package $arg" >&2
        exit 100
      fi
      touch "$state/pkg/$arg"
    done
    # docker-ce's (and docker.io's) postinst enables and starts the daemon.
    if has_arg docker-ce "$@" || has_arg docker.io "$@"; then
      mkdir -p "$state/svc"
      touch "$state/svc/docker.enabled" "$state/svc/docker.active"
    fi
    ;;
  dpkg-query)
    pkg="${*: -1}"
    if [[ -e "$state/pkg/$pkg" ]]; then printf 'installed'; else
      echo "dpkg-query: no packages found matching $pkg" >&2
      exit 1
    fi
    ;;
  dpkg)
    [[ "${1:-}" == --print-architecture ]] && echo amd64
    ;;
  update-ca-certificates) ;;
  systemctl)
    unit="${*: -1}"
    mkdir -p "$state/svc"
    case "$1" in
      is-enabled) [[ -e "$state/svc/$unit.enabled" ]] ;;
      is-active) [[ -e "$state/svc/$unit.active" ]] ;;
      enable) touch "$state/svc/$unit.enabled" ;;
      start) touch "$state/svc/$unit.active" ;;
      *) echo "systemctl stub: unexpected $*" >&2; exit 1 ;;
    esac
    ;;
  id)
    case "${1:-}" in
      -u) echo 0 ;;
      -nG)
        [[ -e "$state/user" ]] || exit 1
        if [[ -e "$state/user.docker" ]]; then echo "$2 docker"; else echo "$2"; fi
        ;;
      *) [[ -e "$state/user" ]] ;;
    esac
    ;;
  usermod)
    has_arg -aG "$@" && touch "$state/user.docker"
    ;;
  gpg)
    printf 'pub:-:4096:1:8D81803C0EBFCD88:1487788586:::-:::scESA::::::23::0:\n'
    printf 'fpr:::::::::%s:\n' "$(cat "$state/key-fpr")"
    ;;
  curl)
    url="${*: -1}"
    # "Does it answer" probes (-w '%{http_code}'): a file offline.HOST makes HOST silent.
    if has_arg -w "$@"; then
      host="${url#*://}"
      host="${host%%/*}"
      if [[ -e "$state/offline.$host" ]]; then
        printf '000'
        exit 28
      fi
      case "$url" in
        */v2/) printf '401' ;;
        *) printf '200' ;;
      esac
      exit 0
    fi
    out=""
    prev=""
    for arg in "$@"; do
      [[ "$prev" == -o ]] && out="$arg"
      prev="$arg"
    done
    case "$url" in
      */gpg) printf 'FAKE DOCKER KEY\n' >"${out:-/dev/stdout}" ;;
      */api/v1/targets)
        [[ -e "$state/stack.up" ]] || exit 7
        cat "$state/targets.json"
        ;;
      http://127.0.0.1:*)
        port="${url#http://127.0.0.1:}"
        port="${port%%/*}"
        [[ -e "$state/stack.up" && ! -e "$state/down.$port" ]] || exit 7
        ;;
      *) echo "curl stub: unexpected URL $url" >&2; exit 6 ;;
    esac
    ;;
  docker)
    case "${1:-}" in
      info) [[ -e "$state/svc/docker.active" ]] ;;
      build) ;;
      image)
        # image inspect [-f {{.Id}}] IMAGE: the image's id from $state/images/, or not found.
        image="${*: -1}"
        file="$state/images/${image//\//_}"
        [[ -e "$file" ]] || { echo "Error: No such image: $image" >&2; exit 1; }
        if has_arg -f "$@"; then cat "$file"; fi
        ;;
      load)
        # load -q -i ARCHIVE: records each tag of the archive's manifest with its config digest.
        archive="${*: -1}"
        mkdir -p "$state/images"
        tar -xOf "$archive" manifest.json |
          jq -r '.[] | (.Config | sub("^blobs/sha256/"; "") | "sha256:" + .) as $id | .RepoTags[] | "\($id) \(.)"' |
          while read -r id tag; do echo "$id" >"$state/images/${tag//\//_}"; done
        ;;
      compose)
        shift
        # Skips the global options, whose values come right after them.
        while [[ "${1:-}" == -* ]]; do shift 2; done
        sub="${1:-}"
        shift || true
        case "$sub" in
          version) echo "Docker Compose version v2.99.0-stub" ;;
          config)
            if has_arg --services "$@"; then cat "$state/services"; else cat "$state/compose.json"; fi
            ;;
          build) ;;
          up) touch "$state/stack.up" ;;
          ps)
            if has_arg --format "$@"; then
              # ps -a --format '{{.Service}} {{.State}} {{.Health}}': one line per service.
              if [[ -e "$state/stack.up" ]]; then
                while read -r service; do
                  printf '%s %s %s\n' "$service" "$(cat "$state/status.$service" 2>/dev/null || echo running)" \
                    "$(cat "$state/health.$service" 2>/dev/null || echo healthy)"
                done <"${SELFHEAL_STUB_PS_SERVICES:-$state/services}"
              fi
            else
              echo "NAME STATUS (stub)"
            fi
            ;;
          logs) echo "(stub logs)" ;;
          *) echo "docker compose stub: unexpected $sub" >&2; exit 1 ;;
        esac
        ;;
      *) echo "docker stub: unexpected $*" >&2; exit 1 ;;
    esac
    ;;
  *)
    echo "stub-commands.sh: no stub for $cmd" >&2
    exit 127
    ;;
esac
