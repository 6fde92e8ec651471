#!/usr/bin/env python3
"""Turns the files of one `scripts/device/bench_h200.sh` call (train.json, rerank.json,
scan.json: concatenated JSON documents of `rankmamba bench ... --json`; torch.log: the PyTorch
anchors' `JSON {...}` lines) into the markdown tables of docs/benchmarks.md.

  python3 scripts/device/bench_report.py DIR
"""
import json
import sys
from pathlib import Path


def docs(path):
    """Concatenated JSON documents in a file."""
    if not path.exists():
        return []
    text, dec, out, i = path.read_text(), json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        try:
            v, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            nxt = text.find("\n{", i)
            if nxt < 0:
                return out
            i = nxt + 1
            continue
        out.append(v)


def anchors(path):
    if not path.exists():
        return []
    return [json.loads(l[5:]) for l in path.read_text().splitlines() if l.startswith("JSON ")]


def fmt(x, unit=""):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M{unit}"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k{unit}"
    return f"{x:.0f}{unit}"


def main(d):
    d = Path(d)
    an = anchors(d / "torch.log")
    commit = None

    # ---- training
    rows = {}
    for doc in docs(d / "train.json"):
        commit = doc["build"]["commit"]
        s = doc["settings"]
        for r in doc["rows"]:
            rows[(r["model"], doc["precision"])] = r
    if rows:
        print(f"### Training step ({s['queries']} x {s['group']} x {s['len']} tokens), commit {commit}\n")
        print("| model | ours f32 ms | ours f32 tokens/s | ours bf16 ms | ours bf16 tokens/s | PyTorch fp32 (TF32) tokens/s | PyTorch bf16 autocast | PyTorch pure bf16 |")
        print("|---|---|---|---|---|---|---|---|")
        models = []
        for (m, _p) in rows:
            if m not in models:
                models.append(m)
        for m in models:
            cells = []
            for p in ("f32", "bf16"):
                r = rows.get((m, p))
                if r and r.get("timing"):
                    cells += [f"{r['timing']['median_ms']:.0f}", fmt(r["tokens_per_s"])]
                elif r:
                    cells += ["error", (r.get("error") or "")[:60]]
                else:
                    cells += ["-", "-"]
            tor = {a["mode"]: a for a in an if a["anchor"] == "train" and a["model"] == m}
            for mode in ("fp32", "bf16-autocast", "bf16"):
                a = tor.get(mode)
                cells.append(f"{fmt(a['tokens_per_s'])} ({a['step_ms']:.0f} ms)" if a else "-")
            print(f"| {m} | " + " | ".join(cells) + " |")
        for p in ("f32", "bf16"):
            a, b = rows.get(("mamba-130m", p)), rows.get(("bert-base", p))
            if a and b and a.get("tokens_per_s") and b.get("tokens_per_s"):
                print(f"\n{p}: bert-base / mamba-130m tokens/s = {b['tokens_per_s'] / a['tokens_per_s']:.2f}x")
        print()

    # ---- reranking
    rr, rs = {}, None
    for doc in docs(d / "rerank.json"):
        commit = doc["build"]["commit"]
        rs = doc["settings"]
        for r in doc["rows"]:
            rr[(r["model"], doc["precision"], r["batch"])] = r
    if rr:
        print(f"### Reranking ({rs['candidates']} candidates x {rs['len']} tokens), commit {commit}\n")
        print("| model | precision | batch | ours docs/s | ours ms/query | PyTorch docs/s | PyTorch ms/query |")
        print("|---|---|---|---|---|---|---|")
        tmap = {"f32": "fp32", "bf16": "bf16"}
        for (m, p, b), r in rr.items():
            a = next((x for x in an if x["anchor"] == "rerank" and x["model"] == m
                      and x["precision"] == tmap[p] and x["batch"] == b), None)
            ours = (f"{r['docs_per_s']:.1f} | {r['ms_per_query']:.1f}" if r.get("docs_per_s")
                    else f"error | {(r.get('error') or '')[:50]}")
            th = f"{a['docs_per_s']:.0f} | {a['ms_per_query']:.1f}" if a else "- | -"
            print(f"| {m} | {p} | {b} | {ours} | {th} |")
        print()

    # ---- scan grid
    for doc in docs(d / "scan.json"):
        commit = doc["build"]["commit"]
        prec = doc["precision"]
        print(f"### Scan vs attention, {prec}, {doc['grid']['tokens']} tokens per call, commit {commit}\n")
        print("| L | batch | part | fwd ms | fwd+bwd ms | PyTorch SDPA fwd / fwd+bwd ms |")
        print("|---|---|---|---|---|---|")
        cell = {}
        for r in doc["rows"]:
            cell[(r["len"], r["part"], r["pass"])] = r
        for L in doc["grid"]["lens"]:
            for part in ("scan", "attention", "mamba-block", "bert-layer"):
                f, fb = cell.get((L, part, "fwd")), cell.get((L, part, "fwd-bwd"))
                if not f and not fb:
                    continue
                g = lambda r: f"{r['timing']['median_ms']:.3f}" if r and r.get("timing") else ("err" if r else "-")
                sd = "-"
                if part == "attention":
                    want = "float32" if prec == "f32" else "bfloat16"
                    a = next((x for x in an if x["anchor"] == "sdpa" and x["L"] == L and x["dtype"] == want), None)
                    if a:
                        sd = f"{a['fwd_ms']:.3f} / {a['fwdbwd_ms']:.3f}"
                batch = (f or fb)["batch"]
                print(f"| {L} | {batch} | {part} | {g(f)} | {g(fb)} | {sd} |")
        print()
        errs = {r["error"] for r in doc["rows"] if r.get("error")}
        for e in errs:
            print(f"error: {e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
