#!/bin/bash
# The zero-shot reference rows of the quality tables: all-MiniLM-L6-v2 as a bi-encoder (cosine
# of mean-pooled embeddings, as it was trained), reranking BM25's candidates of every judged
# test query: SciFact top 20 and top 100, DL19 and DL20 top 20. One call, a few minutes.
# Carry device-bin4/ holding rankmamba.xz (a --features cuda build), minilm/ (config.json,
# model.safetensors.xz, tokenizer.json.xz), scifact/ (corpus.jsonl.xz, queries.jsonl, qrels/),
# dl19/ and dl20/ (collection.tsv.xz, queries.tsv, qrels.txt, runs/bm25.trec).
BIN=$PWD/device-bin4
W=$PWD/target/device-bi && mkdir -p $W && cd $W
T0=$(date +%s); S=$OUT/summary-bi.txt
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
source $(dirname $BIN)/scripts/device/unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
el setup
mkdir -p runs
bi() {  # dataset depth
  ./rankmamba rerank --bi-encoder --model ./minilm --dataset $1 --depth $2 --batch-size 128 --eval --backend cuda -o runs/minilm-bi-$1-top$2.trec > runs/minilm-bi-$1-top$2.txt 2> runs/minilm-bi-$1-top$2.log
  el "$1 top $2 rc=$?"; cat runs/minilm-bi-$1-top$2.txt >> $S
}
bi scifact 20 & bi scifact 100 & bi dl19 20 & bi dl20 20 & wait
tar czf $OUT/bi-runs.tgz runs
el end
