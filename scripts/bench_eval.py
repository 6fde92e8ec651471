#!/usr/bin/env python3
"""End-to-end evaluation benchmark: rankmamba eval vs pytrec_eval vs ranx, same files, same measures.

Synthetic run: 10,000 queries x 1,000 documents (10^7 lines), qrels with 100 judged documents per
query (grades 0-3, 60 of them retrieved). End to end = reading both files + evaluating + means.
    python3 -m venv /tmp/v && /tmp/v/bin/pip install pytrec-eval-terrier ranx numpy
    cargo build --release
    /tmp/v/bin/python scripts/bench_eval.py --bin $CARGO_TARGET_DIR/release/rankmamba --dir /tmp/bench-eval
"""
import argparse
import os
import subprocess
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--dir", default="/tmp/bench-eval")
ap.add_argument("--queries", type=int, default=10_000)
ap.add_argument("--docs", type=int, default=1_000)
ap.add_argument("--repeats", type=int, default=3)
args = ap.parse_args()

os.makedirs(args.dir, exist_ok=True)
run_path = os.path.join(args.dir, f"run_{args.queries}x{args.docs}.trec")
qrels_path = os.path.join(args.dir, f"qrels_{args.queries}x{args.docs}.txt")
if not os.path.exists(run_path):
    rng = np.random.default_rng(0)
    with open(run_path, "w") as run, open(qrels_path, "w") as qrels:
        for q in range(args.queries):
            docs = rng.choice(10_000_000, args.docs + 40, replace=False)
            scores = np.sort(rng.standard_normal(args.docs) * 3 + 10)[::-1]
            run.write("".join(f"q{q} Q0 D{d} {i + 1} {s:.6f} synth\n"
                              for i, (d, s) in enumerate(zip(docs[:args.docs], scores))))
            judged = np.concatenate([rng.choice(docs[:args.docs], 60, replace=False), docs[args.docs:]])
            grades = rng.integers(0, 4, len(judged))
            qrels.write("".join(f"q{q} 0 D{d} {g}\n" for d, g in zip(judged, grades)))

TREC = ["ndcg_cut_10", "map", "P_10", "recall_100", "recip_rank"]


def ours():
    out = subprocess.run([args.bin, "eval", "--qrels", qrels_path, "--run", run_path, "--json",
                          "-m", "ndcg_cut.10", "-m", "map", "-m", "P.10", "-m", "recall.100",
                          "-m", "recip_rank"], check=True, capture_output=True, text=True).stdout
    import json
    m = json.loads(out)["means"]
    return [m["nDCG@10"], m["AP"], m["P@10"], m["R@100"], m["RR"]]


def pytrec():
    import pytrec_eval
    with open(qrels_path) as f:
        qrels = pytrec_eval.parse_qrel(f)
    with open(run_path) as f:
        run = pytrec_eval.parse_run(f)
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map", "P.10", "recall.100", "recip_rank"})
    res = ev.evaluate(run)
    return [float(np.mean([v[m] for v in res.values()])) for m in TREC]


def ranx_eval():
    from ranx import Qrels, Run, evaluate
    qrels = Qrels.from_file(qrels_path, kind="trec")
    run = Run.from_file(run_path, kind="trec")
    r = evaluate(qrels, run, ["ndcg@10", "map", "precision@10", "recall@100", "mrr"])
    return [r["ndcg@10"], r["map"], r["precision@10"], r["recall@100"], r["mrr"]]


ranx_eval()  # numba JIT warm-up (compiled functions are cached on disk), not timed
rows = []
for name, fn in [("rankmamba eval (Rust)", ours), ("pytrec_eval", pytrec), ("ranx", ranx_eval)]:
    times, vals = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        vals = fn()
        times.append(time.perf_counter() - t)
    rows.append((name, min(times), float(np.median(times)), vals))

print(f"input: {args.queries} queries x {args.docs} docs = {args.queries * args.docs:,} run lines, "
      f"{os.path.getsize(run_path) / 1e6:.0f} MB; nproc={os.cpu_count()}")
print(f"{'tool':24} {'best s':>8} {'median s':>9} {'vs ours':>8}   nDCG@10  AP      P@10    R@100   RR")
for name, best, med, v in rows:
    print(f"{name:24} {best:8.2f} {med:9.2f} {best / rows[0][1]:7.1f}x   " + "  ".join(f"{x:.4f}" for x in v))
