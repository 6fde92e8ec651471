#!/usr/bin/env python3
"""Selective-scan fixtures from an independent reference: PyTorch, float64, the sequential
recurrence of mamba_ssm's `selective_scan_ref` written out here, gradients by torch.autograd.

`reference` is also imported by `scripts/device/scan_torch_check.py`.

Each case is one safetensors file with the inputs (float32 copies of the float64 values the
reference used), the output y, the last state, dy (the weights of the loss sum(y * dy)) and
every gradient. Run by hand; outputs are committed:
    /tmp/v/bin/pip install torch safetensors
    /tmp/v/bin/python scripts/gen_scan_fixtures.py crates/mamba-ssm/tests/fixtures
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

def reference(u, delta, A, B, C, D, z, delta_bias, softplus):
    """u, delta, z: [b, d, l]; A: [d, n]; B, C: [b, g, n, l]; D, delta_bias: [d]."""
    b, d, l = u.shape
    g = B.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    if softplus:
        delta = torch.nn.functional.softplus(delta)
    # expand the groups to channels: channel i uses group i // (d // g)
    Bx = B.repeat_interleave(d // g, dim=1)  # [b, d, n, l]
    Cx = C.repeat_interleave(d // g, dim=1)
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A[None]) * h + dt * Bx[:, :, :, t] * u[:, :, t, None]
        ys.append((h * Cx[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D[None, :, None]
    if z is not None:
        y = y * torch.nn.functional.silu(z)
    return y, h


# name: (batch, d_inner, L, N, G, ungrouped B/C, D, z, bias, softplus)
CASES = {
    "l1_all": (1, 4, 1, 4, 1, False, True, True, True, True),
    "odd_n1_plain": (3, 6, 7, 1, 1, False, False, False, False, False),
    "g2_n16_all": (3, 8, 33, 16, 2, False, True, True, True, True),
    "l1000_n16": (1, 4, 1000, 16, 1, False, True, True, True, True),
    "n64_g4": (1, 4, 65, 64, 4, False, True, False, True, True),
    "ungrouped_n4": (2, 3, 20, 4, 1, True, True, True, False, True),
    "odd_n4_d_only": (3, 5, 129, 4, 1, False, True, False, False, True),
}

def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    index = {}
    for name, (b, d, l, n, g, ungrouped, has_d, has_z, has_bias, softplus) in CASES.items():
        f64 = torch.float64
        t = {
            "u": torch.randn(b, d, l, dtype=f64),
            # softplus(delta + bias) around 0.1-1; without softplus, small positive steps
            "delta": (torch.randn(b, d, l, dtype=f64) * 0.5 - 1.0) if softplus else torch.rand(b, d, l, dtype=f64) * 0.2,
            "A": -torch.exp(torch.randn(d, n, dtype=f64) * 0.5),
            "B": torch.randn(b, g, n, l, dtype=f64),
            "C": torch.randn(b, g, n, l, dtype=f64),
        }
        if has_d:
            t["D"] = torch.randn(d, dtype=f64)
        if has_z:
            t["z"] = torch.randn(b, d, l, dtype=f64)
        if has_bias:
            t["delta_bias"] = torch.randn(d, dtype=f64) * 0.3
        # round the inputs to float32 so that the float32 code under test sees the same values
        t = {k: v.float().double().requires_grad_(True) for k, v in t.items()}
        y, last = reference(t["u"], t["delta"], t["A"], t["B"], t["C"], t.get("D"), t.get("z"),
                            t.get("delta_bias"), softplus)
        dy = torch.randn_like(y).float().double()
        (y * dy).sum().backward()
        out = {k: v.detach().float().contiguous() for k, v in t.items()}
        if ungrouped:  # store B and C as [b, n, l]
            out["B"], out["C"] = out["B"][:, 0].contiguous(), out["C"][:, 0].contiguous()
        out["y"] = y.detach().float().contiguous()
        out["last_state"] = last.detach().float().contiguous()
        out["dy"] = dy.float().contiguous()
        for k, v in t.items():
            gk = v.grad.detach().float()
            if ungrouped and k in ("B", "C"):
                gk = gk[:, 0]
            out["grad_" + k] = gk.contiguous()
        save_file(out, os.path.join(out_dir, f"{name}.safetensors"),
                  metadata={"softplus": str(softplus), "ungrouped": str(ungrouped)})
        index[name] = {"batch": b, "d_inner": d, "L": l, "N": n, "G": g, "ungrouped": ungrouped,
                       "softplus": softplus, "max_abs_y": float(y.abs().max())}
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump({"torch": torch.__version__, "cases": index}, f, indent=1)


if __name__ == "__main__":
    main()
