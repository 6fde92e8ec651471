#!/usr/bin/env bash
# One device call for the flash-attention kernels, run from the repository root with BIN set to
# the carried folder (rankmamba.xz and flash_torch_check.xz of a `--features cuda` build, without
# Burn's autotune: its first-use tuning takes minutes per shape; mamba-official/ from
# shared/anchors/mamba-official/prepare.sh). Results go to $OUT. In order, within BUDGET seconds:
# the kernels' check against PyTorch float64; the training steps of BERT-base and Pythia-160m
# with each attention and of Mamba-130m, and the PyTorch steps (HF SDPA, the official
# selective-scan kernel); the attention cores (ours, Burn's, SDPA's back ends); bf16 then f32.
#   BIN=device-bin bash scripts/device/flash_bench.sh
# Peak device memory of each Rust run: the largest `memory.used` nvidia-smi saw during it.
set -u
OUT=${OUT:-/tmp/flash-out}
mkdir -p "$OUT"
work=$(mktemp -d)
xz -dc "$BIN/rankmamba.xz" > "$work/rankmamba" && chmod +x "$work/rankmamba"
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0
SECONDS=0
log() { echo "[$SECONDS s] $*" | tee -a "$OUT/summary.md"; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 | tee -a "$OUT/summary.md"

# peak FILE TIMEOUT CMD...: runs CMD (stdout to $OUT/FILE, stderr to $OUT/stderr.log) while
# sampling the device memory; logs the peak in MiB.
peak() {
  local file=$1 t=$2; shift 2
  log "start: $*"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$work/mem.txt" &
  local smi=$!
  timeout "$t" "$@" >>"$OUT/$file" 2>>"$OUT/stderr.log"
  local rc=$?
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  log "end rc=$rc peak $(sort -n "$work/mem.txt" | tail -1) MiB: $*"
}

BUDGET=${BUDGET:-560}
# step TIMEOUT CMD...: skipped once the budget is spent
step() {
  local t=$1; shift
  if [ "$SECONDS" -ge "$BUDGET" ]; then log "SKIPPED (budget): $*"; return; fi
  "$@"
}
tr() { peak train.json 90 "$work/rankmamba" bench train --backend cuda --json --warmup 1 --steps 3 "$@"; }
scan() { peak scan.json 90 "$work/rankmamba" bench scan --backend cuda --json --parts attention --warmup 1 --reps 3 "$@"; }
sdpa() { timeout 120 python3 scripts/device/flash_sdpa_anchor.py --warmup 1 --reps 3 "$@" | tee -a "$OUT/sdpa.md"; }
mamba() { (cd "$BIN/mamba-official" && timeout 100 python3 mamba_train_anchor.py "$@") 2>&1 | grep -v "^\[build\]" | tee -a "$OUT/torch.md"; }
check() {
  xz -dc "$BIN/flash_torch_check.xz" > "$work/flash_torch_check" && chmod +x "$work/flash_torch_check"
  timeout 120 "$work/flash_torch_check" cuda "$work/check" 2>>"$OUT/stderr.log"
  timeout 120 python3 scripts/device/flash_torch_check.py "$work/check" | tee "$OUT/check.md"
}
# most important first: the correctness check, the bf16 training steps and their anchors, the
# bf16 attention cores and SDPA, then the f32 rows
step 0 check
step 0 tr --precision bf16 --models bert-base,pythia-160m --attention flash
step 0 tr --precision bf16 --models bert-base,pythia-160m --attention burn
step 0 tr --precision bf16 --models mamba-130m
step 0 eval 'timeout 100 python3 scripts/device/bench_anchor_torch.py train | grep -v 410m | tee -a "$OUT/torch.md"'
step 0 mamba --mode bf16
step 0 scan --precision bf16 --attention flash
step 0 scan --precision bf16 --attention flash --padding 0.3
step 0 scan --precision bf16 --attention burn --lens 128,512,2048
step 0 sdpa --dtypes bf16
step 0 tr --precision f32 --models bert-base,pythia-160m --attention flash
step 0 tr --precision f32 --models bert-base,pythia-160m --attention burn
step 0 tr --precision f32 --models mamba-130m
step 0 scan --precision f32 --attention flash
step 0 scan --precision f32 --attention burn --lens 128,512,2048
step 0 sdpa --dtypes fp32 --pads 0
grep -iE "panick|error" "$OUT/stderr.log" 2>/dev/null | sort | uniq -c | head -20
log "done"
