#!/usr/bin/env python3
"""Small, stdlib-only client for the Prometheus and Alertmanager HTTP APIs, used by
tests/e2e/run.sh so the shell script never parses JSON.

  promq.py value EXPR                  instant query; prints the sum of the sample
                                       values, or "none" when the result is empty
  promq.py series EXPR START END STEP  range query; prints the number of series
  promq.py json EXPR                   instant query; prints {labels: value} as JSON
  promq.py label-values EXPR LABEL     instant query; prints LABEL of each series, sorted,
                                       as a JSON list ("" where the series lacks it)
  promq.py prom-alert NAME CONTAINER   state of alert NAME for container CONTAINER in
                                       Prometheus (/api/v1/alerts): firing|pending|none
  promq.py am-alert NAME CONTAINER     "active" if Alertmanager (/api/v2/alerts) holds
                                       the alert, else "none"
  promq.py rule-query NAME             the expression of alerting rule NAME as loaded
  promq.py targets                     "job=health" per active scrape target

Env: PROM_URL (http://127.0.0.1:9090), AM_URL (http://127.0.0.1:9093).
Exit status: 0 ok, 1 API or network error (message on stderr), 2 usage.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

PROM = os.environ.get("PROM_URL", "http://127.0.0.1:9090").rstrip("/")
AM = os.environ.get("AM_URL", "http://127.0.0.1:9093").rstrip("/")
TIMEOUT = 10


def get(url: str, params: dict[str, str] | None = None):
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        # Prometheus explains a bad query in the body; show that, not just "400".
        detail = e.read().decode("utf-8", "replace").strip()
        raise RuntimeError(f"{e.code} from {url.split('?')[0]}: {detail[:500]}") from None


def prom(path: str, params: dict[str, str]):
    body = get(PROM + path, params)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def labels_key(metric: dict) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "value" and len(args) == 1:
        data = prom("/api/v1/query", {"query": args[0]})
        if data["resultType"] == "scalar":
            print(float(data["result"][1]))
        elif not data["result"]:
            print("none")
        else:
            print(sum(float(s["value"][1]) for s in data["result"]))
    elif cmd == "json" and len(args) == 1:
        data = prom("/api/v1/query", {"query": args[0]})
        print(json.dumps({labels_key(s["metric"]): float(s["value"][1]) for s in data["result"]},
                         sort_keys=True))
    elif cmd == "label-values" and len(args) == 2:
        data = prom("/api/v1/query", {"query": args[0]})
        print(json.dumps(sorted(s["metric"].get(args[1], "") for s in data["result"])))
    elif cmd == "series" and len(args) == 4:
        data = prom("/api/v1/query_range",
                    {"query": args[0], "start": args[1], "end": args[2], "step": args[3]})
        print(len(data["result"]))
    elif cmd == "prom-alert" and len(args) == 2:
        name, container = args
        states = [a["state"] for a in prom("/api/v1/alerts", {})["alerts"]
                  if a["labels"].get("alertname") == name and a["labels"].get("container") == container]
        print("firing" if "firing" in states else "pending" if "pending" in states else "none")
    elif cmd == "am-alert" and len(args) == 2:
        name, container = args
        alerts = get(AM + "/api/v2/alerts", {"filter": f'alertname="{name}"'})
        hit = [a for a in alerts if a["labels"].get("container") == container
               and a.get("status", {}).get("state") in ("active", "suppressed")]
        print("active" if hit else "none")
    elif cmd == "rule-query" and len(args) == 1:
        for group in prom("/api/v1/rules", {"type": "alert"})["groups"]:
            for rule in group["rules"]:
                if rule["name"] == args[0]:
                    print(rule["query"])
                    return 0
        print("none")
    elif cmd == "targets" and not args:
        for t in prom("/api/v1/targets", {"state": "active"})["activeTargets"]:
            print(f"{t['labels'].get('job')}={t['health']}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (urllib.error.URLError, OSError, RuntimeError, ValueError, KeyError) as e:
        print(f"promq: {e}", file=sys.stderr)
        sys.exit(1)
