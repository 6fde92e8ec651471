# Helpers shared by the budgeted device scripts (sourced; OUT and work set by the caller):
# - log MSG: a timestamped line in $OUT/summary.md and on stdout;
# - peak FILE TIMEOUT CMD...: runs CMD (stdout to $OUT/FILE, stderr to $OUT/stderr.log) while
#   sampling the device memory every 100 ms, and logs the peak in MiB;
# - step CMD...: runs CMD unless BUDGET seconds have passed (most important steps first).
SECONDS=0
BUDGET=${BUDGET:-540}
log() { echo "[$SECONDS s] $*" | tee -a "$OUT/summary.md"; }
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
step() {
  if [ "$SECONDS" -ge "$BUDGET" ]; then log "SKIPPED (budget): $*"; return; fi
  "$@"
}
