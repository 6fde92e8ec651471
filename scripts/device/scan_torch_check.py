#!/usr/bin/env python3
"""The device check of the scan kernels' outputs on fresh random inputs against a float64
PyTorch reference computed here (on the GPU when there is one).

`scan_torch_check` (crates/mamba-ssm/examples/scan_torch_check.rs) writes one safetensors file
per case: the inputs it gave the kernels (as float32: for bf16 cases the bf16-rounded values,
so the reference sees exactly what the kernels saw), dy, and the kernels' y, last state and
every gradient (outputs NaN-poisoned before each launch, so an unwritten element shows). This
script recomputes y, the last state and the gradients of sum(y * dy) in float64 with
`reference` from scripts/gen_scan_fixtures.py, and prints max |ours - ref| / max |ref| per
tensor. A NaN, or an error above the case's tolerance (1e-4 for f32 storage, 2e-2 for bf16),
fails the case; the exit code is the number of failed cases.

    python3 scripts/device/scan_torch_check.py DIR
"""
import glob
import os
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gen_scan_fixtures import reference  # noqa: E402

INPUTS = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def rel(ours, ref):
    ours = ours.double()
    if torch.isnan(ours).any():
        return float("inf")
    scale = max(ref.abs().max().item(), 1e-30)
    return (ours - ref).abs().max().item() / scale


def main():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    failed = 0
    files = sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors")))
    if not files:
        print("no cases found")
        return 1
    print(f"reference: torch {torch.__version__}, float64 on {dev}")
    print("| case | storage | tolerance | worst tensor | worst error | all errors |")
    print("|---|---|---|---|---|---|")
    for path in files:
        with safe_open(path, "pt") as f:
            meta = f.metadata()
            t = {k: f.get_tensor(k) for k in f.keys()}
        softplus = meta["softplus"] == "True"
        tol = 1e-4 if meta["storage"] == "F32" else 2e-2
        x = {k: t[k].to(dev, torch.float64).requires_grad_(True) for k in INPUTS if k in t}
        y, last = reference(x["u"], x["delta"], x["A"], x["B"], x["C"], x.get("D"), x.get("z"),
                            x.get("delta_bias"), softplus)
        dy = t["dy"].to(dev, torch.float64)
        (y * dy).sum().backward()
        errs = {"y": rel(t["y"].to(dev), y.detach()),
                "last_state": rel(t["last_state"].to(dev), last.detach())}
        for k, v in x.items():
            errs["grad_" + k] = rel(t["grad_" + k].to(dev), v.grad)
        worst = max(errs, key=errs.get)
        ok = errs[worst] <= tol
        failed += 0 if ok else 1
        name = os.path.basename(path).removesuffix(".safetensors")
        text = ", ".join(f"{k} {e:.1e}" for k, e in errs.items())
        print(f"| {name} | {meta['storage']} | {tol:g} | {worst} | {errs[worst]:.2e}"
              f"{'' if ok else ' FAIL'} | {text} |")
    print(f"{len(files) - failed} of {len(files)} cases pass")
    return failed


if __name__ == "__main__":
    sys.exit(main())
