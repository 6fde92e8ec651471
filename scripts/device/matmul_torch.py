#!/usr/bin/env python3
"""PyTorch (cuBLAS) anchor for `rankmamba bench matmul`, run in the same device call: the same
three products per layer (forward X.W, input gradient dY.W^T, weight gradient X^T.dY, the
transposed operands as views), same sizes and dtype, timed the same way (wall clock between
synchronisations, median of the timed repetitions).

  matmul_torch.py --tokens 65536 --layers 768x768,768x3072 --dtype bf16
"""
import argparse
import json
import statistics
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=65536)
p.add_argument("--layers", default="768x768,768x3072,3072x768,768x1536,1536x768")
p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--reps", type=int, default=10)
a = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = True
dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
t = a.tokens
print(f"### PyTorch {torch.__version__} matmul, {a.dtype}, tokens {t}, {torch.cuda.get_device_name()}\n")
print("| layer | product | m x k x n | ms | TFLOP/s |\n|---|---|---|---|---|")
for layer in a.layers.split(","):
    d_in, d_out = map(int, layer.split("x"))
    x = torch.rand(t, d_in, device="cuda", dtype=dt) * 2 - 1
    w = torch.rand(d_in, d_out, device="cuda", dtype=dt) * 2 - 1
    dy = torch.rand(t, d_out, device="cuda", dtype=dt) * 2 - 1
    for name, lhs, rhs in [("forward", x, w), ("input-grad", dy, w.t()), ("weight-grad", x.t(), dy)]:
        m, k = lhs.shape
        n = rhs.shape[1]
        times = []
        for i in range(a.warmup + a.reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = lhs @ rhs
            torch.cuda.synchronize()
            if i >= a.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
            del out
        ms = statistics.median(times)
        tf = 2 * m * k * n / (ms * 1e-3) / 1e12
        print(f"| {layer} | {name} | {m}x{k}x{n} | {ms:.3f} | {tf:.0f} |")
        print("JSON " + json.dumps({"anchor": "matmul", "layer": layer, "product": name, "m": m, "k": k, "n": n, "dtype": a.dtype, "ms": ms, "tflops": tf}))
