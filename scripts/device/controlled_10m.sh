#!/bin/bash
# The controlled study at 10M parameters, SciFact, one call: tokenizer on the pretraining text,
# each architecture pretrained alone on the GPU (same tokens, same schedule), then LCE
# fine-tuning (last-token pooling, one recipe) of the pretrained backbones and their
# random-init twins and the query-first template, 3 seeds each, and reranking of BM25's top 20 for all 300 test queries.
# Runs and logs come back; the tables are computed on the workstation from the runs with
# `rankmamba controlled --analyse runs`. Carry a folder device-bin3/ holding rankmamba.xz (a
# --features cuda build), scifact/ (corpus.jsonl.xz, queries.jsonl, qrels/) and pretrain/
# (../shared/data/pretrain/*.txt.xz), and this script.
cd device-bin3
T0=$(date +%s); S=$OUT/summary.txt
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
left() { echo $(( ${T_END:-470} - ($(date +%s) - T0) )); }
xz -dc rankmamba.xz > rankmamba && chmod +x rankmamba
mkdir -p data/scifact/qrels data/pretrain && xz -dc scifact/corpus.jsonl.xz > data/scifact/corpus.jsonl
cp scifact/queries.jsonl data/scifact/ && cp scifact/qrels/*.tsv data/scifact/qrels/ && cp pretrain/*.txt.xz data/pretrain/
export RANKMAMBA_DATA=$PWD/data RUST_BACKTRACE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
nvidia-smi dmon -s um -d 2 > $OUT/dmon.txt 2>&1 & DMON=$!
el setup
./rankmamba tokenizer --corpus pretrain --vocab-size 8192 -o tok.json > tok.log 2>&1
el "tokenizer rc=$?"
PT_STEPS=${PT_STEPS:-600}
for arch in mamba gpt-neox; do
  timeout 110 ./rankmamba pretrain --arch $arch --size 10m --corpus pretrain --tokenizer tok.json --seq-len 256 --batch-size 64 --steps $PT_STEPS --lr 1e-3 --eval-every 100 --eval-sequences 256 --log-every 50 --backend cuda --quiet -o pt-$arch > pt-$arch.log 2>&1
  el "pretrain $arch rc=$?"; tail -2 pt-$arch.log >> $S
done
mkdir -p runs && for arch in mamba gpt-neox; do mkdir -p runs/pretrain-$arch && cp pt-$arch/pretrain_report.json runs/pretrain-$arch/; done
tar czf $OUT/pretrain.tgz pt-*.log pt-*/pretrain.jsonl pt-*/pretrain_report.json pt-*/config.json tok.log 2>/dev/null
# Fine-tuning: runs/SYSTEM-sSEED.trec and runs/SYSTEM-sSEED/ (the model folder with its
# train_report.json), the layout `rankmamba controlled --analyse runs` reads.
ft() {  # system backbone seed template lr [--random-init]
  timeout $(( $(left) - 3 )) ./rankmamba train --model $2 --dataset scifact --out runs/$1-s$3 --steps 100 --group-size 8 --groups-per-step 8 --negatives-top-k 30 --lr $5 --max-length 256 --pooling last-token --template $4 --seed $3 $6 --backend cuda --log-every 25 > runs/$1-s$3.log 2>&1 \
  && timeout $(( $(left) - 3 )) ./rankmamba rerank --model runs/$1-s$3 --dataset scifact -o runs/$1-s$3.trec --depth 20 --batch-size 128 --backend cuda >> runs/$1-s$3.log 2>&1
  echo "$1 s$3 rc=$?" >> $S
}
pack() { tar czf $OUT/runs.tgz runs/*.trec runs/*.log runs/*/train.jsonl runs/*/train_report.json runs/*/rankmamba.json runs/pretrain-* 2>/dev/null; }
# one seed per wave: six processes at a time (twelve exhausted an 80 GB card: each cubecl
# process keeps its own memory pool)
for seed in 1 2 3; do
  [ $(left) -lt 60 ] && { el "stopped before seed $seed"; break; }
  el "seed $seed ($(left) s left)"
  ft mamba pt-mamba $seed doc-first 3e-4 & p1=$!
  ft gpt-neox pt-gpt-neox $seed doc-first 3e-4 & p2=$!
  ft mamba-random pt-mamba $seed doc-first 1e-3 --random-init & p3=$!
  ft gpt-neox-random pt-gpt-neox $seed doc-first 1e-3 --random-init & p4=$!
  ft mamba-query-first pt-mamba $seed query-first 3e-4 & p5=$!
  ft gpt-neox-query-first pt-gpt-neox $seed query-first 3e-4 & p6=$!
  wait $p1 $p2 $p3 $p4 $p5 $p6; pack
done
kill $DMON; el end
