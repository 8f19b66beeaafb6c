#!/usr/bin/env python3
"""Summarise criterion results as medians and ratios against the read-write path.

Usage: python3 benches/criterion_summary.py [--dir CRITERION_DIR] [GROUP_PREFIX...]
Reads CRITERION_DIR, else $CARGO_TARGET_DIR/criterion when CARGO_TARGET_DIR is set, else
target/criterion.
For the io engine groups (`wall*`, `cpu_process*`, `cpu_side*`) it prints a Markdown table:
one row per benchmark with the median of its samples, the throughput or CPU seconds per GiB it
implies, and the ratio to the read-write row of the same group measured in the same run.
Every other group gets a second table: median time per iteration, the throughput criterion
was told (bytes or elements per iteration), and the ratio to the group's baseline row
(`tcp` for `comm/*`, `local` for `pm/*`; none elsewhere) — a throughput ratio when the group
has a throughput, else a time ratio.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")
if os.environ.get("CARGO_TARGET_DIR"):
    ROOT = os.path.join(os.environ["CARGO_TARGET_DIR"], "criterion")

IO_ENGINE_PREFIXES = ("wall", "cpu_process", "cpu_side")
# Baseline row per group prefix, for the ratio column of the other groups.
BASELINES = {"comm/": "tcp", "pm/": "local"}


def rows():
    for dirpath, _dirs, files in os.walk(ROOT):
        if "estimates.json" in files and os.path.basename(dirpath) == "new":
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bench = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            with open(os.path.join(dirpath, "sample.json")) as f:
                sample = json.load(f)
            per_iter = sorted(t / n for t, n in zip(sample["times"], sample["iters"]))
            median_ns = per_iter[len(per_iter) // 2]
            size = (bench.get("throughput") or {}).get("Bytes")
            yield bench["group_id"], bench["value_str"] or bench["function_id"], median_ns, size, est


def other_rows():
    """Like rows(), for the non-io-engine table: (group, name, median_ns, throughput)."""
    for dirpath, _dirs, files in os.walk(ROOT):
        if "sample.json" in files and os.path.basename(dirpath) == "new":
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bench = json.load(f)
            with open(os.path.join(dirpath, "sample.json")) as f:
                sample = json.load(f)
            per_iter = sorted(t / n for t, n in zip(sample["times"], sample["iters"]))
            median_ns = per_iter[len(per_iter) // 2]
            name = bench["function_id"] or ""
            if bench.get("value_str"):
                name = f"{name}/{bench['value_str']}" if name else bench["value_str"]
            yield bench["group_id"], name, median_ns, bench.get("throughput") or {}


def fmt_time(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def fmt_throughput(ns, tp):
    if "Bytes" in tp:
        bps = tp["Bytes"] / (ns / 1e9)
        return f"{bps / 2**30:.2f} GiB/s" if bps >= 2**30 else f"{bps / 2**20:.1f} MiB/s"
    if "Elements" in tp:
        per = ns / tp["Elements"]
        return f"{tp['Elements'] / (ns / 1e9) / 1e6:.2f} M/s ({fmt_time(per)} each)"
    return ""


def other_data(prefixes):
    data = {}
    for group, name, ns, tp in other_rows():
        if group.startswith(IO_ENGINE_PREFIXES):
            continue
        if prefixes and not any(group.startswith(p) for p in prefixes):
            continue
        data.setdefault(group, {})[name] = (ns, tp)
    return data


def other_table(data):
    print("| group | benchmark | median | throughput | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for group in sorted(data):
        base_name = next((b for p, b in BASELINES.items() if group.startswith(p)), None)
        base = data[group].get(base_name) if base_name else None
        for name, (ns, tp) in sorted(data[group].items()):
            rtext = ""
            if base:
                if tp:
                    rtext = f"{base[0] / ns:.2f}x throughput of {base_name}"
                else:
                    rtext = f"{ns / base[0]:.2f}x time of {base_name}"
            print(f"| {group} | {name} | {fmt_time(ns)} | {fmt_throughput(ns, tp)} | {rtext} |")


def main():
    global ROOT
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--dir":
        ROOT = args[1]
        args = args[2:]
    prefixes = args
    data = {}
    for group, name, median_ns, size, _est in rows():
        if not group.startswith(IO_ENGINE_PREFIXES):
            continue
        if prefixes and not any(group.startswith(p) for p in prefixes):
            continue
        data.setdefault(group, {})[name] = (median_ns, size)
    other = other_data(prefixes)
    if data or not other:
        io_table(data)
    if other:
        if data:
            print()
        other_table(other)


def io_table(data):
    print("| group | path | median | per GiB | vs read-write |")
    print("| --- | --- | --- | --- | --- |")
    for group in sorted(data):
        base = data[group].get("read-write")
        for name, (ns, size) in sorted(data[group].items()):
            gib = (size or 1) / 2**30
            if group.startswith("wall"):
                figure = f"{gib / (ns / 1e9):.2f} GiB/s"
                ratio = base[0] / ns if base else float("nan")
                rtext = f"{ratio:.2f}x throughput"
            else:
                figure = f"{ns / 1e9 / gib:.3f} CPU s/GiB"
                ratio = ns / base[0] if base else float("nan")
                rtext = f"{ratio:.2f}x CPU"
            print(f"| {group} | {name} | {ns / 1e6:.1f} ms | {figure} | {rtext} |")


if __name__ == "__main__":
    main()
