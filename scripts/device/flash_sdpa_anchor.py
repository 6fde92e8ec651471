#!/usr/bin/env python3
"""Same-call anchor for the flash-attention kernels: PyTorch SDPA as a PyTorch user calls it, at
the cells of `rankmamba bench scan --parts attention` (tokens = batch x L = 65,536, 12 heads x
64, non-causal), forward under no_grad and forward + backward through autograd (q, k, v
tracked, `o.backward(g)`), fp32 and bf16, with no padding and with the last 30% of each row's
keys masked (a boolean [batch, 1, 1, L] mask). Each SDPA back end is forced in turn (flash,
cuDNN, memory-efficient, and the default choice); a back end that refuses a cell is listed as
n/a. Wall clock between syncs, median of `reps` after `warmup`, as the Rust bench times.
Prints markdown rows and one JSON line per figure (prefix `JSON `).

    python3 scripts/device/flash_sdpa_anchor.py [--lens 128,512,2048,8192] [--tokens 65536]
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.backends.cuda.matmul.allow_tf32 = True
ap = argparse.ArgumentParser()
ap.add_argument("--lens", default="128,512,2048,8192")
ap.add_argument("--tokens", type=int, default=65536)
ap.add_argument("--heads", type=int, default=12)
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--dtypes", default="bf16,fp32")
ap.add_argument("--pads", default="0,0.3")
args = ap.parse_args()
dev = "cuda"
BACKENDS = {
    "flash": [SDPBackend.FLASH_ATTENTION],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "default": None,
}


def wall(fn):
    for _ in range(args.warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


print("| L | batch | dtype | padding | back end | fwd ms | fwd+bwd ms |")
print("|---|---|---|---|---|---|---|")
for L in [int(x) for x in args.lens.split(",")]:
    B = max(1, args.tokens // L)
    for dtype in [{"bf16": torch.bfloat16, "fp32": torch.float32}[d] for d in args.dtypes.split(",")]:
        for pad in [float(p) for p in args.pads.split(",")]:
            shape = (B, args.heads, L, args.dim)
            q, k, v = (torch.randn(shape, device=dev, dtype=dtype) for _ in range(3))
            g = torch.randn(shape, device=dev, dtype=dtype)
            mask = None
            if pad > 0:
                keep = torch.arange(L, device=dev) < L - round(pad * L)
                mask = keep[None, None, None, :].expand(B, 1, 1, L)
            for name, be in BACKENDS.items():
                res = {}
                for pas in ["fwd", "fwd+bwd"]:
                    def call():
                        if pas == "fwd":
                            with torch.no_grad():
                                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                        else:
                            qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
                            F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask).backward(g)
                    try:
                        if be is None:
                            res[pas] = wall(call)
                        else:
                            with sdpa_kernel(be):
                                res[pas] = wall(call)
                    except Exception as e:  # a back end that does not take this cell
                        res[pas] = None
                        res[pas + "_error"] = str(e).split("\n")[0][:120]
                    torch.cuda.empty_cache()
                fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
                dt = "bf16" if dtype == torch.bfloat16 else "fp32"
                print(f"| {L} | {B} | {dt} | {pad:.0%} | {name} | {fmt(res['fwd'])} | {fmt(res['fwd+bwd'])} |", flush=True)
                print("JSON " + json.dumps({"anchor": "sdpa", "len": L, "batch": B, "dtype": dt,
                                            "padding": pad, "backend": name, **res}), flush=True)
            del q, k, v, g
            torch.cuda.empty_cache()
