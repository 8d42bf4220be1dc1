#!/usr/bin/env bash
# Static checks of deploy/: Prometheus config, rules and rule unit tests,
# Alertmanager config (and its documented examples), Grafana provisioning and
# dashboards. Each check that must catch breakage is also run once against a
# deliberately broken copy, which has to fail.
#
# Needs: promtool (Debian: prometheus), amtool (prometheus-alertmanager),
# python3 with PyYAML (python3-yaml). Run from anywhere: bash tests/deploy/check.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deploy=$root/deploy
here=$root/tests/deploy
work=$(mktemp -d "${TMPDIR:-/tmp}/selfheal-deploy-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
log=$work/last.log

missing=()
command -v promtool >/dev/null || missing+=("promtool (apt: prometheus)")
command -v amtool >/dev/null || missing+=("amtool (apt: prometheus-alertmanager)")
python3 -c 'import yaml' 2>/dev/null || missing+=("python3 + PyYAML (apt: python3-yaml)")
if ((${#missing[@]})); then
    printf 'deploy checks: missing tool: %s\n' "${missing[@]}" >&2
    echo "deploy checks: 0 passed, 1 failed"
    exit 1
fi

# check NAME CMD...: CMD must succeed.
check() {
    local name=$1
    shift
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "ok    $name"
    else
        failed=$((failed + 1))
        echo "FAIL  $name"
        sed 's/^/      /' "$log"
    fi
}

# must_fail NAME PATTERN CMD...: CMD must fail and its output match PATTERN
# (so it failed for the intended reason, not because of a crash or a typo).
must_fail() {
    local name=$1 pattern=$2
    shift 2
    if "$@" >"$log" 2>&1; then
        failed=$((failed + 1))
        echo "FAIL  $name (expected a failure, got success)"
        sed 's/^/      /' "$log"
    elif grep -qE -- "$pattern" "$log"; then
        passed=$((passed + 1))
        echo "ok    $name"
    else
        failed=$((failed + 1))
        echo "FAIL  $name (failed, but output does not match /$pattern/)"
        sed 's/^/      /' "$log"
    fi
}

# --- Prometheus -------------------------------------------------------------
# rule_files in prometheus.yml are relative to the config file, and promtool
# resolves them against its directory, so this also checks every rule file.
check "promtool check config" promtool check config "$deploy/prometheus/prometheus.yml"
every_rule_file_loaded() {
    local out f
    out=$(promtool check config "$deploy/prometheus/prometheus.yml")
    for f in "$deploy/prometheus/rules"/*.yml; do
        grep -qF "$(basename "$f")" <<<"$out" || { echo "not loaded by prometheus.yml: $f"; return 1; }
    done
}
check "config loads every rule file" every_rule_file_loaded
check "promtool check rules" promtool check rules "$deploy/prometheus/rules/"*.yml
check "promtool test rules" promtool test rules "$deploy/prometheus/tests/"*.yml
check "alert conventions and test coverage" python3 "$here/check_alert_rules.py"

# Broken copies: a wrong expectation in a test, and a changed threshold in a rule.
cp -r "$deploy/prometheus" "$work/prom-bad-test"
sed -i 's/was recovered 15 times/was recovered 14 times/' "$work/prom-bad-test/tests/selfheal-storm.test.yml"
must_fail "promtool test rules fails on a wrong expectation" "FAILED" \
    promtool test rules "$work/prom-bad-test/tests/selfheal-storm.test.yml"
cp -r "$deploy/prometheus" "$work/prom-bad-rule"
sed -i 's/) >= 5$/) >= 50/' "$work/prom-bad-rule/rules/selfheal-storm.yml"
must_fail "promtool test rules fails on a changed threshold" "FAILED" \
    promtool test rules "$work/prom-bad-rule/tests/selfheal-storm.test.yml"
cp -r "$deploy/prometheus" "$work/prom-no-runbook"
sed -i '/^          runbook: >-$/,+2d' "$work/prom-no-runbook/rules/selfheal-storm.yml"
must_fail "convention check fails on a missing runbook" "no annotations.runbook" \
    python3 "$here/check_alert_rules.py" --prometheus "$work/prom-no-runbook"

# The e2e copy of the storm rule: rewritten values, still valid.
storm_override_valid() {
    local out=$work/storm-e2e.yml
    "$root/tests/e2e/storm-rules.sh" "$out" 2m 3
    grep -q 'increase(app_recovery_events_total\[2m\])) >= 3$' "$out" || { echo "values not rewritten"; return 1; }
    promtool check rules "$out"
}
check "e2e storm rule override" storm_override_valid

# The e2e scripts cannot run here (they need the stack), but they must stay valid.
if command -v shellcheck >/dev/null; then
    # From the root, following `source`: the scripts name tests/lib/poll.sh from there.
    shellcheck_scripts() { (cd "$root" && shellcheck -x tests/deploy/*.sh tests/e2e/*.sh tests/lib/poll.sh); }
    check "shellcheck tests/deploy tests/e2e" shellcheck_scripts
else
    failed=$((failed + 1))
    echo "FAIL  shellcheck not installed (apt: shellcheck)"
fi
check "e2e python helper parses" \
    python3 -c 'import ast, sys; ast.parse(open(sys.argv[1], encoding="utf-8").read())' "$root/tests/e2e/promq.py"
check "e2e compose override is YAML with the expected services" python3 -c '
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
missing = {"prometheus", "app"} - set(doc["services"])
assert not missing, f"services missing: {missing}"
' "$root/tests/e2e/compose.e2e.yaml"

# --- Alertmanager -------------------------------------------------------------
check "amtool check-config" amtool check-config "$deploy/alertmanager/alertmanager.yml"
mkdir -p "$work/am-examples"
check "alertmanager examples extracted" \
    python3 "$here/alertmanager_examples.py" "$deploy/alertmanager/alertmanager.yml" "$work/am-examples"
for example in "$work/am-examples"/*.yml; do
    [[ -e $example ]] || continue
    check "amtool check-config: example $(basename "$example" .yml)" amtool check-config "$example"
done
sed 's/group_by: \[alertname, container\]/group_by: [alertname, container/' \
    "$deploy/alertmanager/alertmanager.yml" >"$work/am-bad.yml"
must_fail "amtool check-config fails on a broken config" "FAILED|error" amtool check-config "$work/am-bad.yml"

# --- Grafana ------------------------------------------------------------------
check "dashboards and provisioning" python3 "$here/check_dashboards.py" --grafana "$deploy/grafana"

# Broken copies of the dashboard: each must be caught, for the stated reason.
break_dashboard() { # NAME PYTHON-STATEMENT: copy deploy/grafana, apply the edit to `d`
    local dir=$work/grafana-$1
    cp -r "$deploy/grafana" "$dir"
    python3 - "$dir/dashboards/selfheal-overview.json" "$2" <<'PY'
import json, sys
path, edit = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    d = json.load(f)
panels = [p for p in d["panels"] if p["type"] != "row"]
nested = [q for p in d["panels"] if p["type"] == "row" for q in p.get("panels", [])]
exec(edit)
with open(path, "w", encoding="utf-8") as f:
    json.dump(d, f)
PY
    echo "$dir"
}
dir=$(break_dashboard promql 'panels[1]["targets"][0]["expr"] = panels[1]["targets"][0]["expr"].replace("[5m]))", "[5m])", 1)')
must_fail "dashboard check fails on unparsable PromQL" "not valid PromQL" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
dir=$(break_dashboard nested-uid 'nested[0]["datasource"]["uid"] = "some-other-uid"')
must_fail "dashboard check fails on a wrong uid in a collapsed row" "row .* datasource uid 'some-other-uid'" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
dir=$(break_dashboard target-uid 'panels[0]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "x"}')
must_fail "dashboard check fails on a wrong target uid" "target A: datasource uid 'x'" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
dir=$(break_dashboard unit 'del panels[0]["fieldConfig"]["defaults"]["unit"]')
must_fail "dashboard check fails on a panel without unit" "no fieldConfig.defaults.unit" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
# The filter every watchdog selector carries, as in the JSON and as a regex.
# shellcheck disable=SC2016 # a literal $node, the Grafana variable
node_json='{node=~\"$node\"}' node_re='without node=~"\$node"'
dir=$(break_dashboard node-filter "panels[2]['targets'][0]['expr'] = panels[2]['targets'][0]['expr'].replace('$node_json', '')")
must_fail "dashboard check fails on a watchdog query without the node filter" \
    "Quarantined containers.*$node_re: selfheal_quarantined_containers\$" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
dir=$(break_dashboard node-filter-up 'nested[0]["targets"][0]["expr"] = "sum(up{job=\"watchdog\"})"')
must_fail "dashboard check fails on up{job=\"watchdog\"} without the node filter" \
    "Restarts in flight.*$node_re: up\\{job=\"watchdog\"\\}" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
only_node_queries() { # --only-using node: some queries, each one filtered by the value given
    local out
    out=$(python3 "$here/check_dashboards.py" --print-exprs --only-using node --set node=n1)
    [[ -n $out ]] || { echo "no queries use \$node"; return 1; }
    if grep -v 'node=~\\"n1\\"' <<<"$out"; then echo "^ printed, but not filtered by node"; return 1; fi
}
check "dashboard --print-exprs --only-using node" only_node_queries
dir=$(break_dashboard json 'pass')
printf '{ "truncated": ' >>"$dir/dashboards/selfheal-overview.json"
must_fail "dashboard check fails on invalid JSON" "not valid JSON" \
    python3 "$here/check_dashboards.py" --grafana "$dir"
dir=$(break_dashboard ds-yaml 'pass')
sed -i 's/uid: selfheal-prometheus/uid: [selfheal-prometheus/' "$dir/provisioning/datasources/prometheus.yaml"
must_fail "dashboard check fails on invalid provisioning YAML" "not valid YAML" \
    python3 "$here/check_dashboards.py" --grafana "$dir"

echo "deploy checks: $passed passed, $failed failed"
((failed == 0))
