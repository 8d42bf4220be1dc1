#!/usr/bin/env bash
# Saves the images `make images` built on this host into .build/vm-images/ (one `docker save`
# archive per image), which the Vagrantfile syncs into the VM; deploy/vagrant/provision.sh loads
# them when no image registry answers. An archive whose image is unchanged is left as it is, so
# `vagrant rsync` copies nothing again.
#
#   deploy/vagrant/save-images.sh [DIR]     DIR: .build/vm-images (SELFHEAL_VM_IMAGES)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-${SELFHEAL_VM_IMAGES:-$root/.build/vm-images}}
# The project's images and the offline stand-ins (docker/offline/build.sh); Grafana has none.
images=(demo-app watchdog prometheus alertmanager node-exporter)

die() { echo "save-images: $*" >&2; exit 1; }

command -v docker >/dev/null || die "docker not found"
mkdir -p "$dir"
for name in "${images[@]}"; do
    image=selfheal/$name:latest
    archive=$dir/$name.tar
    id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
        die "no image $image: run \`make images\` first"
    # The archive's config digest is the image id (Docker 25+: blobs/sha256/HEX, older: HEX.json).
    saved=$(tar -xOf "$archive" manifest.json 2>/dev/null |
        jq -r '.[0].Config | sub("^blobs/sha256/"; "") | sub("[.]json$"; "") | "sha256:" + .' 2>/dev/null || true)
    if [[ $saved == "$id" ]]; then
        echo "  $image unchanged ($archive)"
        continue
    fi
    docker save -o "$archive.tmp" "$image"
    mv -f "$archive.tmp" "$archive"
    echo "  $image -> $archive ($(du -h "$archive" | cut -f1))"
done
