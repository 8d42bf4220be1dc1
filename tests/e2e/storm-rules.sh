#!/usr/bin/env bash
# Writes a copy of deploy/prometheus/rules/selfheal-storm.yml with a smaller
# window and threshold, for the end-to-end test (a test cannot wait for five
# recoveries in 15 minutes). Mount the output over the original, see
# tests/e2e/compose.e2e.yaml.
#
# usage: storm-rules.sh OUT_FILE [WINDOW [THRESHOLD]]   (defaults: 5m 4)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src=$root/deploy/prometheus/rules/selfheal-storm.yml
out=${1:?usage: storm-rules.sh OUT_FILE [WINDOW [THRESHOLD]]}
window=${2:-5m}
threshold=${3:-4}

[[ $window =~ ^[0-9]+[smh]$ ]] || { echo "storm-rules: bad window '$window' (e.g. 10m)" >&2; exit 2; }
[[ $threshold =~ ^[0-9]+$ ]] || { echo "storm-rules: bad threshold '$threshold' (an integer)" >&2; exit 2; }

# The production values are literal in the source file (see its header).
sed -e "s/\[15m\]/[$window]/g" \
    -e "s/the last 15m/the last $window/" \
    -e "s/) >= 5\$/) >= $threshold/" \
    "$src" >"$out.tmp"

# Fail loudly if the source changed shape and the rewrite silently did nothing.
if ! grep -q "increase(app_recovery_events_total\[$window\])) >= $threshold\$" "$out.tmp"; then
    rm -f "$out.tmp"
    echo "storm-rules: $src no longer contains 'increase(app_recovery_events_total[15m])) >= 5';" \
         "update the sed expressions in $0" >&2
    exit 1
fi
mv "$out.tmp" "$out"
