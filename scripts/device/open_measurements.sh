#!/usr/bin/env bash
# The H200 measurements still open after 2026-11-29 (issues 8 and 9), in one call, most
# important first, inside BUDGET seconds (default 540): an item that would start after the
# budget is skipped and listed. One process per model (an out-of-memory loses only its row).
#
#   BIN=...            `cargo build --release --features cuda` binary (required)
#   BIN_FUSION=...     optional `--features cuda,fusion` binary (fusion without autotune)
#   BIN_AT=...         optional `--features cuda,autotune` binary, run with
#                      CUBECL_AUTOTUNE_LEVEL=minimal and a long warm-up; its tuning cache
#                      (cubecl writes it under target/ of the nearest Cargo.toml above the
#                      working directory) is tarred into $OUT for the next call to carry
#   REPO=...           repository root (for the PyTorch anchor script; default: this checkout)
#   OUT=...            where logs go (default /tmp/open-out; at most 8 files come back)
#
# Items: train-ckpt train-mask train-bf16-large rerank-rest torch-mamba370 fusion autotune
set -u
BIN=${BIN:?set BIN to a --features cuda build of rankmamba}
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
OUT=${OUT:-/tmp/open-out}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT/logs"
export RUST_BACKTRACE=0
SECONDS=0
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | tee "$OUT/logs/gpu.txt"
run() { # run NAME LIMIT CMD...
  local name=$1 limit=$2; shift 2
  if [ $((SECONDS + limit)) -gt "$BUDGET" ]; then echo "SKIPPED (budget): $name"; return 0; fi
  echo "== [$SECONDS s] $name: $*"
  # peak device memory of the run (GPU 0, sampled every 200 ms; cubecl's pools keep what they
  # reserved, so this is the high-water mark of the process)
  nvidia-smi -i 0 --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT/logs/$name.mem" 2>/dev/null &
  local sampler=$!
  timeout "$limit" "$@" >"$OUT/logs/$name.out" 2>"$OUT/logs/$name.log"
  local rc=$?
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  echo "rc=$rc at $SECONDS s, peak GPU 0 memory $(sort -n "$OUT/logs/$name.mem" | tail -1) MiB"
  grep -E "ms/step|failed|panicked at" "$OUT/logs/$name.log" | cut -c1-200 | sort | uniq -c | tail -3
  grep -E "^\|" "$OUT/logs/$name.out" | tail -8
}
train() { # train BIN PRECISION MODEL QUERIES LIMIT [extra...]
  local bin=$1 p=$2 m=$3 q=$4 l=$5; shift 5
  run "tr-$(basename "$bin")-$p-$m-q$q$(echo "$*" | tr -d ' -')" "$l" "$bin" bench train --backend cuda \
    --precision "$p" --models "$m" --queries "$q" --warmup 1 --steps 3 "$@"
}
items="${ITEMS:-train-ckpt train-mask train-bf16-large rerank-rest torch-mamba370 fusion autotune}"
for it in $items; do
  case $it in
    train-ckpt) # does Mamba-130m f32 fit 65,536 tokens with balanced checkpointing, and at what cost
      train "$BIN" f32 mamba-130m 16 70 --checkpointing balanced
      train "$BIN" f32 bert-base 16 50 --checkpointing balanced
      train "$BIN" f32 bert-base 16 50 ;;
    train-mask) # the 32,768-token ratio again (all-ones masks are skipped since 2026-11-29)
      train "$BIN" f32 mamba-130m 8 50
      train "$BIN" f32 bert-base 8 40 ;;
    train-bf16-large)
      train "$BIN" bf16 mamba-370m 8 60
      train "$BIN" bf16 pythia-410m 8 50 ;;
    rerank-rest)
      run rr-f32-rest 90 "$BIN" bench rerank --backend cuda --precision f32 \
        --models pythia-160m,mamba-370m --batches 1,8,128 --queries 1 --warmup 1
      run rr-bf16-rest 90 "$BIN" bench rerank --backend cuda --precision bf16 \
        --models pythia-160m,mamba-370m --batches 1,8,128 --queries 1 --warmup 1 ;;
    torch-mamba370)
      run torch-rr-370 90 python3 "$REPO/scripts/device/anchor_rerank_torch.py" --models mamba-370m \
        --batches 8,128 --queries 1 --budget-s 8 ;;
    fusion)
      if [ -n "${BIN_FUSION:-}" ]; then
        train "$BIN_FUSION" f32 bert-base 8 60
        train "$BIN_FUSION" f32 mamba-130m 8 70
      fi ;;
    autotune)
      if [ -n "${BIN_AT:-}" ]; then
        (cd "$REPO" && export CUBECL_AUTOTUNE_LEVEL=minimal && run at-bert 150 "$BIN_AT" bench train --backend cuda \
          --models bert-base --queries 8 --warmup 4 --steps 3)
        (cd "$REPO" && export CUBECL_AUTOTUNE_LEVEL=minimal && run at-mamba 150 "$BIN_AT" bench train --backend cuda \
          --models mamba-130m --queries 8 --warmup 4 --steps 3)
        [ -d "$REPO/target" ] && tar -C "$REPO" -czf "$OUT/cubecl-tune-cache.tar.gz" target
      fi ;;
    *) echo "unknown item $it" ;;
  esac
done
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs
