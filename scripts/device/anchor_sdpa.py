#!/usr/bin/env python3
"""Same-call anchor on the GPU: PyTorch SDPA attention core at 65,536 tokens (12 heads x 64,
non-causal), forward and forward+backward, fp32-in-bf16 as in shared/notes/h200-anchors.md.
Median of CUDA-event-timed repeats after warm-up. Prints markdown rows."""
import torch
import torch.nn.functional as F

torch.manual_seed(0)
dev = "cuda"


def bench(fn, reps=20):
    for _ in range(3):
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


print("| anchor | L (batch) | fwd ms | fwd+bwd ms |")
print("|---|---|---|---|")
for L, B in [(512, 128), (2048, 32)]:
    q, k, v = (torch.randn(B, 12, L, 64, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = torch.randn(B, 12, L, 64, device=dev, dtype=torch.bfloat16)
    fwd = bench(lambda: F.scaled_dot_product_attention(q, k, v))
    fb = bench(lambda: F.scaled_dot_product_attention(q, k, v).backward(g))
    print(f"| SDPA bf16 (default backend) | {L} ({B}) | {fwd:.3f} | {fb:.3f} |")
