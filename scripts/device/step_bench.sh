#!/usr/bin/env bash
# One device call for the training step's element-wise work: Burn's AdamW against
# fused_optim::FusedAdamW, and Burn's Fusion in training. Run from the repository root with BIN
# set to the carried folder: rankmamba.xz (`--features cuda`), rankmamba-fusion.xz
# (`--features cuda,fusion`), mamba-official/ (shared/anchors/mamba-official/). Results go to
# $OUT (at most 8 files). In order, within BUDGET seconds:
# - bf16 steps of BERT-base and Pythia-160m, then Mamba-130m (its own process: the memory
#   pools keep what the transformers left): the norm kernels against Burn's norms
#   (`--norm burn`), Burn's AdamW against the fused AdamW, then Fusion with the fused AdamW;
# - the PyTorch steps in the same call (HF SDPA; Mamba with the official selective scan);
# - the optimizer step timed alone (`--phases`) with either AdamW;
# - a step too large for the device (an error row, not a panic);
# - a per-kernel profile of one bf16 BERT-base step under Fusion;
# - Nsight Compute on the three flash-attention kernels (one bf16 forward + backward, L 512 x
#   128) for the attention's next steps (ncu.txt);
# - the f32 rows.
# With BEFORE set to a folder holding an earlier `--features cuda` build (rankmamba.xz), its bf16
# rows (fused AdamW) run right after ours, in before.json: a change's before and after in one
# call.
#   BIN=device-bin3 [BEFORE=device-bin2] bash scripts/device/step_bench.sh
set -u
OUT=${OUT:-/tmp/step-out}
mkdir -p "$OUT"
work=$(mktemp -d)
xz -dc "$BIN/rankmamba.xz" > "$work/rankmamba" && chmod +x "$work/rankmamba"
xz -dc "$BIN/rankmamba-fusion.xz" > "$work/rankmamba-fusion" && chmod +x "$work/rankmamba-fusion"
if [ -n "${BEFORE:-}" ]; then
  xz -dc "$BEFORE/rankmamba.xz" > "$work/rankmamba-before" && chmod +x "$work/rankmamba-before"
fi
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0 ANCHOR_MODELS=bert-base,pythia-160m
source "$(dirname "$0")/common.sh"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 | tee -a "$OUT/summary.md"

tr() { peak train.json 90 "$work/rankmamba" bench train --backend cuda --json --warmup 1 --steps 3 "$@"; }
# Fusion compiles its fused kernels during the first steps: a longer limit, two warm-up steps
fu() { peak fusion.json 150 "$work/rankmamba-fusion" bench train --backend cuda --json --warmup 2 --steps 3 "$@"; }
mamba() { (cd "$BIN/mamba-official" && timeout 100 python3 mamba_train_anchor.py "$@") 2>&1 | grep -v "^\[build\]" | tee -a "$OUT/torch.md"; }
bf() { if [ -x "$work/rankmamba-before" ]; then peak before.json 90 "$work/rankmamba-before" bench train --backend cuda --json --warmup 1 --steps 3 "$@"; fi; }
prof() { BIN="$work/rankmamba-fusion" OUT="$work/prof" timeout 150 bash scripts/device/profile_train.sh "$@" 2>&1 | tee -a "$OUT/summary.md"; }
# the forward alone, then forward + backward: four launches hold the three kernels
ncu_flash() {
  log "start: ncu of the flash-attention kernels"
  timeout 200 ncu --clock-control none --kernel-name 'regex:[Ff]lash' --launch-count 4 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    "$work/rankmamba" bench scan --backend cuda --parts attention --lens 512 --precision bf16 \
    --attention flash --warmup 0 --reps 1 >"$OUT/ncu.txt" 2>>"$OUT/stderr.log"
  log "end rc=$?: ncu of the flash-attention kernels"
}
# 64 x 8 x 512 tokens of BERT-base in f32 cannot fit: the step must end in an "out of device
# memory" error row naming the request (exit status and stderr kept)
oom() {
  log "start: out-of-memory check"
  echo "== out-of-memory check" >>"$OUT/stderr.log"
  timeout 120 "$work/rankmamba" bench train --backend cuda --precision f32 --models bert-base --queries 64 --warmup 0 --steps 1 --json >>"$OUT/train.json" 2>>"$OUT/stderr.log"
  log "end rc=$?: out-of-memory check"
}
T="--models bert-base,pythia-160m"
M="--models mamba-130m"
# most important first
step tr --precision bf16 $T --optimizer fused-adamw
step tr --precision bf16 $T --optimizer fused-adamw --norm burn
step bf --precision bf16 $T --optimizer fused-adamw
step tr --precision bf16 $M --optimizer fused-adamw
step tr --precision bf16 $M --optimizer fused-adamw --norm burn
step bf --precision bf16 $M --optimizer fused-adamw
step tr --precision bf16 $T --optimizer adamw
step fu --precision bf16 $T --optimizer fused-adamw
step tr --precision bf16 $M --optimizer adamw
step fu --precision bf16 $M --optimizer fused-adamw
step eval 'ANCHOR_MODES=bf16,bf16-autocast timeout 100 python3 scripts/device/bench_anchor_torch.py train | tee -a "$OUT/torch.md"'
step mamba --mode bf16
step oom
step prof bert-bf16-fusion 120 --models bert-base --precision bf16 --warmup 2 --steps 1
step ncu_flash
step tr --precision bf16 --models bert-base --optimizer adamw --phases
step tr --precision bf16 --models bert-base --optimizer fused-adamw --phases
step fu --precision bf16 $T --optimizer adamw
step tr --precision f32 $T --optimizer fused-adamw
step fu --precision f32 $T --optimizer fused-adamw
step tr --precision f32 $M --optimizer fused-adamw
step fu --precision f32 $M --optimizer fused-adamw
step eval 'ANCHOR_MODES=fp32 timeout 60 python3 scripts/device/bench_anchor_torch.py train | tee -a "$OUT/torch.md"'
step mamba --mode bf16-autocast
python3 scripts/device/profile_categories.py "$work"/prof/prof-*.log 2>&1 | tee -a "$OUT/summary.md"
[ -d "$work/prof" ] && tar -C "$work/prof" -cJf "$OUT/prof-logs.tar.xz" .
grep -iE "panick|error" "$OUT/stderr.log" 2>/dev/null | sort | uniq -c | head -20
log "done"
