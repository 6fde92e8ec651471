#!/usr/bin/env bash
# The follow-up call of scripts/device/step_bench.sh: per-kernel profiles of one bf16 BERT-base
# and Mamba-130m step without and with Burn's Fusion (both with the fused AdamW). BIN as for
# step_bench.sh.
#   BIN=device-bin4 bash scripts/device/step_profile.sh
set -u
OUT=${OUT:-/tmp/step-profile-out}
mkdir -p "$OUT"
work=$(mktemp -d)
xz -dc "$BIN/rankmamba.xz" > "$work/rankmamba" && chmod +x "$work/rankmamba"
xz -dc "$BIN/rankmamba-fusion.xz" > "$work/rankmamba-fusion" && chmod +x "$work/rankmamba-fusion"
export RUST_BACKTRACE=0
source "$(dirname "$0")/common.sh"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 | tee -a "$OUT/summary.md"
prof() { local bin=$1; shift; BIN="$work/$bin" OUT="$work/prof" timeout 150 bash scripts/device/profile_train.sh "$@" 2>&1 | tee -a "$OUT/profile.md"; }
step prof rankmamba bert-bf16-plain 100 --models bert-base --precision bf16 --warmup 1 --steps 1
step prof rankmamba-fusion bert-bf16-fusion 120 --models bert-base --precision bf16 --warmup 2 --steps 1
step prof rankmamba mamba-bf16-plain 100 --models mamba-130m --precision bf16 --warmup 1 --steps 1
step prof rankmamba-fusion mamba-bf16-fusion 120 --models mamba-130m --precision bf16 --warmup 2 --steps 1
python3 scripts/device/profile_categories.py "$work"/prof/prof-*.log > "$OUT/profile-categories.md" 2>&1
[ -d "$work/prof" ] && tar -C "$work/prof" -cJf "$OUT/prof-logs.tar.xz" .
log "done"
