#!/usr/bin/env bash
# The libraries' default builds stay light: no networking, no CLI, no C build, no GPU runtime.
# Checks `cargo tree` (normal and build dependencies) of what a user gets from `cargo add` of
# each library crate, and of `rank-heads` with only the Mamba backbone.
set -euo pipefail
cd "$(dirname "$0")/.."
# networking / server / CLI / C or C++ builds / heavy optional parts / GPU runtimes
FORBIDDEN='^(hf-hub|ureq|rustls|ring|reqwest|hyper|tokio|axum|tungstenite|clap|anyhow|plotters|indicatif|zip|tantivy|burn-collective|onig_sys|esaxx-rs-cpp|cc|cmake|liblzma-sys|wgpu|cudarc|cubecl-cuda|cubecl-wgpu) '
status=0
check() {
    local found
    found=$(cargo tree "$@" -e normal,build --prefix none 2>/dev/null | grep -E "$FORBIDDEN" | sort -u || true)
    if [ -n "$found" ]; then
        echo "cargo tree $*: pulls in $(echo "$found" | cut -d' ' -f1 | tr '\n' ' ')"
        status=1
    else
        echo "cargo tree $*: light ($(cargo tree "$@" -e normal --prefix none 2>/dev/null | sort -u | wc -l) crates)"
    fi
}
for c in safe-write ir-metrics linear-kernels fused-optim mamba-ssm model-io mamba-blocks transformer-baselines rank-data rank-heads; do
    check -p "$c"
done
check -p rank-heads --no-default-features --features mamba
exit $status
