#!/usr/bin/env bash
# Run trec_eval 10.0's own regression tests (`make quicktest`) through ir-metrics:
# crates/ir-metrics/tests/trec_eval_suite.rs compares our output with trec_eval's expected
# outputs byte for byte.
#
# trec_eval's test/ folder is NIST data: it is copied to a temporary folder (removed on exit),
# never into this repository. Usage:
#
#   scripts/trec_eval_suite.sh [DIR]
#
# DIR: a trec_eval git checkout or mirror (bare or not), or a folder holding trec_eval's test/
# files. Default: /work/.mirror/usnistgov+trec_eval/repo if present, else a shallow clone of
# https://github.com/usnistgov/trec_eval. The files used are checked against trec_eval 10.0's
# git blob ids, so a different version fails loudly instead of comparing other expectations.
set -euo pipefail

PINNED_COMMIT=f4253652c8efd0d86ddffd0d163cc0a0f813111a # trec_eval 10.0 (2026-06-17)
# git blob ids of the files the test reads, at trec_eval 10.0
BLOBS="
out.comment.test 4f058bfbea28c7e9364d72541cf4b0d998e21610
out.test a379a7ffbf728191f2f4002c7fe859617adb705a
out.test.a a4bb0df21f75dbef3b88eb9fd120a01fddf6a1e8
out.test.aq 960c27913ede8b79e3f3b9cfd0363ed690c337d8
out.test.aqc 0dc2eb054755acf31d6923cb2ab5421205fc6088
out.test.aqcM ca5a802cdb775a886a382188648713cf8f8aec0a
out.test.aql 1a598db582ced253d47f6b0826e785aff28c629e
out.test.aqZ 7b1065ef68ee4b89b533814b0737caa7892ad8a3
out.test.meas_params 01f6bba03137951577a2ad6276087e6395d16135
out.test.prefs 13d709332f02a78a3056131143ebe687cc290f8d
out.test.qrels_jg 4dc4e4be8475444c8329d7d074ff04b052649347
out.test.qrels_prefs efa7392b56ec23554b665b1aacf5fe1158aa4220
prefs.comment.test 89d731d9859a0b152d7e7b0d3c2fb6104f1acb7a
prefs.results.test f081f47c20eed555db41892aec083366cbeba281
prefs.test 9a0d001dc9be3e028b40afce0b2a838fd6a97f4c
qrels.123 93b0099e1c39d321889682acc0405513295e2705
qrels.comment.test 01091ba729c43fd8f5efaae8dbd038959c95055a
qrels.comments.123 56e6c0168b03ffb859a6beb35939e41a241f4ac4
qrels.rel_level 3fa0bb76c7ea3bf6d4c0d8b887f0ff845f82bb1c
qrels.test 1a699684c260511328d67f5e0f8302089621a9ad
qrels.test.with-comments 1a001ef807ec434a8f3a51f98f48c22a657c86b4
results.comment.test 560dff1243eeffbc14d154c9dfa7c4fc122dff2e
results.test 29cb76d531eb6bef8993b94d4ba88d6bb94566e4
results.trunc be856d4e592040f9ff2eea9eb3fa95e7748c5cfa
zscores_file a287aaf70220aaea197b662e8b5cf83467bdd99c
"

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/trec_eval_suite.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/test"

src=${1:-}
if [[ -z $src ]]; then
    if [[ -d /work/.mirror/usnistgov+trec_eval/repo ]]; then
        src=/work/.mirror/usnistgov+trec_eval/repo
    else
        echo "trec_eval_suite: cloning https://github.com/usnistgov/trec_eval" >&2
        git clone --quiet --depth 1 https://github.com/usnistgov/trec_eval "$work/clone"
        src=$work/clone
    fi
fi

if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    if git -C "$src" cat-file -e "$PINNED_COMMIT^{commit}" 2>/dev/null; then
        commit=$PINNED_COMMIT
    else
        commit=$(git -C "$src" rev-parse HEAD)
        echo "trec_eval_suite: $src lacks trec_eval 10.0's commit $PINNED_COMMIT; trying HEAD $commit" >&2
    fi
    git -C "$src" archive "$commit" test | tar -x -C "$work"
    echo "trec_eval_suite: trec_eval test/ from $src at $commit" >&2
elif [[ -f $src/test/out.test ]]; then
    cp -R "$src/test/." "$work/test/"
    echo "trec_eval_suite: trec_eval test/ copied from $src/test" >&2
elif [[ -f $src/out.test ]]; then
    cp -R "$src/." "$work/test/"
    echo "trec_eval_suite: trec_eval test/ copied from $src" >&2
else
    echo "trec_eval_suite: $src is neither a trec_eval checkout nor its test/ folder" >&2
    exit 2
fi

bad=0
while read -r file blob; do
    [[ -z $file ]] && continue
    if [[ ! -f $work/test/$file ]]; then
        echo "trec_eval_suite: test/$file is missing" >&2
        bad=1
    elif [[ $(git hash-object "$work/test/$file") != "$blob" ]]; then
        echo "trec_eval_suite: test/$file differs from trec_eval 10.0's (blob $blob)" >&2
        bad=1
    fi
done <<<"$BLOBS"
if [[ $bad != 0 ]]; then
    echo "trec_eval_suite: not trec_eval 10.0's test files; refusing to compare" >&2
    exit 3
fi

export TREC_EVAL_TEST_DIR=$work/test
cd "$root"
cargo test -p ir-metrics --test trec_eval_suite -- --ignored --nocapture
