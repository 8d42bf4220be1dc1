#!/usr/bin/env bash
# The image table in docs/images.md must name the versions that `make images` built, and sizes
# within 25 % of the built ones (they are stated as approximate). Run after `make images`.
#   tests/docker/readme_images.sh [MARKDOWN]   (default docs/images.md)
set -euo pipefail

table=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/docs/images.md}
fail=0
rows=0
# Rows like: | `selfheal/demo-app` | `latest`, `0.1.0` | ... | about 5.2 MB |
while IFS='|' read -r _ image tags _ size _; do
    image=$(tr -d '` ' <<<"$image")
    [[ $image == selfheal/* ]] || continue
    rows=$((rows + 1))
    # shellcheck disable=SC2016 # the backticks are Markdown, not a command
    version=$(sed -n 's/.*`latest`, `\([^`]*\)`.*/\1/p' <<<"$tags")
    stated_mb=$(grep -o '[0-9][0-9.]*' <<<"$size" | head -n 1)
    if ! built=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}} {{.Size}}' "$image:latest" 2>/dev/null); then
        echo "FAIL  $image: not built (run make images)"
        fail=1
        continue
    fi
    read -r built_version built_bytes <<<"$built"
    if [[ $version != "$built_version" ]]; then
        echo "FAIL  $image: the table says $version, the build made $built_version"
        fail=1
    elif ! awk -v s="$stated_mb" -v b="$built_bytes" 'BEGIN { r = s * 1e6 / b; exit !(r > 0.75 && r < 1.25) }'; then
        echo "FAIL  $image: the table says about $stated_mb MB, the build made $((built_bytes / 1000000)) MB"
        fail=1
    else
        echo "ok    $image $built_version, about $stated_mb MB"
    fi
done <"$table"
if ((rows == 0)); then
    echo "FAIL  no image rows found in $table"
    exit 1
fi
exit "$fail"
