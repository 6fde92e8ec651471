#!/usr/bin/env bash
# Per-kernel profile of `rankmamba bench train` on a GPU through cubecl's profiling logger
# (docs/lab/burn-gpu-notes.md, "Where a training step's time goes"). One run per NAME; the log of
# every kernel goes to $OUT/prof-NAME.log and the last summary (the last timed step) is printed.
#
#   BIN=... (a `--features cuda` build) OUT=... scripts/device/profile_train.sh NAME LIMIT_S ARGS...
#   e.g.  profile_train.sh mamba-f32 120 --models mamba-130m --precision f32 --queries 8 --warmup 1 --steps 1
set -u
BIN=${BIN:?set BIN to a --features cuda build of rankmamba}
OUT=${OUT:-/tmp/prof-out}
name=$1 limit=$2; shift 2
dir=$(mktemp -d)
mkdir -p "$OUT"
# cubecl reads cubecl.toml from the working directory or a parent
printf '[profiling.logger]\nlevel = "basic"\nfile = "%s/prof.log"\nappend = false\n' "$dir" >"$dir/cubecl.toml"
# MEMLOG=basic|full also logs the memory pools' events (new pages, cleanups) into the same file
if [ -n "${MEMLOG:-}" ]; then
  printf '[memory.logger]\nlevel = "%s"\nfile = "%s/prof.log"\nappend = false\n' "$MEMLOG" "$dir" >>"$dir/cubecl.toml"
fi
(cd "$dir" && timeout "$limit" "$BIN" bench train --backend cuda "$@" >out.txt 2>err.txt)
echo "rc=$? ($name: $*)"
grep -E "ms/step|failed|panicked" "$dir/err.txt" | cut -c1-200 | head -3
cp "$dir/prof.log" "$OUT/prof-$name.log" 2>/dev/null
# the last summary table, kernel names shortened
awk '/\| Name .*Duration/{buf=""} {buf=buf"\n"$0} END{print buf}' "$dir/prof.log" \
  | sed -E 's/ {2,}/ /g; s/\| TensorArgs \|.*\| (StridedSt[^|]*)?[^|]*\|/| /' | cut -c1-160 | head -40
