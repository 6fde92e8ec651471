#!/usr/bin/env bash
# One device call: the Rust throughput benches (device-bin/bench/rankmamba, built by
# scripts/bench_gpu.sh) and the PyTorch anchors on the same GPU, most important first, inside a
# time budget (BUDGET seconds, default 500): items that would start after it are skipped and
# listed. Logs and JSON go to $OUT (one file per group; at most 8 files come back).
#   bash scripts/device/bench_h200.sh [items...]   (default: all, in the order below)
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/bench-out}"
mkdir -p "$OUT"
BUDGET="${BUDGET:-500}"
BIN=./device-bin/bench/rankmamba
export PYTHONUNBUFFERED=1
SECONDS=0
log() { echo "[$SECONDS s] $*" | tee -a "$OUT/summary.md"; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.total --format=csv; } 2>&1 | tee "$OUT/summary.md"

# run FILE TIMEOUT CMD...: appends CMD's stdout to $OUT/FILE, stderr to $OUT/stderr.log
run() {
  local file=$1 t=$2; shift 2
  if [ "$SECONDS" -ge "$BUDGET" ]; then log "SKIPPED (budget): $*"; return; fi
  log "start: $*"
  timeout "$t" "$@" >>"$OUT/$file" 2>>"$OUT/stderr.log"
  log "end rc=$?: $*"
}
tr() { run train.json 200 $BIN bench train --backend cuda --json --warmup 2 --steps 4 "$@"; }
rr() { run rerank.json 150 $BIN bench rerank --backend cuda --json --queries 2 --warmup 2 "$@"; }

items="${*:-train-core torch-train rerank torch-rerank scan torch-attention train-rest scan-bf16}"
for it in $items; do
  case $it in
    train-core)
      tr --precision f32 --models mamba-130m,bert-base
      tr --precision bf16 --models mamba-130m,bert-base ;;
    torch-train) run torch.log 150 python3 scripts/device/bench_anchor_torch.py train ;;
    rerank)
      rr --precision f32
      rr --precision bf16 ;;
    torch-rerank) run torch.log 150 python3 scripts/device/bench_anchor_torch.py rerank ;;
    scan) run scan.json 150 $BIN bench scan --backend cuda --json --warmup 2 --reps 5 --plot "$OUT/scan_f32.svg" ;;
    torch-attention) run torch.log 60 python3 scripts/device/bench_anchor_torch.py attention ;;
    train-rest)
      tr --precision f32 --models pythia-160m,pythia-410m,mamba-370m
      tr --precision bf16 --models pythia-160m,pythia-410m,mamba-370m ;;
    scan-bf16) run scan.json 120 $BIN bench scan --backend cuda --precision bf16 --json --warmup 2 --reps 5 --plot "$OUT/scan_bf16.svg" ;;
    *) log "unknown item $it" ;;
  esac
done
grep -E "^\|" "$OUT/torch.log" 2>/dev/null | tail -60
grep -iE "panick|error" "$OUT/stderr.log" 2>/dev/null | sort | uniq -c | head -20
log "done"
