#!/usr/bin/env python3
"""PyTorch anchor for `rankmamba bench rerank`: cross-encoder scoring throughput on one GPU.

Same shape as the Rust bench: 100 candidates per query, L tokens per (query, document) pair,
the candidates scored in forward calls of `batch` rows; random weights (throughput does not
depend on them), random token ids. Models, as in the Rust bench:
- bert-base: HF `BertModel` (bert-base-uncased config) with SDPA attention, CLS pooling + Linear(768, 1);
- pythia-160m: HF `GPTNeoXModel` (pythia-160m config) with SDPA, last position + Linear;
- mamba-130m / mamba-370m: HF `MambaModel`, last position + Linear. Without the `mamba_ssm` /
  `causal_conv1d` packages transformers runs its documented PyTorch path (a sequential scan);
  the script prints which path ran.

fp32 runs with TF32 matmuls allowed (as in the training anchors); bf16 casts the whole model.
Under torch.inference_mode. Reports docs/s and ms per query (100 candidates), median of the
timed queries after one untimed query. Slow configurations are cut by --budget-s per row (docs/s
is then measured over the calls that ran).

    python scripts/device/anchor_rerank_torch.py --models bert-base,mamba-130m --batches 1,8,128
"""

import argparse
import json
import time

import torch
import transformers
from transformers import BertConfig, BertModel, GPTNeoXConfig, GPTNeoXModel, MambaConfig, MambaModel


def build(name):
    if name == "bert-base":
        return BertModel(BertConfig(attn_implementation="sdpa"), add_pooling_layer=False), "cls", 30522
    if name == "pythia-160m":
        cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072, rotary_pct=0.25, max_position_embeddings=2048,
                            attn_implementation="sdpa")
        return GPTNeoXModel(cfg), "last", 50304
    if name in ("mamba-130m", "mamba-370m"):
        h, n = (768, 24) if name == "mamba-130m" else (1024, 48)
        cfg = MambaConfig(vocab_size=50280, hidden_size=h, num_hidden_layers=n, state_size=16, expand=2,
                          conv_kernel=4)
        return MambaModel(cfg), "last", 50280
    raise SystemExit(f"unknown model {name}")


def mamba_path():
    try:
        from transformers.models.mamba import modeling_mamba as mm
        fast = getattr(mm, "is_fast_path_available", None)
        return "official kernels (mamba_ssm + causal_conv1d)" if fast else "transformers PyTorch path (no kernels)"
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bert-base,pythia-160m,mamba-130m")
    ap.add_argument("--batches", default="1,8,128")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--len", type=int, default=512)
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=20.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device("cuda")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"# mamba: {mamba_path()}")
    print("| model | precision | batch | docs/s | ms/query (100 cand.) | docs timed |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in a.models.split(","):
        torch.manual_seed(0)
        backbone, pooling, vocab = build(name)
        head = torch.nn.Linear(backbone.config.hidden_size, 1)
        for prec in a.precisions.split(","):
            dtype = torch.float32 if prec == "f32" else torch.bfloat16
            model = backbone.to(dev, dtype).eval()
            lin = head.to(dev, dtype).eval()
            for batch in [int(b) for b in a.batches.split(",")]:
                ids = torch.randint(0, vocab, (a.candidates, a.len), device=dev)

                def call(s):
                    hs = model(input_ids=ids[s:s + batch]).last_hidden_state
                    pooled = hs[:, 0] if pooling == "cls" else hs[:, -1]
                    return lin(pooled.to(lin.weight.dtype)).float()

                with torch.inference_mode():
                    call(0)  # warm-up
                    torch.cuda.synchronize()
                    # Score `queries` x `candidates` documents in calls of `batch` rows; stop early
                    # (after at least one call) when the row's budget is spent.
                    done, t0 = 0, time.perf_counter()
                    while done < a.queries * a.candidates:
                        n = min(batch, a.candidates - done % a.candidates)
                        call(done % a.candidates if n == batch else a.candidates - n)
                        done += n
                        torch.cuda.synchronize()
                        if time.perf_counter() - t0 > a.budget_s:
                            break
                    elapsed = time.perf_counter() - t0
                dps = done / elapsed
                ms = a.candidates / dps * 1e3
                rows.append(dict(model=name, precision=prec, batch=batch, docs_per_s=dps, ms_per_query=ms,
                                 docs_timed=done))
                print(f"| {name} | {prec} | {batch} | {dps:.1f} | {ms:.1f} | {done} |", flush=True)
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(0), torch=torch.__version__,
                           transformers=transformers.__version__, mamba_path=mamba_path(),
                           candidates=a.candidates, len=a.len, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
