#!/usr/bin/env python3
"""Summarise criterion results as medians and ratios against the read-write path.

Usage: python3 benches/criterion_summary.py [GROUP_PREFIX...]   (reads target/criterion)
Prints a Markdown table: one row per benchmark with the median of its samples, the
throughput or CPU seconds per GiB it implies, and the ratio to the read-write row of the same
group measured in the same run.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


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


def main():
    prefixes = sys.argv[1:]
    data = {}
    for group, name, median_ns, size, _est in rows():
        if prefixes and not any(group.startswith(p) for p in prefixes):
            continue
        data.setdefault(group, {})[name] = (median_ns, size)
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
