#!/usr/bin/env python3
"""Check that every shardnet metric name the monitoring kit uses exists.

Usage: python3 deploy/check_names.py METRICS_TEXT_FILE

METRICS_TEXT_FILE is a Prometheus text exposition, e.g. what
`curl -s http://127.0.0.1:9464/metrics` returns from a running shardnet.

Every token matching the metric-name pattern (shardnet, underscore, then
[a-z0-9_]+) in deploy/*.yml, deploy/*.md and deploy/grafana/*.json is looked
up among the names of the exposition (from `# TYPE` lines and sample lines).
A name ending in _bucket, _sum or _count counts as present when its base name
is a histogram (or, for _sum/_count, a summary) in the exposition.

Exit status: 0 when all are present (prints how many names were checked),
1 when some are missing (lists them, with the files that use them),
2 on usage or read errors.
"""

import glob
import os
import re
import sys

# (spelt in two parts so that this file holds no metric-name-like token)
TOKEN = re.compile("shardnet" + r"_[a-z0-9_]+")
SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[\s{])")
TYPE_LINE = re.compile(r"^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s+(\w+)")
HIST_SUFFIXES = ("_bucket", "_sum", "_count")

DEPLOY = os.path.dirname(os.path.abspath(__file__))
PATTERNS = ["*.yml", "*.yaml", "*.md", os.path.join("grafana", "*.json")]


def exposition_names(path):
    """Return (names, types): every metric name of the exposition and the
    declared type of those with a # TYPE line."""
    names, types = set(), {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                m = TYPE_LINE.match(line)
                if m:
                    names.add(m.group(1))
                    types[m.group(1)] = m.group(2).lower()
                continue
            m = SAMPLE_NAME.match(line)
            if m:
                names.add(m.group(1))
    return names, types


def used_names():
    """Return {name: sorted files using it} for the kit's files."""
    used = {}
    files = []
    for pat in PATTERNS:
        files.extend(sorted(glob.glob(os.path.join(DEPLOY, pat))))
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(path, os.path.dirname(DEPLOY))
        for tok in set(TOKEN.findall(text)):
            used.setdefault(tok, set()).add(rel)
    return {k: sorted(v) for k, v in used.items()}, files


def base_name(name, types):
    """Strip a histogram/summary suffix when the base is one in the exposition."""
    for suf in HIST_SUFFIXES:
        if name.endswith(suf):
            base = name[: -len(suf)]
            t = types.get(base)
            if t == "histogram" or (t == "summary" and suf != "_bucket"):
                return base
    return name


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: python3 deploy/check_names.py METRICS_TEXT_FILE\n")
        return 2
    try:
        names, types = exposition_names(argv[1])
    except OSError as e:
        sys.stderr.write(f"check_names: cannot read {argv[1]}: {e}\n")
        return 2
    if not names:
        sys.stderr.write(f"check_names: no metrics found in {argv[1]}\n")
        return 1

    used, files = used_names()
    if not used:
        sys.stderr.write("check_names: no shardnet metric names found in deploy/\n")
        return 1

    missing = {}
    checked = set()
    for name, where in sorted(used.items()):
        base = base_name(name, types)
        checked.add(base)
        if base not in names and name not in names:
            missing[name] = where

    if missing:
        print(f"check_names: {len(missing)} of {len(used)} metric names used in deploy/ "
              f"are not in {argv[1]}:")
        for name, where in missing.items():
            print(f"  {name}  (used in {', '.join(where)})")
        return 1
    print(f"check_names: OK, {len(used)} metric names ({len(checked)} metrics) "
          f"from {len(files)} files all present in {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
