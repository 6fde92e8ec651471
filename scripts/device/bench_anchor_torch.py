#!/usr/bin/env python3
"""PyTorch anchors for `rankmamba bench {scan,train,rerank}`, run on the same GPU in the same
device call as the Rust figures (scripts/device/bench_h200.sh).

  bench_anchor_torch.py attention   # SDPA attention core, 12 heads x 64, tokens = 65,536
  bench_anchor_torch.py train       # HF BERT-base / Pythia cross-encoder training step
  bench_anchor_torch.py profile     # one such step under torch.profiler: kernel ms per category
  bench_anchor_torch.py rerank      # HF BERT-base / Pythia-160m inference (inference_mode, SDPA)
                                    # and Mamba-130m/370m (PyTorch + a Triton selective-scan
                                    # forward, see mamba_infer below)

Every figure: median of CUDA-event-timed repeats after warm-up (train: per step; rerank: the
whole query set, host read-back of scores after each batch). Random init, random token ids,
full-length sequences. Prints markdown rows and one JSON line per figure (prefix `JSON `).

Precisions: `fp32` = fp32 weights and activations with TF32 matmuls allowed (Burn's CUDA matmul
uses TF32 tensor cores for f32 too: 83-93 TFLOP/s measured, above the 64 TFLOP/s FP32 FMA peak);
`bf16-autocast` = fp32 weights, autocast(bf16) (the usual PyTorch recipe); `bf16` = the whole
model and optimizer state in bf16 (what a Burn `Cuda<bf16>` run is: no autocast in Burn 0.21).
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
dev = "cuda"
torch.manual_seed(0)


def emit(kind, **kw):
    print("JSON " + json.dumps({"anchor": kind, **kw}), flush=True)


def cuda_time(fn, warmup=3, reps=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


# ----------------------------------------------------------------------------- attention core
def attention():
    print("| anchor | dtype | L (batch) | fwd ms | fwd+bwd ms |")
    print("|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for L in (128, 512, 2048, 8192):
            B = 65536 // L
            q, k, v = (torch.randn(B, 12, L, 64, device=dev, dtype=dtype) for _ in range(3))
            fwd = cuda_time(lambda: F.scaled_dot_product_attention(q, k, v))
            qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))

            def fb():
                o = F.scaled_dot_product_attention(qg, kg, vg)
                o.sum().backward()

            fwdbwd = cuda_time(fb)
            name = str(dtype).replace("torch.", "")
            print(f"| SDPA (default backend) | {name} | {L} ({B}) | {fwd:.3f} | {fwdbwd:.3f} |", flush=True)
            emit("sdpa", dtype=name, L=L, batch=B, fwd_ms=fwd, fwdbwd_ms=fwdbwd)
            del q, k, v, qg, kg, vg
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- HF models
def hf_model(name):
    from transformers import AutoModel, BertConfig, GPTNeoXConfig

    if name == "bert-base":
        cfg = BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        pool = "cls"
    elif name == "pythia-160m":
        cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12,
                            num_attention_heads=12, intermediate_size=3072, rotary_pct=0.25,
                            max_position_embeddings=2048, use_parallel_residual=True,
                            attention_dropout=0.0, hidden_dropout=0.0)
        pool = "last"
    elif name == "pythia-410m":
        cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=1024, num_hidden_layers=24,
                            num_attention_heads=16, intermediate_size=4096, rotary_pct=0.25,
                            max_position_embeddings=2048, use_parallel_residual=True,
                            attention_dropout=0.0, hidden_dropout=0.0)
        pool = "last"
    else:
        raise ValueError(name)
    kw = {"attn_implementation": "sdpa"}
    if name == "bert-base":
        kw["add_pooling_layer"] = False
    m = AutoModel.from_config(cfg, **kw)
    return m, cfg.vocab_size, cfg.hidden_size, pool


class CrossEncoder(nn.Module):
    def __init__(self, enc, hidden, pool):
        super().__init__()
        self.enc, self.pool = enc, pool
        self.drop = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden, 1)

    def forward(self, ids):
        h = self.enc(input_ids=ids).last_hidden_state
        x = h[:, 0] if self.pool == "cls" else h[:, -1]
        return self.classifier(self.drop(x)).squeeze(-1).float()


def train_step(name, mode, Q, G, L):
    """A cross-encoder training step (LCE over groups of G, AdamW) of `name` in `mode` on random
    token ids: (step, model, optimizer, encoder)."""
    enc, vocab, hidden, pool = hf_model(name)
    model = CrossEncoder(enc, hidden, pool).to(dev)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    target = torch.zeros(Q, dtype=torch.long, device=dev)
    ids = torch.randint(0, vocab, (Q * G, L), device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(mode == "bf16-autocast")):
            s = model(ids)
        loss = F.cross_entropy(s.view(Q, G), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model, opt, enc


def train():
    Q, G, L = 16, 8, 512
    print(f"| anchor | mode | step ms | tokens/s | peak GiB |  ({Q} x {G} x {L} tokens, LCE, AdamW)")
    print("|---|---|---|---|---|")
    # ANCHOR_MODELS=bert-base,pythia-160m limits the models, ANCHOR_MODES=bf16,fp32 the modes
    for name in os.environ.get("ANCHOR_MODELS", "bert-base,pythia-160m,pythia-410m").split(","):
        for mode in os.environ.get("ANCHOR_MODES", "bf16-autocast,bf16,fp32").split(","):
            step, model, opt, enc = train_step(name, mode, Q, G, L)

            torch.cuda.reset_peak_memory_stats()
            ms = cuda_time(step, warmup=3, reps=8)
            peak = torch.cuda.max_memory_allocated() / 2**30
            tps = Q * G * L / (ms / 1e3)
            print(f"| HF {name} SDPA | {mode} | {ms:.1f} | {tps/1e3:.0f}k | {peak:.1f} |", flush=True)
            emit("train", model=name, mode=mode, step_ms=ms, tokens_per_s=tps, peak_gib=peak)
            del model, opt, enc
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- Mamba inference
# Mamba-1 (state-spaces `MambaMixer` semantics) in PyTorch, with the selective scan forward as a
# small Triton kernel: one program per (sequence, block of 32 channels), the state [32, N] in
# registers, a sequential loop over L; inputs in the [B, L, D] layout the projections produce
# (coalesced along channels); softplus(dt + bias), the D skip and the silu(z) gate fused.
# The official CUDA kernel is not installed on the device image; this is our documented
# PyTorch path (checked against a PyTorch sequential scan on a small case before timing).
try:
    import triton
    import triton.language as tl

    @triton.jit
    def _scan_fwd(u_ptr, dt_ptr, z_ptr, b_ptr, c_ptr, a_ptr, d_ptr, bias_ptr, y_ptr,
                  L, D, s_ub, s_ul, s_bb, s_bl, N: tl.constexpr, BLOCK: tl.constexpr):
        pid_b = tl.program_id(0)
        pid_d = tl.program_id(1)
        offs = pid_d * BLOCK + tl.arange(0, BLOCK)
        md = offs < D
        n = tl.arange(0, N)
        A = tl.load(a_ptr + offs[:, None] * N + n[None, :], mask=md[:, None], other=0.0)
        A = A * 1.4426950408889634
        Dv = tl.load(d_ptr + offs, mask=md, other=0.0)
        bias = tl.load(bias_ptr + offs, mask=md, other=0.0)
        h = tl.zeros([BLOCK, N], dtype=tl.float32)
        ub = pid_b * s_ub
        bb = pid_b * s_bb
        for t in range(L):
            u = tl.load(u_ptr + ub + t * s_ul + offs, mask=md, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + ub + t * s_ul + offs, mask=md, other=0.0).to(tl.float32) + bias
            dt = tl.where(dt > 20.0, dt, tl.log(1.0 + tl.exp(dt)))
            z = tl.load(z_ptr + ub + t * s_ul + offs, mask=md, other=0.0).to(tl.float32)
            Bt = tl.load(b_ptr + bb + t * s_bl + n).to(tl.float32)
            Ct = tl.load(c_ptr + bb + t * s_bl + n).to(tl.float32)
            h = tl.exp2(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(h * Ct[None, :], axis=1) + Dv * u
            y = y * z * tl.sigmoid(z)
            tl.store(y_ptr + ub + t * s_ul + offs, y.to(y_ptr.dtype.element_ty), mask=md)

    HAVE_TRITON = True
except Exception as e:  # noqa: BLE001
    print("triton unavailable:", e)
    HAVE_TRITON = False


def scan_triton(u, dt, z, Bm, Cm, A, Dv, bias):
    """u, dt, z: [B, L, D] (channel stride 1); Bm, Cm: [B, L, N]; A: [D, N] fp32."""
    Bsz, L, D = u.shape
    N = A.shape[1]
    u, dt, z = u.contiguous(), dt.contiguous(), z.contiguous()
    Bm, Cm = Bm.contiguous(), Cm.contiguous()
    y = torch.empty_like(u)
    BLOCK = 32
    _scan_fwd[(Bsz, triton.cdiv(D, BLOCK))](u, dt, z, Bm, Cm, A.float().contiguous(),
                                             Dv.float().contiguous(), bias.float().contiguous(), y,
                                             L, D, L * D, D, L * N, N, N=N, BLOCK=BLOCK)
    return y


def scan_ref(u, dt, z, Bm, Cm, A, Dv, bias):
    u, dt, z, Bm, Cm = (t.double() for t in (u, dt, z, Bm, Cm))
    A, Dv, bias = A.double(), Dv.double(), bias.double()
    dt = F.softplus(dt + bias)
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=torch.float64, device=u.device)
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + Dv * u[:, t])
    y = torch.stack(ys, 1)
    return y * z * torch.sigmoid(z)


class MambaMixer(nn.Module):
    def __init__(self, d, n=16, conv=4, expand=2):
        super().__init__()
        di = expand * d
        self.di, self.n, self.r = di, n, math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, conv, groups=di, padding=conv - 1)
        self.x_proj = nn.Linear(di, self.r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.r, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)

    def forward(self, x):  # [B, L, d]
        L = x.shape[1]
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)
        xs = F.silu(self.conv1d(xs.transpose(1, 2))[..., :L]).transpose(1, 2)
        dbc = self.x_proj(xs)
        dt, Bm, Cm = torch.split(dbc, [self.r, self.n, self.n], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # bias added (with softplus) in the scan
        A = -torch.exp(self.A_log.float())
        y = scan_triton(xs, dt, z, Bm, Cm, A, self.D, self.dt_proj.bias)
        return self.out_proj(y)


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class MambaEncoder(nn.Module):
    def __init__(self, d, layers, vocab=50280):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.norms = nn.ModuleList(RMSNorm(d) for _ in range(layers))
        self.mixers = nn.ModuleList(MambaMixer(d) for _ in range(layers))
        self.norm_f = RMSNorm(d)

    def forward(self, input_ids):
        h = self.emb(input_ids)
        for norm, mixer in zip(self.norms, self.mixers):
            h = h + mixer(norm(h))
        return type("O", (), {"last_hidden_state": self.norm_f(h)})


def check_scan():
    torch.manual_seed(1)
    Bsz, L, D, N = 2, 64, 80, 16
    u, dt, z = (torch.randn(Bsz, L, D, device=dev) for _ in range(3))
    dt = dt * 0.5 - 2
    Bm, Cm = torch.randn(Bsz, L, N, device=dev), torch.randn(Bsz, L, N, device=dev)
    A = -torch.rand(D, N, device=dev) * 7.5 - 0.5
    Dv, bias = torch.randn(D, device=dev), torch.randn(D, device=dev) * 0.1
    y = scan_triton(u, dt, z, Bm, Cm, A, Dv, bias).double()
    r = scan_ref(u, dt, z, Bm, Cm, A, Dv, bias)
    err = ((y - r).norm() / r.norm()).item()
    print(f"triton scan vs float64 sequential reference: rel err {err:.2e}", flush=True)
    emit("scan_check", rel_err=err)
    return err < 1e-4


def rerank():
    C, L = 100, 512
    batches = (1, 8, 128)
    print(f"| anchor | precision | batch | docs/s | ms per query |  ({C} candidates x {L} tokens, inference_mode)")
    print("|---|---|---|---|---|")
    models = ["bert-base", "pythia-160m"]
    if HAVE_TRITON:
        try:
            if check_scan():
                models += ["mamba-130m", "mamba-370m"]
        except Exception as e:  # noqa: BLE001
            print("triton scan failed:", e)
    for name in models:
        for prec in ("fp32", "bf16"):
            if name.startswith("mamba"):
                d, layers = (768, 24) if name == "mamba-130m" else (1024, 48)
                enc, vocab, hidden, pool = MambaEncoder(d, layers), 50280, d, "last"
            else:
                enc, vocab, hidden, pool = hf_model(name)
            model = CrossEncoder(enc, hidden, pool).to(dev).eval()
            if prec == "bf16":
                model = model.to(torch.bfloat16)
            for b in batches:
                queries = 2 if b > 1 else 1
                docs = queries * C
                ids = [torch.randint(0, vocab, (min(b, docs - i), L)) for i in range(0, docs, b)]

                def run(xs):
                    with torch.inference_mode():
                        for x in xs:
                            s = model(x.to(dev, non_blocking=True))
                            s.cpu()

                run(ids[:3])  # warm-up
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                run(ids)
                torch.cuda.synchronize()
                secs = time.perf_counter() - t0
                dps = docs / secs
                label = "HF " + name + " SDPA" if not name.startswith("mamba") else name + " PyTorch+Triton scan"
                print(f"| {label} | {prec} | {b} | {dps:.0f} | {1e3 * secs / queries:.1f} |", flush=True)
                emit("rerank", model=name, precision=prec, batch=b, docs_per_s=dps,
                     ms_per_query=1e3 * secs / queries)
            del model, enc
            torch.cuda.empty_cache()


def category(name):
    """A kernel's share of a step: matmul, attention, norm, optimizer, copy/cast, element-wise."""
    n = name.lower()
    # attention first: the memory-efficient kernels' names also say "cutlass"
    if any(k in n for k in ("flash", "fmha", "attention", "sdpa", "cudnn")):
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "matmul", "sm90_xmma", "cublas", "nvjet")):
        return "matmul"
    if "norm" in n:
        return "norm"
    if any(k in n for k in ("adam", "foreach", "multi_tensor")):
        return "optimizer"
    if any(k in n for k in ("copy", "cast", "convert", "cat", "index", "embedding", "gather", "scatter")):
        return "copy / cast / index"
    if "reduce" in n or "softmax" in n or "nll" in n:
        return "reduction"
    return "element-wise"


def train_profile():
    """One profiled training step (after warm-up) of BERT-base and Pythia-160m in pure bf16 and
    fp32 (TF32), as `train` runs them: milliseconds of CUDA kernels per category and the top
    kernels (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile
    Q, G, L = 16, 8, 512
    for name in ("bert-base", "pythia-160m"):
        for mode in ("bf16", "fp32"):
            step, model, opt, enc = train_step(name, mode, Q, G, L)

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step()
                torch.cuda.synchronize()
            sums, count, kernels = {}, 0, []
            for e in prof.key_averages():
                t = getattr(e, "device_time_total", None)
                if t is None:
                    t = e.cuda_time_total
                if t <= 0:
                    continue
                cat = category(e.key)
                sums[cat] = sums.get(cat, 0.0) + t / 1e3
                count += e.count
                kernels.append((t / 1e3, e.count, cat, e.key[:90]))
            total = sum(sums.values())
            print(f"\n#### PyTorch {name} {mode}: {total:.1f} ms of kernels in {count} launches")
            print("| category | ms | share |")
            print("|---|---|---|")
            for cat, ms in sorted(sums.items(), key=lambda kv: -kv[1]):
                print(f"| {cat} | {ms:.1f} | {100 * ms / total:.0f}% |")
            print("\n| kernel | ms | launches | category |")
            print("|---|---|---|---|")
            for ms, n, cat, key in sorted(kernels, reverse=True)[:12]:
                print(f"| `{key}` | {ms:.2f} | {n} | {cat} |")
            emit("train_profile", model=name, mode=mode, total_ms=total, categories=sums)
            del model, opt, enc
            torch.cuda.empty_cache()


if __name__ == "__main__":
    what = sys.argv[1:] or ["attention", "train", "rerank"]
    print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
    for w in what:
        {"attention": attention, "train": train, "rerank": rerank, "profile": train_profile}[w]()
