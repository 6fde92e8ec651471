#!/usr/bin/env python3
"""The device check of the flash-attention kernels' outputs on fresh random inputs against a
float64 PyTorch reference computed here (on the GPU when there is one).

`flash_torch_check` (crates/transformer-baselines/examples/flash_torch_check.rs) writes one
safetensors file per case: q, k, v as the kernels saw them (float32; for bf16 / f16 cases the
rounded values), the keep mask [batch, len_k] (1 visible), w (the loss is sum(o * w)), and the
kernels' o, dq, dk, dv (outputs NaN-poisoned before each launch, so an unwritten element shows).
This script recomputes o and the gradients in float64 with a plain masked softmax attention
(PyTorch autograd), and prints max |ours - ref| / max(max |ref|, 0.1) per tensor. A NaN, or an
error above the case's tolerance (5e-5 for f32 storage, 2e-2 for bf16, 4e-3 for f16), fails the
case; the exit code is the number of failed cases.

    python3 scripts/device/flash_torch_check.py DIR
"""
import glob
import math
import os
import sys

import torch
from safetensors import safe_open

TOL = {"F32": 5e-5, "BF16": 2e-2, "F16": 4e-3}


def reference(q, k, v, keep, causal, w):
    q, k, v = (t.double().requires_grad_(True) for t in (q, k, v))
    d = q.shape[-1]
    s = q @ k.transpose(-1, -2) / math.sqrt(d)
    vis = keep.double()[:, None, None, :].expand_as(s) > 0.5
    if causal:
        lq, lk = s.shape[-2:]
        tri = torch.ones(lq, lk, dtype=torch.bool, device=s.device).tril()
        vis = vis & tri
    s = s.masked_fill(~vis, float("-inf"))
    any_vis = vis.any(-1, keepdim=True)
    p = torch.softmax(s.masked_fill(~any_vis, 0.0), -1) * any_vis
    o = p @ v
    (o * w.double()).sum().backward()
    return o.detach(), q.grad, k.grad, v.grad


def main(folder):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    failed = 0
    print("| case | dtype | causal | o | dq | dk | dv | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with safe_open(path, "pt", device=dev) as f:
            meta = f.metadata()
            t = {n: f.get_tensor(n) for n in f.keys()}
        causal = meta["causal"] == "true"
        ref = reference(t["q"], t["k"], t["v"], t["keep"], causal, t["w"])
        errs = []
        ok = True
        for name, r in zip(["o", "dq", "dk", "dv"], ref):
            ours = t[name].double()
            if not torch.isfinite(ours).all():
                errs.append("NaN")
                ok = False
                continue
            scale = max(r.abs().max().item(), 0.1)
            e = (ours - r).abs().max().item() / scale
            errs.append(f"{e:.1e}")
            ok &= e <= TOL[meta["dtype"]]
        failed += not ok
        case = os.path.basename(path).removesuffix(".safetensors")
        print(f"| {case} | {meta['dtype']} | {causal} | {' | '.join(errs)} | {'ok' if ok else 'FAIL'} |")
    print(f"{failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
