#!/usr/bin/env bash
# Device calls for the flash-attention kernels, run from the repository root with BIN set to the
# carried folder (rankmamba.xz, flash_torch_check.xz, mamba-official/). Results go to $OUT.
#   BIN=device-bin bash scripts/device/flash_bench.sh kernels   # check vs PyTorch f64, our
#       attention core (flash and Burn's) and PyTorch SDPA's back ends, same call
#   BIN=device-bin bash scripts/device/flash_bench.sh train     # training steps: BERT-base and
#       Pythia-160m with each attention, Mamba-130m, and the PyTorch steps (HF SDPA, official
#       selective-scan kernel), same call
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

case "${1:-kernels}" in
  kernels)
    xz -dc "$BIN/flash_torch_check.xz" > "$work/flash_torch_check" && chmod +x "$work/flash_torch_check"
    log "check"
    timeout 120 "$work/flash_torch_check" cuda "$work/check" 2>>"$OUT/stderr.log"
    timeout 120 python3 scripts/device/flash_torch_check.py "$work/check" | tee "$OUT/check.md"
    scan() { peak scan.json 150 "$work/rankmamba" bench scan --backend cuda --json --parts attention --warmup 2 --reps 5 "$@"; }
    for p in bf16 f32; do
      scan --precision $p --attention flash
      scan --precision $p --attention flash --padding 0.3
      scan --precision $p --attention burn
    done
    log "sdpa"
    timeout 200 python3 scripts/device/flash_sdpa_anchor.py | tee "$OUT/sdpa.md"
    ;;
  train)
    tr() { peak train.json 120 "$work/rankmamba" bench train --backend cuda --json --warmup 2 --steps 4 "$@"; }
    tr --precision bf16 --models bert-base,pythia-160m --attention flash
    tr --precision bf16 --models bert-base,pythia-160m --attention burn
    tr --precision bf16 --models mamba-130m
    log "torch train"
    timeout 150 python3 scripts/device/bench_anchor_torch.py train | tee "$OUT/torch.md"
    log "official mamba"
    (cd "$BIN/mamba-official" && for m in bf16-autocast bf16; do timeout 120 python3 mamba_train_anchor.py --mode $m; done) 2>&1 | tee -a "$OUT/torch.md"
    tr --precision f32 --models bert-base,pythia-160m --attention flash
    tr --precision f32 --models bert-base,pythia-160m --attention burn
    tr --precision f32 --models mamba-130m --queries 8
    ;;
esac
grep -iE "panick|error" "$OUT/stderr.log" 2>/dev/null | sort | uniq -c | head -20
log "done"
