#!/bin/bash
# One device call, two jobs, one after the other so that neither disturbs the other's timing:
# 1. the zero-shot reference rows of the quality tables: all-MiniLM-L6-v2 as a bi-encoder over
#    BM25's candidates of every judged test query (SciFact top 20 and 100, DL19 and DL20 top 20);
# 2. `rankmamba bench serve`: the reranking server under load on loopback, at 1 / 8 / 64
#    concurrent clients, on the GPU and on the machine's CPU cores, for a MiniLM cross-encoder
#    and a Mamba-130m cross-encoder (both trained two steps: the load test needs the shapes,
#    not the quality).
# Carry device-bin5/: rankmamba.xz (a --features cuda release build), minilm/ (config.json,
# model.safetensors.xz, tokenizer.json.xz), scifact/, dl19/, dl20/ and
# tokenizers/gpt-neox-20b/tokenizer.json.xz.
BIN=$PWD/device-bin5
W=$PWD/target/device-serve && mkdir -p $W && cd $W
T0=$(date +%s); S=$OUT/summary.txt
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
source $(dirname $BIN)/scripts/device/unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
nproc | sed 's/^/cpu cores: /' | tee -a $S
el setup

# 1. bi-encoder rows
mkdir -p runs
bi() {  # dataset depth
  ./rankmamba rerank --bi-encoder --model ./minilm --dataset $1 --depth $2 --batch-size 128 --eval --backend cuda -o runs/minilm-bi-$1-top$2.trec > runs/minilm-bi-$1-top$2.txt 2> runs/minilm-bi-$1-top$2.log
  el "bi-encoder $1 top $2 rc=$?"; cat runs/minilm-bi-$1-top$2.txt >> $S
}
bi scifact 20 & bi scifact 100 & bi dl19 20 & bi dl20 20 & wait
tar czf $OUT/bi-runs.tgz runs

# 2. the server under load
mkdir -p models load
./rankmamba train --model ./minilm --dataset dl19 --steps 2 --max-length 256 --backend cuda --out models/minilm-ce > load/train-minilm.log 2>&1
el "train minilm rc=$?"
./rankmamba train --model mamba-130m --dataset dl19 --steps 2 --max-length 256 --backend cuda --out models/mamba-130m-ce > load/train-mamba.log 2>&1
el "train mamba-130m rc=$?"
load() {  # model backend requests
  ./rankmamba bench serve --model models/$1 --backend $2 --dataset dl19 --texts 20 --clients 1,8,64 --requests $3 --duration 45 > load/$1-$2.md 2> load/$1-$2.log
  el "load $1 $2 rc=$?"; cat load/$1-$2.md >> $S
}
load minilm-ce cuda 512
load mamba-130m-ce cuda 512
load minilm-ce cpu 128
load mamba-130m-ce cpu 64
tar czf $OUT/load.tgz load
el end
