#!/usr/bin/env bash
# The two-GPU data-parallel check, for one call on `nvidia-h200-x2` (ask `status`
# first). Needs a CUDA binary and the data:
#   BIN=path/to/rankmamba (cargo build --release --features cuda), RANKMAMBA_DATA=dir holding
#   scifact/ and tokenizers/gpt-neox-20b/ (device-bin/study/data.tar.xz unpacked).
# Runs, Mamba-130m config from random init, SciFact, seed 7, dropout 0 (masks are drawn per
# replica, so any dropout makes 1 and 2 GPUs differ), one train.jsonl line per step:
#   ddp1 / ddp2:     the same global batch (8 groups x 8 x <= 256 tokens) on 1 and 2 GPUs;
#   scale1 / scale2: 16 groups x 8 x <= 512 tokens per GPU (weak scaling).
# Prints the per-step loss of both curves with their relative difference and the steady-state
# tokens/s (from the 4th logged step on). Logs under $OUT (default /tmp/ddp-out).
set -u
BIN=${BIN:?set BIN to a CUDA build of rankmamba}
OUT=${OUT:-/tmp/ddp-out}
STEPS=${STEPS:-50}
mkdir -p "$OUT"
W=$(mktemp -d)
T="train --backend cuda --model mamba-130m --dataset scifact --group-size 8 --seed 7 --dropout 0 --log-every 1"
run() {
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$BIN" "$@" -o "$W/$name" >"$OUT/$name.log" 2>&1
  echo "rc=$?"; tail -1 "$OUT/$name.log"
  cp "$W/$name/train.jsonl" "$OUT/$name.train.jsonl" 2>/dev/null
}
run ddp1 120 $T --devices cuda:0 --groups-per-step 8 --max-length 256 --steps "$STEPS"
run ddp2 120 $T --devices cuda:0,cuda:1 --groups-per-step 8 --max-length 256 --steps "$STEPS"
run scale1 90 $T --devices cuda:0 --groups-per-step 16 --max-length 512 --steps 12
run scale2 90 $T --devices cuda:0,cuda:1 --groups-per-step 32 --max-length 512 --steps 12
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def load(name):
    try:
        return [json.loads(l) for l in open(f"{out}/{name}.train.jsonl")]
    except OSError:
        return []
a, b = load("ddp1"), load("ddp2")
worst = 0.0
for x, y in zip(a, b):
    rel = abs(x["loss"] - y["loss"]) / abs(x["loss"])
    worst = max(worst, rel)
    print(f"step {x['step']:3d}  1 GPU {x['loss']:.7f}  2 GPUs {y['loss']:.7f}  rel {rel:.2e}")
print(f"max relative loss difference over {min(len(a), len(b))} steps: {worst:.2e}")
rates = {}
for name in ("ddp1", "ddp2", "scale1", "scale2"):
    r = load(name)
    if len(r) > 4:
        rates[name] = (r[-1]["tokens"] - r[3]["tokens"]) / (r[-1]["elapsed_s"] - r[3]["elapsed_s"])
        print(f"{name}: {rates[name]:.0f} tokens/s over steps {r[4]['step']}-{r[-1]['step']} "
              f"({r[-1]['tokens'] / r[-1]['step']:.0f} tokens per step)")
if "ddp1" in rates and "ddp2" in rates:
    print(f"strong scaling 1 -> 2 GPUs: {rates['ddp2'] / rates['ddp1']:.2f}x")
if "scale1" in rates and "scale2" in rates:
    print(f"weak scaling 1 -> 2 GPUs: {rates['scale2'] / rates['scale1']:.2f}x")
PY
