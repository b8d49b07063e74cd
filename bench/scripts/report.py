#!/usr/bin/env python3
"""Tabulates criterion results (target/criterion/**/new/*.json) as markdown.

usage: bench/scripts/report.py [GROUP ...]   (from the workspace root)

For each group: one row per benchmark function, one column per parameter, each cell the median
time and, when the bench declared a byte throughput, GB/s (10^9 bytes per second).
"""
import json
import pathlib
import sys

root = pathlib.Path("target/criterion")
groups = sys.argv[1:] or sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "report")


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


for group in groups:
    rows = {}
    params = []
    for bench in sorted((root / group).glob("*/*/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        ns = est["median"]["point_estimate"]
        cell = fmt_time(ns)
        tp = (meta.get("throughput") or {}).get("Bytes")
        if tp:
            cell += f", {tp / ns:.1f} GB/s"
        p = meta["value_str"]
        if p not in params:
            params.append(p)
        rows.setdefault(meta["function_id"], {})[p] = cell
    params.sort(key=lambda s: float(s) if s.replace(".", "").isdigit() else s)
    print(f"\n### {group}\n")
    print("| function | " + " | ".join(params) + " |")
    print("|---|" + "---|" * len(params))
    for f, cells in rows.items():
        print(f"| {f} | " + " | ".join(cells.get(p, "") for p in params) + " |")
