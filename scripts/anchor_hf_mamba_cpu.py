#!/usr/bin/env python3
"""CPU anchor for the mamba-blocks bench: HF transformers MambaModel (130m config, random
weights, the slow pure-PyTorch path, fp32) forward and forward+backward at (batch 2, L 512),
on this machine's cores. Prints tokens/s (median of a few runs). `--backward` also times
forward+backward (slow, and it keeps every step's state: about 20 GB)."""
import statistics
import sys
import time

import torch
from transformers import MambaConfig, MambaModel

threads = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else torch.get_num_threads()
torch.set_num_threads(threads)
batch, length = 2, 512
cfg = MambaConfig(hidden_size=768, num_hidden_layers=24, vocab_size=50280, state_size=16)
model = MambaModel(cfg).float().eval()
ids = torch.randint(0, cfg.vocab_size, (batch, length))


def timed(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def fwd():
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)


def fwd_bwd():
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, use_cache=False).last_hidden_state.sum().backward()


n = batch * length
print(f"torch {torch.__version__}, {threads} threads, HF MambaModel 130m-config (slow path), batch {batch} x L {length}", flush=True)
tf = timed(fwd, 2)
print(f"forward          {tf:8.2f} s  {n / tf:8.1f} tokens/s", flush=True)
if "--backward" in sys.argv:
    tb = timed(fwd_bwd, 1)
    print(f"forward+backward {tb:8.2f} s  {n / tb:8.1f} tokens/s", flush=True)
