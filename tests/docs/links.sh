#!/usr/bin/env bash
# Every relative link in the project's Markdown (README.md and docs/*.md unless files are
# given) must name a file or folder that exists and, when it carries an #anchor into a
# Markdown file, a heading of that file (GitHub's anchor rules) or an <a id="...">. Links with a
# scheme (https:, mailto:) are not fetched; links inside code are not links.
#   tests/docs/links.sh [--base DIR] [FILE...]
# --base DIR resolves the links against DIR instead of each file's own folder: for checking a
# changed copy of a file, as `make lint`'s must-fail cases do.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
base=
if [[ ${1:-} == --base ]]; then
    base=${2:?--base needs a folder}
    shift 2
fi
if (($# == 0)); then
    cd "$root"
    set -- README.md docs/*.md
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# anchors FILE: the anchor of every heading outside code fences, as GitHub makes it (lower
# case; punctuation but '-' and '_' dropped; each space a '-'; repeats get -1, -2, ...), and
# every <a id="..."> or <a name="...">. Non-ASCII letters are dropped, not kept as GitHub does.
anchors() {
    LC_ALL=C awk '
        /^ *(```|~~~)/ { code = !code; next }
        code { next }
        /^#+ / {
            h = $0
            sub(/^#+ +/, "", h); sub(/ +#+ *$/, "", h)
            h = tolower(h)
            gsub(/[^a-z0-9 _-]/, "", h)
            gsub(/ /, "-", h)
            n = seen[h]++
            print (n ? h "-" n : h)
        }
        {
            line = $0
            while (match(line, /<a (id|name)="[^"]*"/)) {
                a = substr(line, RSTART, RLENGTH)
                sub(/^<a (id|name)="/, "", a); sub(/"$/, "", a)
                print a
                line = substr(line, RSTART + RLENGTH)
            }
        }' "$1"
}

# targets FILE: the target of every [text](target) and ![alt](target) outside code, one a
# line. Link text may run over several lines, so the prose is joined first.
targets() {
    awk '
        /^ *(```|~~~)/ { code = !code; next }
        code { next }
        { gsub(/`[^`]*`/, ""); printf "%s ", $0 }' "$1" |
        grep -o '\]([^) ]*' | sed 's/^](//; s/^<//; s/>$//' || true
}

fail=0
links=0
n=0
for f in "$@"; do
    n=$((n + 1))
    copy="$tmp/$n.md"
    cat "$f" >"$copy" # read once: FILE may be a pipe
    dir=${base:-$(dirname "$f")}
    while IFS= read -r target; do
        [[ -n $target ]] || continue
        [[ $target =~ ^[a-zA-Z][a-zA-Z0-9+.-]*: ]] && continue
        links=$((links + 1))
        path=${target%%#*}
        anchor=
        [[ $target == *#* ]] && anchor=${target#*#}
        if [[ -z $path ]]; then
            file=$copy
        else
            file=$dir/$path
            if [[ ! -e $file ]]; then
                echo "FAIL  $f: ($target): $path does not exist"
                fail=1
                continue
            fi
        fi
        if [[ -n $anchor && $file == *.md ]] && ! anchors "$file" | grep -qxF -- "$anchor"; then
            echo "FAIL  $f: ($target): no heading or <a id> '$anchor' in ${path:-$f}"
            fail=1
        fi
    done < <(targets "$copy")
done
if ((fail == 0)); then
    echo "ok    $links relative links in $# file(s) resolve"
fi
exit "$fail"
