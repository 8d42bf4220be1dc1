#!/usr/bin/env python3
"""Turns each commented receiver example in an alertmanager.yml into a full config.

The examples at the end of deploy/alertmanager/alertmanager.yml are documentation
users copy; this makes sure they stay valid. For every block that starts with
`# --- Example: NAME`, the lines commented as `#  ...` (hash and two spaces) are
the receiver list; it replaces `receivers:` of the live config and the result is
written to OUT_DIR/NAME.yml for `amtool check-config`.

usage: alertmanager_examples.py ALERTMANAGER_YML OUT_DIR   (prints the files written)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

HEADER = re.compile(r"^# --- Example: (.+?) -*$")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    text = src.read_text(encoding="utf-8")
    live = yaml.safe_load(text)
    examples: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            current = re.sub(r"[^a-z0-9]+", "-", m.group(1).lower()).strip("-")
            examples[current] = []
        elif current and line.startswith("#  "):
            examples[current].append(line[1:])
        elif current and not line.startswith("#"):
            current = None
    if not examples:
        print(f"{src}: no '# --- Example: NAME' blocks found", file=sys.stderr)
        return 1
    for name, lines in examples.items():
        receivers = yaml.safe_load("\n".join(lines))
        if not isinstance(receivers, list) or not receivers:
            print(f"{src}: example {name!r} is not a YAML list of receivers", file=sys.stderr)
            return 1
        cfg = dict(live)
        cfg["receivers"] = receivers
        path = out_dir / f"{name}.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
