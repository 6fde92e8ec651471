#!/usr/bin/env bash
# Builds the CUDA `rankmamba` binary for the H200 benches and stages it in device-bin/ (git-ignored),
# with the PyTorch anchor scripts; then the device call runs scripts/device/bench_h200.sh.
#
#   scripts/bench_gpu.sh            # build from this checkout
#   SRC=/tmp/snapshot scripts/bench_gpu.sh   # build from a clean copy (e.g. `git archive HEAD`)
#
# Features: cuda + autotune (Burn's matmul / flash-attention autotuning) + fusion (Burn's operation
# fusion; what `burn::backend::Cuda` is with Burn's default features). The commit is baked in
# through RANKMAMBA_COMMIT and printed in every JSON result.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${SRC:-$ROOT}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rankmamba-target}"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)"
if [ "$SRC" = "$ROOT" ] && ! git -C "$ROOT" diff --quiet HEAD -- src crates Cargo.toml; then
  COMMIT="$COMMIT+dirty"
fi
export RANKMAMBA_COMMIT="${RANKMAMBA_COMMIT:-$COMMIT}"
echo "building rankmamba (${FEATURES:-cuda,autotune}) from $SRC at $RANKMAMBA_COMMIT"
(cd "$SRC" && cargo build --release --features "${FEATURES:-cuda,autotune}" --bin rankmamba)
mkdir -p "$ROOT/device-bin/bench"
cp "$CARGO_TARGET_DIR/release/rankmamba" "$ROOT/device-bin/bench/rankmamba"
strip "$ROOT/device-bin/bench/rankmamba"
true
ls -la "$ROOT/device-bin/bench/rankmamba"
du -sh "$ROOT/device-bin/bench"
