#!/usr/bin/env bash
# One device call for the flash-attention kernels, run from the repository root with BIN set to
# the carried folder (rankmamba.xz and flash_torch_check.xz of a `--features cuda` build, without
# Burn's autotune: its first-use tuning takes minutes per shape; mamba-official/ from
# shared/anchors/mamba-official/prepare.sh). Results go to $OUT (at most 8 files). In order,
# within BUDGET seconds:
# - the kernels' check against PyTorch float64 (default kernels: tensor-core tiles for bf16/f16;
#   then the tiled kernels everywhere, f32 on the scalar units);
# - bf16 training steps of BERT-base and Pythia-160m with the tiled (default) and scalar flash
#   kernels and Burn's attention, of Mamba-130m, and the PyTorch steps (HF SDPA, the official
#   selective-scan kernel);
# - the bf16 attention cores (ours tiled and scalar, Burn's, SDPA's back ends);
# - the f32 rows;
# - per-kernel profiles of one bf16 step (cubecl's profiler for ours, torch.profiler for PyTorch).
#   BIN=device-bin bash scripts/device/flash_bench.sh
# Peak device memory of each Rust run: the largest `memory.used` nvidia-smi saw during it.
set -u
OUT=${OUT:-/tmp/flash-out}
mkdir -p "$OUT"
work=$(mktemp -d)
xz -dc "$BIN/rankmamba.xz" > "$work/rankmamba" && chmod +x "$work/rankmamba"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0 ANCHOR_MODELS=bert-base,pythia-160m
source "$(dirname "$0")/common.sh"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 | tee -a "$OUT/summary.md"
tr() { peak train.json 90 "$work/rankmamba" bench train --backend cuda --json --warmup 1 --steps 3 "$@"; }
scan() { peak scan.json 90 "$work/rankmamba" bench scan --backend cuda --json --parts attention --warmup 1 --reps 3 "$@"; }
sdpa() { timeout 120 python3 scripts/device/flash_sdpa_anchor.py --warmup 1 --reps 3 "$@" | tee -a "$OUT/torch.md"; }
mamba() { (cd "$BIN/mamba-official" && timeout 100 python3 mamba_train_anchor.py "$@") 2>&1 | grep -v "^\[build\]" | tee -a "$OUT/torch.md"; }
check() {
  local kernel=$1
  [ -x "$work/flash_torch_check" ] || { xz -dc "$BIN/flash_torch_check.xz" > "$work/flash_torch_check" && chmod +x "$work/flash_torch_check"; }
  log "check: $kernel kernels"
  timeout 150 "$work/flash_torch_check" cuda "$work/check-$kernel" "$kernel" 2>>"$OUT/stderr.log"
  { echo "### kernels: $kernel"; timeout 120 python3 scripts/device/flash_torch_check.py "$work/check-$kernel"; } | tee -a "$OUT/check.md"
}
prof() { BIN="$work/rankmamba" OUT="$work/prof" timeout 130 bash scripts/device/profile_train.sh "$@" 2>&1 | tee -a "$OUT/profile.md"; }
# most important first
step check auto
step check tiled
step tr --precision bf16 --models bert-base,pythia-160m --attention flash
step tr --precision bf16 --models bert-base,pythia-160m --attention flash-scalar
step tr --precision bf16 --models mamba-130m
step eval 'timeout 100 python3 scripts/device/bench_anchor_torch.py train | tee -a "$OUT/torch.md"'
step mamba --mode bf16
step scan --precision bf16 --attention flash
step scan --precision bf16 --attention flash-scalar
step scan --precision bf16 --attention flash --padding 0.3
step sdpa --dtypes bf16
step tr --precision bf16 --models bert-base --attention burn
step tr --precision f32 --models bert-base,pythia-160m --attention flash
step tr --precision f32 --models mamba-130m
step scan --precision f32 --attention flash
step sdpa --dtypes fp32 --pads 0
step prof bert-bf16 120 --models bert-base --precision bf16 --warmup 1 --steps 1
step prof mamba-bf16 120 --models mamba-130m --precision bf16 --warmup 1 --steps 1
step eval 'timeout 150 python3 scripts/device/bench_anchor_torch.py profile | tee -a "$OUT/profile.md"'
[ -d "$work/prof" ] && tar -C "$work/prof" -cJf "$OUT/prof-logs.tar.xz" .
grep -iE "panick|error" "$OUT/stderr.log" 2>/dev/null | sort | uniq -c | head -20
log "done"
