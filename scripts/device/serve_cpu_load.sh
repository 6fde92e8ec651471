#!/bin/bash
# `rankmamba bench serve` on the device machine's CPU cores (the GPU figures come from
# serve_and_bi_encoder.sh): the reranking server under load on loopback at 1 / 8 / 64
# concurrent clients, for a MiniLM cross-encoder and a Mamba-130m cross-encoder (both trained
# two steps on the GPU: the load test needs the shapes, not the quality). Each load test is
# bounded by --duration and by `timeout`, so that the call ends within its limit.
# Carry device-bin6/: rankmamba.xz (a --features cuda release build), minilm/ (config.json,
# model.safetensors.xz, tokenizer.json.xz), dl19/ and tokenizers/gpt-neox-20b/tokenizer.json.xz.
BIN=$PWD/device-bin6
W=$PWD/target/device-serve && mkdir -p $W && cd $W
T0=$(date +%s); S=$OUT/summary.txt
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
source $(dirname $BIN)/scripts/device/unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
nproc | sed 's/^/cpu cores: /' | tee -a $S
el setup

mkdir -p models load
./rankmamba train --model ./minilm --dataset dl19 --steps 2 --max-length 256 --backend cuda --out models/minilm-ce > load/train-minilm.log 2>&1
el "train minilm rc=$?"
./rankmamba train --model mamba-130m --dataset dl19 --steps 2 --max-length 256 --backend cuda --out models/mamba-130m-ce > load/train-mamba.log 2>&1
el "train mamba-130m rc=$?"
load() {  # model clients requests seconds timeout: one level per process, each bounded
  timeout $5 ./rankmamba bench serve --model models/$1 --backend cpu --dataset dl19 --texts 20 --clients $2 --requests $3 --duration $4 > load/$1-cpu-$2.md 2> load/$1-cpu-$2.log
  el "load $1 cpu $2 clients rc=$?"; cat load/$1-cpu-$2.md load/$1-cpu-$2.log >> $S
}
load minilm-ce 1 32 20 60
load minilm-ce 8 64 20 90
load minilm-ce 64 64 20 150
load mamba-130m-ce 1 8 20 60
load mamba-130m-ce 8 16 20 90
tar czf $OUT/load-cpu.tgz load
el end
