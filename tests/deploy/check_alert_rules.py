#!/usr/bin/env python3
"""Conventions promtool does not check, for deploy/prometheus.

- every alert has labels.severity (critical|warning|info) and the annotations
  summary, description and runbook;
- every alert has a unit test where it fires (non-empty exp_alerts) and one
  where it must not fire (exp_alerts empty), in deploy/prometheus/tests;
- every recording rule is evaluated by some promql_expr_test;
- every rule file is tested by some test file.

Exit status: 0 all good, 1 a convention is broken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = ("summary", "description", "runbook")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", type=Path,
                    default=Path(__file__).resolve().parents[2] / "deploy" / "prometheus")
    args = ap.parse_args()
    errors: list[str] = []

    alerts: dict[str, Path] = {}
    records: dict[str, Path] = {}
    rule_files = sorted((args.prometheus / "rules").glob("*.yml"))
    for path in rule_files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if "record" in rule:
                    records[rule["record"]] = path
                    continue
                name = rule.get("alert", "?")
                if name in alerts:
                    errors.append(f"{path}: alert {name} also defined in {alerts[name]}")
                alerts[name] = path
                sev = (rule.get("labels") or {}).get("severity")
                if sev not in SEVERITIES:
                    errors.append(f"{path}: alert {name}: labels.severity {sev!r} not in {sorted(SEVERITIES)}")
                ann = rule.get("annotations") or {}
                for key in ANNOTATIONS:
                    if not str(ann.get(key, "")).strip():
                        errors.append(f"{path}: alert {name}: no annotations.{key}")

    fires: set[str] = set()
    silent: set[str] = set()
    evaluated = ""
    tested_files: set[Path] = set()
    for path in sorted((args.prometheus / "tests").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for rf in doc.get("rule_files") or []:
            tested_files.add((path.parent / rf).resolve())
        for test in doc.get("tests") or []:
            for at in test.get("alert_rule_test") or []:
                (fires if at.get("exp_alerts") else silent).add(at.get("alertname"))
            for pt in test.get("promql_expr_test") or []:
                evaluated += " " + str(pt.get("expr", ""))

    for name, path in sorted(alerts.items()):
        if name not in fires:
            errors.append(f"{path}: alert {name}: no unit test where it fires")
        if name not in silent:
            errors.append(f"{path}: alert {name}: no unit test where it must not fire")
    for name, path in sorted(records.items()):
        if name not in evaluated:
            errors.append(f"{path}: recording rule {name}: not evaluated by any promql_expr_test")
    for path in rule_files:
        if path.resolve() not in tested_files:
            errors.append(f"{path}: no test file lists it in rule_files")

    for e in errors:
        print(f"FAIL: {e}")
    print(f"alert rules: {len(alerts)} alerts, {len(records)} recording rules, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
