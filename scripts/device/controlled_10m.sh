#!/bin/bash
# The controlled study at 10M parameters on one GPU, in calls of under ten minutes.
#
#   controlled_10m.sh scifact   tokenizer on the pretraining text, each architecture pretrained
#                               alone (same tokens, same schedule, tokens/s measured alone), then
#                               SciFact train -> test: pretrained, random-init and query-first
#                               systems of both architectures, 3 seeds each;
#   controlled_10m.sh dl        DL19 -> DL20 and DL20 -> DL19: pretrained and random-init systems
#                               of both architectures, 3 seeds each. It reuses the backbones of a
#                               `scifact` call on the same (still warm) machine, and pretrains
#                               them again (both at once, same seed and schedule) otherwise.
#   controlled_10m.sh long      longer pretraining (PT_STEPS, default 1500: 24.6M tokens, 1.45
#                               passes), both architectures at once, then SciFact train -> test:
#                               pretrained and random-init systems of both, 3 seeds each. A later
#                               `dl` call on the same warm machine reuses these backbones.
#
# Fine-tuning is one recipe for every system: LCE, groups of 8 (one positive, negatives from
# BM25's top 30), 8 groups a step, last-token pooling, max length 256; peak lr 3e-4 for a
# pretrained backbone and 1e-3 for a random-init one. Reranking: BM25's top 20, all judged test
# queries. Six processes share the card (each cubecl process keeps its own memory pool; twelve
# exhausted an 80 GB card).
#
# Runs and logs come back as runs-PHASE.tgz in the layout `rankmamba controlled --analyse` reads
# (one folder per task). Carry device-bin3/ holding rankmamba.xz (a --features cuda build),
# scifact/ (corpus.jsonl.xz, queries.jsonl, qrels/), pretrain/ (../shared/data/pretrain/*.txt.xz),
# dl19/ and dl20/ (collection.tsv.xz, queries.tsv, qrels.txt, runs/bm25.trec) and this script.
PHASE=${1:-scifact}
# Overrides for a dry run on a workstation: BIN_OVERRIDE (a built rankmamba), BACKEND, SIZE,
# PT_STEPS, PT_SHAPE, FT_STEPS, QUERIES (judged test queries reranked).
BACKEND=${BACKEND:-cuda}; SIZE=${SIZE:-10m}; FT_STEPS=${FT_STEPS:-150}
if [ $PHASE = long ]; then PT_STEPS=${PT_STEPS:-1500}; PT_TIMEOUT=${PT_TIMEOUT:-360}; else PT_STEPS=${PT_STEPS:-600}; PT_TIMEOUT=${PT_TIMEOUT:-150}; fi
QARG=${QUERIES:+--queries $QUERIES}; OUT=${OUT:-/tmp/controlled-out}; mkdir -p $OUT
BIN=$PWD/device-bin3
W=$PWD/target/device-work   # git-ignored, so it survives between calls while the machine is warm
mkdir -p $W && cd $W
T0=$(date +%s); S=$OUT/summary-$PHASE.txt
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
left() { echo $(( ${T_END:-560} - ($(date +%s) - T0) )); }
if [ -n "$BIN_OVERRIDE" ]; then cp $BIN_OVERRIDE rankmamba; else xz -dc $BIN/rankmamba.xz > rankmamba && chmod +x rankmamba; fi
mkdir -p data/scifact/qrels data/pretrain
[ -f data/scifact/corpus.jsonl ] || xz -dc $BIN/scifact/corpus.jsonl.xz > data/scifact/corpus.jsonl
cp $BIN/scifact/queries.jsonl data/scifact/ && cp $BIN/scifact/qrels/*.tsv data/scifact/qrels/
cp $BIN/pretrain/*.txt.xz data/pretrain/
for y in 2019 2020; do
  d=data/trec-dl-$y-passage; s=$BIN/dl${y#20}; mkdir -p $d/runs
  [ -f $d/collection.tsv ] || xz -dc $s/collection.tsv.xz > $d/collection.tsv
  cp $s/queries.tsv $s/qrels.txt $d/ && cp $s/runs/bm25.trec $d/runs/
done
export RANKMAMBA_DATA=$PWD/data RUST_BACKTRACE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
nvidia-smi dmon -s um -d 2 > $OUT/dmon-$PHASE.txt 2>&1 & DMON=$!
el "setup ($PHASE)"

pretrained() { [ -f pt-mamba/pretrain_report.json ] && [ -f pt-gpt-neox/pretrain_report.json ]; }
pretrain() {  # arch
  timeout $PT_TIMEOUT ./rankmamba pretrain --arch $1 --size $SIZE --corpus pretrain --tokenizer tok.json ${PT_SHAPE:---seq-len 256 --batch-size 64 --eval-sequences 256} --steps $PT_STEPS --lr 1e-3 --eval-every 100 --log-every 50 --seed 1 --backend $BACKEND --quiet -o pt-$1 > pt-$1.log 2>&1
  el "pretrain $1 rc=$?"; tail -1 pt-$1.log >> $S
}
if pretrained; then
  el "reusing the backbones pretrained by the previous call"
else
  rm -rf pt-mamba pt-gpt-neox tok.json
  ./rankmamba tokenizer --corpus pretrain --vocab-size 8192 -o tok.json > tok.log 2>&1
  el "tokenizer rc=$?"
  if [ $PHASE = scifact ]; then  # alone: these tokens/s go in the table
    pretrain mamba; pretrain gpt-neox
  else
    pretrain mamba & p1=$!; pretrain gpt-neox & p2=$!; wait $p1 $p2
  fi
  tar czf $OUT/pretrain-$PHASE.tgz pt-*.log pt-*/pretrain.jsonl pt-*/pretrain_report.json pt-*/config.json tok.log 2>/dev/null
fi
pretrained || { el "pretraining failed"; kill $DMON 2>/dev/null; exit 1; }

# One fine-tune + rerank: task-dir train test system backbone seed template lr [--random-init]
ft() {
  local d=runs/$1 name=$4-s$6
  timeout $(( $(left) - 5 )) ./rankmamba train --model $5 --dataset $2 --out $d/$name --steps $FT_STEPS --group-size 8 --groups-per-step 8 --negatives-top-k 30 --lr $8 --max-length 256 --pooling last-token --template $7 --seed $6 $9 --backend $BACKEND --log-every 25 > $d/$name.log 2>&1 \
  && timeout $(( $(left) - 5 )) ./rankmamba rerank --model $d/$name --dataset $3 -o $d/$name.trec --depth 20 $QARG --batch-size 128 --backend $BACKEND >> $d/$name.log 2>&1
  local rc=$?
  rm -f $d/$name/*.mpk $d/$name/*.safetensors   # the weights stay here; runs and reports go back
  echo "[$(( $(date +%s) - T0 ))s] $1 $name rc=$rc $(grep -ho '"train_tokens_per_s": *[0-9.]*' $d/$name/train_report.json 2>/dev/null)" >> $S
}
running() { jobs -rp | grep -vx "$DMON" | wc -l; }
queue() {  # keeps six jobs on the card; starts none with under 100 s left
  while [ $(running) -ge 6 ]; do wait -n; done
  [ $(left) -lt 100 ] && { echo "skipped $* ($(left) s left)" >> $S; return; }
  ft "$@" &
}
task() {  # dir train test systems...
  local dir=$1 tr=$2 te=$3; shift 3
  mkdir -p runs/$dir && for a in mamba gpt-neox; do mkdir -p runs/$dir/pretrain-$a && cp pt-$a/pretrain_report.json runs/$dir/pretrain-$a/; done
  for seed in 1 2 3; do for sys in "$@"; do
    case $sys in
      *-random) queue $dir $tr $te $sys pt-${sys%-random} $seed doc-first 1e-3 --random-init ;;
      *-query-first) queue $dir $tr $te $sys pt-${sys%-query-first} $seed query-first 3e-4 ;;
      *) queue $dir $tr $te $sys pt-$sys $seed doc-first 3e-4 ;;
    esac
  done; done
}
if [ $PHASE = long ]; then  # the pretrained systems first: they are what this phase measures
  task scifact scifact scifact mamba gpt-neox
  task scifact scifact scifact mamba-random gpt-neox-random
elif [ $PHASE = scifact ]; then
  task scifact scifact scifact mamba gpt-neox mamba-random gpt-neox-random mamba-query-first gpt-neox-query-first
else
  task dl19-dl20 dl19 dl20 mamba gpt-neox mamba-random gpt-neox-random
  task dl20-dl19 dl20 dl19 mamba gpt-neox mamba-random gpt-neox-random
fi
while [ $(running) -gt 0 ]; do wait -n; done
kill $DMON 2>/dev/null
tar czf $OUT/runs-$PHASE.tgz runs/*/*.trec runs/*/*.log runs/*/*/train.jsonl runs/*/*/train_report.json runs/*/*/rankmamba.json runs/*/pretrain-* 2>/dev/null
el end
