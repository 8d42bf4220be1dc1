#!/usr/bin/env bash
# Builds the stack's images without a registry: each image is a FROM scratch rootfs holding one
# binary compiled or installed on this machine, the shared libraries `ldd` says it needs, a
# non-root user and /tmp. The app images run as uid/gid 10001; Prometheus, Alertmanager and
# node-exporter run as nobody (65534), as the upstream prom/* images do, so that their data
# volumes fit either kind of image. No shell, no package manager, except in busybox: a
# third-party image for tests and benchmarks (Debian's static busybox, its applets, httpd).
#
#   docker/offline/build.sh [IMAGE...]    IMAGE: demo-app watchdog prometheus alertmanager
#                                          node-exporter busybox (default: all)
# Env: TARGET_DIR (target/<host triple>/release, where `make build` puts them), BUILD_DIR (.build/images), IMAGE_PREFIX (selfheal).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build_dir=${BUILD_DIR:-$root/.build/images}
prefix=${IMAGE_PREFIX:-selfheal}
workspace_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")

die() { echo "build.sh: $*" >&2; exit 1; }

# `make build` links the release binaries statically for the host's triple (see the Makefile).
if [[ -n ${TARGET_DIR:-} ]]; then
    target_dir=$TARGET_DIR
else
    # Without rustc (busybox alone needs none of the project's binaries), where a plain
    # `cargo build --release` puts them; a missing binary is named when it is needed.
    triple=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p') || true
    target_dir=$root/target${triple:+/$triple}/release
fi

# Upstream version of a Debian package: no epoch, no +ds/-N suffix (tags allow no '+').
deb_version() {
    dpkg-query -W -f '${Version}' "$1" 2>/dev/null | sed -e 's/^[0-9]*://' -e 's/[+~-].*//'
}

# Copies a host file into the rootfs at the same path, following links.
copy_in() {
    local file=$1 rootfs=$2
    mkdir -p "$rootfs$(dirname "$file")"
    cp -L "$file" "$rootfs$file"
}

# add_binary BINARY DEST ROOTFS: BINARY at DEST, plus every shared library it links.
add_binary() {
    local binary=$1 dest=$2 rootfs=$3 lib
    [[ -x $binary ]] || die "missing binary $binary"
    mkdir -p "$(dirname "$rootfs$dest")"
    cp -L "$binary" "$rootfs$dest"
    chmod 0755 "$rootfs$dest"
    # `ldd` lines: "libc.so.6 => /lib/.../libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
    # A static binary (busybox) lists none; ldd's "not a dynamic executable" is not an error here.
    while read -r lib; do
        copy_in "$lib" "$rootfs"
    done < <(ldd "$binary" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
}

# make_rootfs BINARY DEST ROOTFS: a fresh rootfs with the binary, the user and /tmp.
make_rootfs() {
    local binary=$1 dest=$2 rootfs=$3
    rm -rf "$rootfs"
    mkdir -p "$rootfs/etc" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    add_binary "$binary" "$dest" "$rootfs"
    printf '%s\n' 'root:x:0:0:root:/:/sbin/nologin' 'selfheal:x:10001:10001:selfheal:/tmp:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'selfheal:x:10001:' 'nogroup:x:65534:' >"$rootfs/etc/group"
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
}

# build NAME VERSION CONTEXT: docker build with the Dockerfile docker/offline/NAME.Dockerfile.
build() {
    local name=$1 version=$2 context=$3
    cp "$here/$name.Dockerfile" "$context/Dockerfile"
    local log
    log=$(mktemp)
    # The legacy builder's deprecation notice goes to stderr: show it only on failure.
    docker build --quiet --pull=false \
        --label "org.opencontainers.image.title=$prefix/$name" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.source=selfheal docker/offline/build.sh" \
        -t "$prefix/$name:latest" -t "$prefix/$name:$version" "$context" >/dev/null 2>"$log" ||
        { cat "$log" >&2; rm -f "$log"; die "docker build of $prefix/$name failed"; }
    rm -f "$log"
    local size
    size=$(docker image inspect -f '{{.Size}}' "$prefix/$name:latest")
    awk -v n="$prefix/$name" -v v="$version" -v s="$size" \
        'BEGIN { printf "  %-24s :latest :%-8s %6.1f MB\n", n, v, s / 1e6 }'
}

image() {
    local name=$1 context=$build_dir/$1
    local rootfs=$context/rootfs
    case $name in
        demo-app)
            make_rootfs "$target_dir/demo-app" /usr/local/bin/demo-app "$rootfs"
            build "$name" "$workspace_version" "$context" ;;
        watchdog)
            make_rootfs "$target_dir/selfheal" /usr/local/bin/selfheal "$rootfs"
            mkdir -p "$context/state"
            build "$name" "$workspace_version" "$context" ;;
        prometheus)
            make_rootfs /usr/bin/prometheus /bin/prometheus "$rootfs"
            add_binary "$target_dir/healthcheck" /bin/wget "$rootfs"
            mkdir -p "$rootfs/usr/share/prometheus" "$rootfs/etc/prometheus" "$context/data"
            cp -r /usr/share/prometheus/web "$rootfs/usr/share/prometheus/"
            cp "$root/deploy/prometheus/prometheus.yml" "$rootfs/etc/prometheus/prometheus.yml"
            build "$name" "$(deb_version prometheus)" "$context" ;;
        alertmanager)
            make_rootfs /usr/bin/prometheus-alertmanager /bin/alertmanager "$rootfs"
            add_binary "$target_dir/healthcheck" /bin/wget "$rootfs"
            mkdir -p "$rootfs/etc/alertmanager" "$rootfs/usr/share/prometheus" "$context/data"
            # Notification templates and the UI page, where Debian's build looks for them.
            cp -rL /usr/share/prometheus/alertmanager "$rootfs/usr/share/prometheus/"
            rm -f "$rootfs/usr/share/prometheus/alertmanager/generate-ui.sh"
            printf 'route:\n  receiver: default\nreceivers:\n  - name: default\n' \
                >"$rootfs/etc/alertmanager/alertmanager.yml"
            build "$name" "$(deb_version prometheus-alertmanager)" "$context" ;;
        node-exporter)
            make_rootfs /usr/bin/prometheus-node-exporter /bin/node_exporter "$rootfs"
            add_binary "$target_dir/healthcheck" /bin/wget "$rootfs"
            build "$name" "$(deb_version prometheus-node-exporter)" "$context" ;;
        busybox)
            # Statically linked: add_binary copies no libraries. One relative link per applet.
            make_rootfs /bin/busybox /bin/busybox "$rootfs"
            local applet
            for applet in $(/bin/busybox --list); do
                [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
            done
            for applet in sh httpd wget sleep kill; do
                [[ -L $rootfs/bin/$applet ]] || die "busybox has no applet $applet"
            done
            mkdir -p "$rootfs/www"
            printf '<!doctype html><title>selfheal/busybox</title><p>busybox httpd\n' \
                >"$rootfs/www/index.html"
            printf 'ok\n' >"$rootfs/www/health"
            build "$name" "$(deb_version busybox-static)" "$context" ;;
        *) die "unknown image $name (demo-app watchdog prometheus alertmanager node-exporter busybox)" ;;
    esac
}

# True once the daemon binary is the real watchdog, not a placeholder.
watchdog_ready() {
    [[ -x $1 ]] && "$1" watch --help 2>/dev/null | grep -q -- '--listen'
}

command -v docker >/dev/null || die "docker not found"
images=("$@")
if [[ ${#images[@]} -eq 0 ]]; then
    images=(demo-app prometheus alertmanager node-exporter busybox)
    if watchdog_ready "$target_dir/selfheal"; then
        images+=(watchdog)
    else
        echo "skipping selfheal/watchdog: $target_dir/selfheal has no 'watch' command yet" >&2
    fi
fi
echo "building images (offline, FROM scratch):"
for name in "${images[@]}"; do
    image "$name"
done
