#!/usr/bin/env python3
"""CPU anchor for the transformer-baselines bench: HF `transformers` BertModel (bert-base config)
and GPTNeoXModel (pythia-160m config), random weights, float32, batch 2 x 512 tokens, forward and
forward+backward (loss = mean of the last hidden state), PyTorch SDPA attention, on as many
threads as the Rust bench uses (default 2).

    /root/.cache/rm-venv/bin/python scripts/anchor_hf_transformers_cpu.py [--threads 2] [--reps 3]
"""

import argparse
import time

import torch
from transformers import BertConfig, BertModel, GPTNeoXConfig, GPTNeoXModel

BATCH, SEQ = 2, 512


def bench(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), sum(times) / len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "bert-base": (BertModel(BertConfig(), add_pooling_layer=True), 30522),
        "pythia-160m": (
            GPTNeoXModel(GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12,
                                       num_attention_heads=12, intermediate_size=3072,
                                       max_position_embeddings=2048, rotary_pct=0.25,
                                       use_parallel_residual=True)),
            50304,
        ),
    }
    print(f"torch {torch.__version__}, {args.threads} threads, batch {BATCH} x {SEQ}")
    print("| model | pass | best s | mean s | tokens/s (best) |")
    print("|---|---|---|---|---|")
    for name, (model, vocab) in models.items():
        ids = torch.randint(0, vocab, (BATCH, SEQ))
        mask = torch.ones(BATCH, SEQ, dtype=torch.long)
        model.eval()

        def fwd():
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().item()

        def fwd_bwd():
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, attention_mask=mask).last_hidden_state.mean().backward()

        for label, fn in [("forward", fwd), ("forward+backward", fwd_bwd)]:
            best, mean = bench(fn, args.reps)
            print(f"| {name} | {label} | {best:.2f} | {mean:.2f} | {BATCH * SEQ / best:.0f} |", flush=True)


if __name__ == "__main__":
    main()
