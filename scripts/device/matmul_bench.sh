#!/usr/bin/env bash
# One device call for the matmul kernels of `linear-kernels`, run from the repository root with
# BIN set to the carried folder (rankmamba.xz of a `--features cuda` build; mamba-official/ from
# shared/anchors/mamba-official/prepare.sh). Results go to $OUT (at most 8 files). In order,
# within BUDGET seconds:
# - the projections' products per kernel (ours) and cuBLAS's (PyTorch), bf16;
# - bf16 training steps of BERT-base, Pythia-160m and Mamba-130m with the default kernel
#   (auto) and with Burn's (Mamba in its own process: the memory pools keep what the
#   transformers left), then the PyTorch steps (HF SDPA; the official selective scan);
# - the f32 rows, and the f32 products;
# - the per-kernel profile of one bf16 BERT-base step with the default kernel.
#   BIN=device-bin bash scripts/device/matmul_bench.sh
set -u
OUT=${OUT:-/tmp/matmul-out}
mkdir -p "$OUT"
work=$(mktemp -d)
xz -dc "$BIN/rankmamba.xz" > "$work/rankmamba" && chmod +x "$work/rankmamba"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0 ANCHOR_MODELS=bert-base,pythia-160m
source "$(dirname "$0")/common.sh"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 | tee -a "$OUT/summary.md"

mm() { peak matmul.json 150 "$work/rankmamba" bench matmul --backend cuda --json "$@"; }
tr() { peak train.json 90 "$work/rankmamba" bench train --backend cuda --json --warmup 1 --steps 3 "$@"; }
mamba() { (cd "$BIN/mamba-official" && timeout 100 python3 mamba_train_anchor.py "$@") 2>&1 | grep -v "^\[build\]" | tee -a "$OUT/torch.md"; }
prof() { BIN="$work/rankmamba" OUT="$work/prof" timeout 130 bash scripts/device/profile_train.sh "$@" 2>&1 | tee -a "$OUT/profile.md"; }
# most important first
step mm --precision bf16 --kernels burn,specialized-tma-mma
step eval 'timeout 60 python3 scripts/device/matmul_torch.py --dtype bf16 | tee -a "$OUT/torch.md"'
step tr --precision bf16 --models bert-base,pythia-160m --matmul auto
step tr --precision bf16 --models mamba-130m --matmul auto
step tr --precision bf16 --models bert-base,pythia-160m --matmul burn
step tr --precision bf16 --models mamba-130m --matmul burn
step eval 'ANCHOR_MODES=bf16,fp32 timeout 100 python3 scripts/device/bench_anchor_torch.py train | tee -a "$OUT/torch.md"'
step mamba --mode bf16
step tr --precision f32 --models bert-base,pythia-160m --matmul auto
step tr --precision f32 --models mamba-130m --matmul auto
step mm --precision f32 --kernels burn,tma-mma,specialized-tma-mma --layers 768x3072,3072x768
step eval 'timeout 60 python3 scripts/device/matmul_torch.py --dtype fp32 --layers 768x3072,3072x768 | tee -a "$OUT/torch.md"'
step prof bert-bf16 100 --models bert-base --precision bf16 --warmup 1 --steps 1
[ -d "$work/prof" ] && tar -C "$work/prof" -cJf "$OUT/prof-logs.tar.xz" .
grep -iE "panick|error" "$OUT/stderr.log" 2>/dev/null | sort | uniq -c | head -20
log "done"
