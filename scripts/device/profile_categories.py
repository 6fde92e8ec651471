#!/usr/bin/env python3
"""Sums cubecl's per-kernel profile (the last summary in a log written by
scripts/device/profile_train.sh: one training step) into the categories that
bench_anchor_torch.py's `profile` uses for PyTorch's step, and prints a markdown table.

    python3 scripts/device/profile_categories.py prof-bert-bf16.log [...]
"""
import re
import sys


def category(name):
    n = name.lower()
    if "adamw" in n:
        return "optimizer"
    if "normforward" in n or "normbackward" in n:
        return "layer norm"
    if "matmul" in n:
        return "matmul"
    if "flash" in n or "attention" in n:
        return "attention"
    if "scan" in n or "conv" in n:
        return "selective scan / causal conv"
    if "reduce" in n:
        return "reduction"
    if "selectassign" in n or "select" in n or "gather" in n or "scatter" in n:
        return "copy / cast / index"
    if any(k in n for k in ("cast", "copy", "slice", "full")):
        return "copy / cast / index"
    return "element-wise"


def ms(text):
    m = re.match(r"([\d.]+)(ns|µs|us|ms|s)$", text.strip())
    if not m:
        return None
    v, u = float(m.group(1)), m.group(2)
    return v * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[u]


def last_summary(path):
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    start = max(i for i, l in enumerate(lines) if l.startswith("| Name") and "Duration" in l)
    rows = []
    for l in lines[start + 1:]:
        if l.startswith("| Total"):
            break
        cells = [c.strip() for c in l.strip().strip("|").split("|")]
        if len(cells) < 4:
            continue
        t = ms(cells[-3])
        if t is None:
            continue
        rows.append((" | ".join(c for c in cells[:-3] if c and c not in ("TensorArgs", "CudaRuntime")), t, int(cells[-2])))
    return rows


for path in sys.argv[1:]:
    rows = last_summary(path)
    sums, count = {}, 0
    for name, t, n in rows:
        c = category(name)
        sums[c] = sums.get(c, 0.0) + t
        count += n
    total = sum(sums.values())
    print(f"\n#### {path}: {total:.1f} ms of kernels in {count} launches")
    print("| category | ms | share |")
    print("|---|---|---|")
    for c, t in sorted(sums.items(), key=lambda kv: -kv[1]):
        print(f"| {c} | {t:.1f} | {100 * t / total:.0f}% |")
