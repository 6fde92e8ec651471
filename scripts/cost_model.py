#!/usr/bin/env python3
"""Data-parallel cost model of docs/distributed.md: all-reduce bytes per step and expected
scaling of Mamba-130m / 370m / 1.4B at 8, 64 and 512 GPUs, for four exchanges:
- per tensor: burn-collective's `GradientsParams::all_reduce` (one blocking call per parameter
  tensor after the backward; between nodes its WebSocket ring), what this project used before;
- rankmamba: what `Trainer` does now: 25 MB buckets through burn-collective inside a node, then
  between nodes a TCP ring of its own on f32 values staged through host memory, after the
  backward;
- bucketed + NCCL, not overlapped; and bucketed + NCCL overlapped with the backward.

    python3 scripts/cost_model.py            # the tables, as Markdown
    python3 scripts/cost_model.py --check    # the model against the two-H200 measurement

Every assumption is a named constant below; change one and rerun.
"""
import argparse
import math

# --- models (state-spaces configs; vocabulary padded to 50280) --------------------------------
VOCAB = 50280


def mamba(d, layers, n_state=16, expand=2, conv=4):
    e = expand * d
    dt_rank = math.ceil(d / 16)
    per_layer = (d * 2 * e            # in_proj
                 + e * conv + e        # conv1d weight + bias
                 + e * (dt_rank + 2 * n_state)  # x_proj
                 + dt_rank * e + e     # dt_proj weight + bias
                 + e * n_state + e     # A_log, D
                 + e * d               # out_proj
                 + d)                  # the block's RMSNorm
    params = VOCAB * d + layers * per_layer + d + (d + 1)  # embedding, norm_f, scoring head
    tensors = 1 + layers * 10 + 1 + 2
    return params, tensors


MODELS = {
    "Mamba-130m": mamba(768, 24),
    "Mamba-370m": mamba(1024, 48),
    "Mamba-1.4B": mamba(2048, 48),
}

# --- compute: seconds per step at 65,536 tokens per GPU, bf16 ---------------------------------
# Mamba-130m: 74.7k tokens/s measured on an H200 (docs/benchmarks.md); Mamba-370m: 21.6k tokens/s
# at 32,768 tokens, taken as the same rate at 65,536; Mamba-1.4B: not measured, scaled from 370m
# by the parameter ratio (compute per token ~ 6 x parameters).
TOKENS_PER_GPU = 65_536
STEP_S = {
    "Mamba-130m": TOKENS_PER_GPU / 74_700,
    "Mamba-370m": TOKENS_PER_GPU / 21_600,
}
STEP_S["Mamba-1.4B"] = STEP_S["Mamba-370m"] * MODELS["Mamba-1.4B"][0] / MODELS["Mamba-370m"][0]
BYTES_PER_GRAD = 2  # bf16 parameters, bf16 gradients

# --- links --------------------------------------------------------------------------------------
GPUS_PER_NODE = 8
NVLINK_BPS = 300e9      # effective all-reduce bus bandwidth inside an H100/H200 node (NVLink 4)
IB_BPS = 50e9           # one 400 Gb/s NDR port per node, as burn-collective's one process per node uses
# per-call latency of one blocking all-reduce of one tensor:
ALPHA_LOCAL_S = 0.45e-3  # inside a node, burn-collective over CUDA: fitted to the two-H200 run (--check)
ALPHA_GLOBAL_S = 1.0e-3  # between nodes, per ring step: a WebSocket request + download (assumed)
ALPHA_NCCL_S = 20e-6     # per ring step with NCCL over InfiniBand
ALPHA_TCP_S = 0.1e-3     # per ring step of rankmamba's TCP ring: a message, a thread (assumed)
TCP_BPS = 3e9            # one kernel TCP stream per ring neighbour (assumed; not RDMA)
PCIE_BPS = 25e9          # device <-> host copy of the node's gradients (PCIe 5 x16, one way)
RING_BYTES_PER_GRAD = 4  # the TCP ring carries f32
BUCKET_BYTES = 25e6      # PyTorch DDP's default bucket
BACKWARD_SHARE = 2 / 3   # share of a step that is the backward pass (communication can hide there)


def step_time(model, gpus, mode):
    """(step seconds, communication seconds, gradient bytes) for `mode` in MODES."""
    params, tensors = MODELS[model]
    compute = STEP_S[model]
    grad_bytes = params * BYTES_PER_GRAD
    nodes = max(1, gpus // GPUS_PER_NODE)
    local = min(gpus, GPUS_PER_NODE)
    buckets = math.ceil(grad_bytes / BUCKET_BYTES)
    calls = tensors if mode == "per tensor" else buckets
    # local level (tree inside the node): bandwidth + one latency per call per tree level
    t_local = 0.0
    if local > 1:
        levels = math.ceil(math.log2(local))
        alpha = ALPHA_NCCL_S if mode.startswith("nccl") else ALPHA_LOCAL_S
        t_local = 2 * (local - 1) / local * grad_bytes / NVLINK_BPS + calls * 2 * levels * alpha
    # global level (ring across nodes): 2(N-1) steps of S/N bytes each, per call
    t_global = 0.0
    if nodes > 1:
        if mode == "rankmamba":
            ring_bytes = params * RING_BYTES_PER_GRAD
            t_global = (2 * (nodes - 1) / nodes * ring_bytes / TCP_BPS
                        + calls * 2 * (nodes - 1) * ALPHA_TCP_S
                        + 2 * ring_bytes / PCIE_BPS)
        else:
            alpha = ALPHA_GLOBAL_S if mode == "per tensor" else ALPHA_NCCL_S
            t_global = 2 * (nodes - 1) / nodes * grad_bytes / IB_BPS + calls * 2 * (nodes - 1) * alpha
    comm = t_local + t_global
    if mode == "nccl + overlap":  # hidden behind the backward pass as far as it lasts
        exposed = max(0.0, comm - BACKWARD_SHARE * compute)
    else:
        exposed = comm
    return compute + exposed, comm, grad_bytes


MODES = ["per tensor", "rankmamba", "nccl", "nccl + overlap"]


def table():
    print("| model | parameters | tensors | all-reduce bytes / step (bf16) | compute / step | "
          "GPUs | per tensor (burn-collective): comm, efficiency | rankmamba now: 25 MB buckets, "
          "TCP ring between nodes | bucketed + NCCL | bucketed + NCCL + overlapped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        params, tensors = MODELS[model]
        for gpus in (8, 64, 512):
            compute = STEP_S[model]
            cells = []
            for mode in MODES:
                t, comm, grad_bytes = step_time(model, gpus, mode)
                if mode == "nccl + overlap":
                    cells.append(f"{compute / t:.0%}")
                elif comm >= 1:
                    cells.append(f"{comm:.2f} s, {compute / t:.0%}")
                else:
                    cells.append(f"{comm * 1e3:.0f} ms, {compute / t:.0%}")
            print(f"| {model} | {params / 1e6:.1f}M | {tensors} | {grad_bytes / 1e9:.2f} GB | "
                  f"{compute:.2f} s | {gpus} | " + " | ".join(cells) + " |")


def check():
    # strong scaling on two H200s (docs/distributed.md): 15,732 tokens per step, f32,
    # 22.7k tokens/s on one GPU, 34.5k on two
    params, tensors = MODELS["Mamba-130m"]
    one = 15_732 / 22_700
    two = 15_732 / 34_500
    ideal = one / 2
    overhead = two - ideal
    bw_only = params * 4 / NVLINK_BPS  # f32 gradients, two GPUs: 2(n-1)/n = 1
    print(f"one GPU {one * 1e3:.0f} ms/step, two GPUs {two * 1e3:.0f} ms/step, "
          f"ideal {ideal * 1e3:.0f} ms: {overhead * 1e3:.0f} ms of exchange per step")
    print(f"bandwidth alone: {bw_only * 1e3:.1f} ms ({params * 4 / 1e6:.0f} MB over NVLink): "
          f"predicts {one / (ideal + bw_only):.2f}x, measured {one / two:.2f}x")
    print(f"the rest over {tensors} blocking calls: {(overhead - bw_only) / tensors * 1e3:.2f} ms per "
          f"tensor (ALPHA_LOCAL_S = {ALPHA_LOCAL_S * 1e3:.2f} ms)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    if ap.parse_args().check:
        check()
    else:
        table()
