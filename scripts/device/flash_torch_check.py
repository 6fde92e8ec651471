#!/usr/bin/env python3
"""The device check of the flash-attention kernels' outputs on fresh random inputs against a
float64 PyTorch reference computed here (on the GPU when there is one).

`flash_torch_check` (crates/transformer-baselines/examples/flash_torch_check.rs) writes one
safetensors file per case: q, k, v as the kernels saw them (float32; for bf16 / f16 cases the
rounded values), the keep mask [batch, len_k] (1 visible), w (the loss is sum(o * w)), and the
kernels' o, dq, dk, dv (outputs NaN-poisoned before each launch, so an unwritten element shows).
This script recomputes o and the gradients in float64 with a plain masked softmax attention
(PyTorch autograd), and prints max |ours - ref| / max(max |ref|, 0.1) per tensor. A NaN, or an
error above the case's tolerance fails the case; the exit code is the number of failed cases.
The tolerance is 5e-5 for f32 storage; for bf16 and f16 it is the larger of 2e-2 (bf16) / 4e-3
(f16) and twice the error of PyTorch's own scaled_dot_product_attention run in that dtype on the
same rounded inputs (its columns are printed too): a half-precision kernel is held to what
PyTorch's attention gives in that precision.

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


def sdpa(q, k, v, keep, causal, w, dtype):
    """PyTorch's scaled_dot_product_attention in `dtype`, a row that sees no key set to zero."""
    q, k, v = (t.to(dtype).detach().requires_grad_(True) for t in (q, k, v))
    lq, lk = q.shape[-2], k.shape[-2]
    vis = (keep > 0.5)[:, None, None, :].expand(q.shape[0], 1, lq, lk)
    if causal:
        vis = vis & torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
    any_vis = vis.any(-1, keepdim=True)
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=vis | ~any_vis)
    o = o * any_vis
    (o.float() * w.float()).sum().backward()
    return o.detach(), q.grad, k.grad, v.grad


def main(folder):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    failed = 0
    print("| case | dtype | causal | o | dq | dk | dv | SDPA o | dq | dk | dv | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        with safe_open(path, "pt", device=dev) as f:
            meta = f.metadata()
            t = {n: f.get_tensor(n) for n in f.keys()}
        causal = meta["causal"] == "true"
        ref = reference(t["q"], t["k"], t["v"], t["keep"], causal, t["w"])
        half = {"BF16": torch.bfloat16, "F16": torch.float16}.get(meta["dtype"])
        theirs = sdpa(t["q"], t["k"], t["v"], t["keep"], causal, t["w"], half) if half else None
        errs, sdpa_errs = [], []
        ok = True
        for n, (name, r) in enumerate(zip(["o", "dq", "dk", "dv"], ref)):
            scale = max(r.abs().max().item(), 0.1)
            tol = TOL[meta["dtype"]]
            if theirs is not None:
                es = (theirs[n].double() - r).abs().max().item() / scale
                sdpa_errs.append(f"{es:.1e}")
                tol = max(tol, 2 * es)
            else:
                sdpa_errs.append("-")
            ours = t[name].double()
            if not torch.isfinite(ours).all():
                errs.append("NaN")
                ok = False
                continue
            e = (ours - r).abs().max().item() / scale
            errs.append(f"{e:.1e}")
            ok &= e <= tol
        failed += not ok
        case = os.path.basename(path).removesuffix(".safetensors")
        print(f"| {case} | {meta['dtype']} | {causal} | {' | '.join(errs)} | {' | '.join(sdpa_errs)} | {'ok' if ok else 'FAIL'} |")
    print(f"{failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
