#!/usr/bin/env python3
"""Static checks of the Grafana provisioning and dashboards in deploy/grafana.

Grafana cannot run on the build machine, so this is what stands between a typo
and a blank panel:

- provisioning YAML parses; exactly one Prometheus datasource, with a fixed uid;
  dashboard providers are file providers with an absolute path;
- every dashboard file is valid JSON with a uid, a title and a schemaVersion;
- every panel (rows and the panels nested in collapsed rows included), every
  target, every annotation and every query variable uses the provisioned uid;
- every non-row panel sets a unit and thresholds;
- every query (targets, annotations, variables) parses as PromQL once Grafana's
  variables are substituted: they are written as recording rules into a
  temporary file and checked with `promtool check rules`;
- every selector of a watchdog series (a `selfheal_*` or `app_*` metric, or
  `up{job="watchdog"}`) carries `node=~"$node"`, so the node variable narrows
  every panel (on Swarm, one watchdog per node); the node variable's own query
  is exempt.

`--print-exprs` prints the substituted queries as JSON lines instead, for the
tests that run them against a real Prometheus; `--only-using node` keeps only
the queries that use $node; `--tsv` prints WHERE<TAB>EXPR lines for shell loops.

Exit status: 0 all good, 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

# Values for Grafana's built-in variables when a query is checked outside Grafana.
BUILTIN_VARS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $name, ${name}, ${name:format} and the deprecated [[name]].
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)
LABEL_VALUES_1_RE = re.compile(r"^\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")
QUERY_RESULT_RE = re.compile(r"^\s*query_result\((.+)\)\s*$", re.S)

# The node filter every watchdog selector carries, and the selectors that need it: a
# selfheal_*/app_* metric, or `up` (needs it only with job="watchdog"), with its braces.
NODE_FILTER_RE = re.compile(r'node\s*=~\s*"\$(?:node|\{node\})"')
WATCHDOG_SELECTOR_RE = re.compile(
    r'(?<![\w:"$])((?:selfheal|app)_[\w:]*|up)\b\s*(\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})?')
WATCHDOG_JOB_RE = re.compile(r'job\s*=\s*"watchdog"')


@dataclass
class Query:
    where: str
    expr: str
    uses: frozenset[str] = frozenset()  # the Grafana variables the query refers to


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, msg: str) -> None:
        self.errors.append(msg)
        print(f"FAIL: {msg}")


def load_yaml(path: Path, report: Report):
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        report.fail(f"{path}: not valid YAML: {e}")
        return None


def check_datasources(prov: Path, report: Report) -> str | None:
    """Returns the uid of the single provisioned Prometheus datasource."""
    files = sorted(p for p in (prov / "datasources").glob("*") if p.suffix in (".yaml", ".yml"))
    if not files:
        report.fail(f"{prov}/datasources: no provisioning file")
        return None
    uids = []
    for path in files:
        doc = load_yaml(path, report)
        if doc is None:
            continue
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            report.fail(f"{path}: apiVersion must be 1")
            continue
        for i, ds in enumerate(doc.get("datasources") or []):
            if not isinstance(ds, dict):
                report.fail(f"{path}: datasources[{i}] is not a mapping")
                continue
            for key in ("name", "type", "uid", "url"):
                if not ds.get(key):
                    report.fail(f"{path}: datasources[{i}] has no {key}")
            if ds.get("type") == "prometheus" and ds.get("uid"):
                uids.append(ds["uid"])
    if len(uids) != 1:
        report.fail(f"{prov}/datasources: expected exactly one Prometheus datasource with a uid, found {uids}")
        return None
    return uids[0]


def check_dashboard_providers(prov: Path, report: Report) -> None:
    files = sorted(p for p in (prov / "dashboards").glob("*") if p.suffix in (".yaml", ".yml"))
    if not files:
        report.fail(f"{prov}/dashboards: no provider file")
    for path in files:
        doc = load_yaml(path, report)
        if doc is None:
            continue
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            report.fail(f"{path}: apiVersion must be 1")
            continue
        providers = doc.get("providers") or []
        if not providers:
            report.fail(f"{path}: no providers")
        for i, p in enumerate(providers):
            if not isinstance(p, dict) or not p.get("name"):
                report.fail(f"{path}: providers[{i}] has no name")
                continue
            if p.get("type", "file") != "file":
                report.fail(f"{path}: provider {p['name']}: type must be file")
            dpath = (p.get("options") or {}).get("path", "")
            if not str(dpath).startswith("/"):
                report.fail(f"{path}: provider {p['name']}: options.path must be an absolute path in the container")


def substitute(expr: str, variables: dict[str, str]) -> tuple[str, list[str]]:
    """Replaces Grafana variables; returns the result and the unknown names."""
    unknown: list[str] = []

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in variables:
            return variables[name]
        unknown.append(name)
        return m.group(0)

    return VAR_RE.sub(repl, expr), unknown


def unfiltered_watchdog_selectors(expr: str) -> list[str]:
    """The selectors of watchdog series in `expr` that lack the node filter."""
    missing = []
    for m in WATCHDOG_SELECTOR_RE.finditer(expr):
        name, braces = m.group(1), m.group(2) or ""
        if name == "up" and not WATCHDOG_JOB_RE.search(braces):
            continue
        if not NODE_FILTER_RE.search(braces):
            missing.append(m.group(0).strip())
    return missing


def ds_uid(ds) -> str | None:
    if isinstance(ds, dict):
        return ds.get("uid")
    return ds  # legacy: datasource given by name (a string) or null


def walk_panels(panels, where: str):
    for p in panels or []:
        yield p, where
        if p.get("type") == "row":
            yield from walk_panels(p.get("panels"), f"{where} > row '{p.get('title', '?')}'")


def check_dashboard(path: Path, uid: str, report: Report, seen_uids: dict[str, Path],
                    overrides: dict[str, str]) -> list[Query]:
    queries: list[Query] = []
    try:
        dash = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        report.fail(f"{path}: not valid JSON: {e}")
        return queries
    if not isinstance(dash, dict):
        report.fail(f"{path}: top level is not an object")
        return queries
    for key in ("uid", "title", "schemaVersion", "panels"):
        if key not in dash:
            report.fail(f"{path}: no {key}")
    duid = dash.get("uid")
    if duid in seen_uids:
        report.fail(f"{path}: dashboard uid {duid!r} also used by {seen_uids[duid]}")
    seen_uids[duid] = path
    if not isinstance(dash.get("schemaVersion"), int) or dash.get("schemaVersion", 0) < 36:
        report.fail(f"{path}: schemaVersion must be an integer >= 36 (Grafana 9+)")

    variables = dict(BUILTIN_VARS)
    for v in (dash.get("templating") or {}).get("list") or []:
        name = v.get("name")
        if not name:
            report.fail(f"{path}: a template variable has no name")
            continue
        # All values selected is the widest query; a concrete value is not known here.
        variables[name] = v.get("allValue") or ".*"
    variables.update(overrides)
    node_var_queries: set[int] = set()  # indexes into `queries`: they define $node
    for v in (dash.get("templating") or {}).get("list") or []:
        where = f"{path.name}: variable ${v.get('name')}"
        if v.get("type") != "query":
            continue
        if ds_uid(v.get("datasource")) != uid:
            report.fail(f"{where}: datasource uid {ds_uid(v.get('datasource'))!r}, expected {uid!r}")
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = LABEL_VALUES_RE.match(q) or QUERY_RESULT_RE.match(q)
        if m:
            queries.append(Query(where, m.group(1)))
            if v.get("name") == "node":
                node_var_queries.add(len(queries) - 1)
        elif not LABEL_VALUES_1_RE.match(q):
            report.fail(f"{where}: unsupported variable query {q!r}")

    for i, a in enumerate((dash.get("annotations") or {}).get("list") or []):
        where = f"{path.name}: annotation '{a.get('name', i)}'"
        if a.get("builtIn") == 1:
            continue  # Grafana's own "Annotations & Alerts", not a query
        if ds_uid(a.get("datasource")) != uid:
            report.fail(f"{where}: datasource uid {ds_uid(a.get('datasource'))!r}, expected {uid!r}")
        expr = a.get("expr") or (a.get("target") or {}).get("expr")
        if not expr:
            report.fail(f"{where}: no expr")
        else:
            queries.append(Query(where, expr))

    ids: dict[int, str] = {}
    for p, parent in walk_panels(dash.get("panels"), path.name):
        title = p.get("title", "?")
        where = f"{parent} > panel '{title}' (id {p.get('id')})"
        pid = p.get("id")
        if not isinstance(pid, int):
            report.fail(f"{where}: no integer id")
        elif pid in ids:
            report.fail(f"{where}: id also used by panel '{ids[pid]}'")
        else:
            ids[pid] = title
        if not isinstance(p.get("gridPos"), dict):
            report.fail(f"{where}: no gridPos")
        if p.get("type") == "row":
            if "datasource" in p and ds_uid(p["datasource"]) != uid:
                report.fail(f"{where}: datasource uid {ds_uid(p['datasource'])!r}, expected {uid!r}")
            if p.get("targets"):
                report.fail(f"{where}: a row has targets")
            continue
        if ds_uid(p.get("datasource")) != uid:
            report.fail(f"{where}: datasource uid {ds_uid(p.get('datasource'))!r}, expected {uid!r}")
        defaults = (p.get("fieldConfig") or {}).get("defaults") or {}
        if not defaults.get("unit"):
            report.fail(f"{where}: no fieldConfig.defaults.unit")
        if not ((defaults.get("thresholds") or {}).get("steps")):
            report.fail(f"{where}: no fieldConfig.defaults.thresholds.steps")
        targets = p.get("targets") or []
        if not targets:
            report.fail(f"{where}: no targets")
        for t in targets:
            twhere = f"{where} target {t.get('refId', '?')}"
            if ds_uid(t.get("datasource")) != uid:
                report.fail(f"{twhere}: datasource uid {ds_uid(t.get('datasource'))!r}, expected {uid!r}")
            if not t.get("expr"):
                report.fail(f"{twhere}: no expr")
            else:
                queries.append(Query(twhere, t["expr"]))

    out: list[Query] = []
    for i, q in enumerate(queries):
        if i not in node_var_queries:
            for sel in unfiltered_watchdog_selectors(q.expr):
                report.fail(f"{q.where}: watchdog selector without node=~\"$node\": {sel}")
        expr, unknown = substitute(q.expr, variables)
        uses = frozenset(m.group(1) or m.group(2) or m.group(3) for m in VAR_RE.finditer(q.expr))
        if unknown:
            report.fail(f"{q.where}: unknown variable(s) {sorted(set(unknown))} in {q.expr!r}")
        else:
            out.append(Query(q.where, expr, uses))
    return out


def promtool_check(exprs: list[str], promtool: str, tmp: Path) -> tuple[bool, str]:
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard_check:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    f = tmp / f"queries-{len(list(tmp.iterdir()))}.yml"
    f.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def check_promql(queries: list[Query], promtool: str, report: Report) -> None:
    if not queries:
        report.fail("no queries found to check")
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ok, _ = promtool_check([q.expr for q in queries], promtool, tmp)
        if ok:
            return
        # Something is broken: check one by one to name the culprit(s).
        for q in queries:
            ok, out = promtool_check([q.expr], promtool, tmp)
            if not ok:
                detail = " | ".join(line.strip() for line in out.splitlines() if "error" in line.lower())
                report.fail(f"{q.where}: not valid PromQL: {q.expr!r}: {detail or out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grafana", type=Path, default=Path(__file__).resolve().parents[2] / "deploy" / "grafana",
                    help="directory with provisioning/ and dashboards/ (default: deploy/grafana)")
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--print-exprs", action="store_true",
                    help="print {where, expr} JSON lines of every query after substitution, and exit")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a variable's value, e.g. container=app or __range=15m")
    ap.add_argument("--only-using", metavar="NAME",
                    help="with --print-exprs: only the queries that use variable NAME, e.g. node")
    ap.add_argument("--tsv", action="store_true",
                    help="with --print-exprs: WHERE<TAB>EXPR lines instead of JSON (tabs and newlines "
                         "in either become spaces)")
    args = ap.parse_args()
    if (args.only_using or args.tsv) and not args.print_exprs:
        ap.error("--only-using and --tsv need --print-exprs")

    overrides = {}
    for kv in args.set:
        name, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--set expects NAME=VALUE, got {kv!r}")
        overrides[name] = value

    report = Report()
    prov = args.grafana / "provisioning"
    uid = check_datasources(prov, report)
    check_dashboard_providers(prov, report)
    dashboards = sorted((args.grafana / "dashboards").glob("*.json"))
    if not dashboards:
        report.fail(f"{args.grafana}/dashboards: no *.json dashboards")
    if uid is None:
        return 1

    queries: list[Query] = []
    seen: dict[str, Path] = {}
    for path in dashboards:
        queries.extend(check_dashboard(path, uid, report, seen, overrides))

    if args.print_exprs:
        if report.errors:
            return 1
        for q in queries:
            if args.only_using is not None and args.only_using not in q.uses:
                continue
            if args.tsv:
                print(re.sub(r"[\t\n]", " ", q.where) + "\t" + re.sub(r"[\t\n]", " ", q.expr))
            else:
                print(json.dumps({"where": q.where, "expr": q.expr}))
        return 0

    check_promql(queries, args.promtool, report)
    print(f"dashboards: {len(dashboards)} file(s), {len(queries)} queries, "
          f"{len(report.errors)} problem(s)")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
