#!/bin/bash
# The controlled Mamba vs GPT-NeoX study on SciFact within one 10-minute device call (the
# steps of `rankmamba controlled`, run concurrently on one GPU): tokenizer, pretraining of both
# architectures at once, fine-tuning of 6 systems x 3 seeds (6 at a time), reranking; and
# all-MiniLM-L6-v2 fine-tuned as a cross-encoder (mean and CLS pooling) alongside.
# Usage: controlled_scifact.sh SIZE PT_SECONDS FT_STEPS: pretraining steps are sized from a 40-step
# probe of both architectures so that the slower one pretrains for about PT_SECONDS (at most
# one epoch); both then pretrain on the same tokens with the same schedule.
SIZE=${1:-10m}; PT_SECONDS=${2:-200}; FT_STEPS=${3:-300}
# Run from the repository root with the carried folder device-bin2/ holding: rankmamba.xz (a
# stripped `--features cuda` build), minilm/ (all-MiniLM-L6-v2 as f16 safetensors, xz), scifact/
# (corpus.jsonl.xz, queries.jsonl, qrels/) and pretrain/ (*.txt.xz of the shared corpus).
cd device-bin2
xz -dc rankmamba.xz > rankmamba && chmod +x rankmamba
xz -dk minilm/model.safetensors.xz minilm/tokenizer.json.xz
mkdir -p data/scifact/qrels data/pretrain && xz -dc scifact/corpus.jsonl.xz > data/scifact/corpus.jsonl
cp scifact/queries.jsonl data/scifact/ && cp scifact/qrels/*.tsv data/scifact/qrels/ && cp pretrain/*.txt.xz data/pretrain/
export RANKMAMBA_DATA=$PWD/data
S=$OUT/summary.txt; L=$OUT/logs.txt
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $S
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $S; }
minilm() {  # all-MiniLM-L6-v2 as a cross-encoder: pooling lr steps
  tag=minilm-$1-$2-$3
  ./rankmamba train --model ./minilm --dataset scifact --out m-$tag --steps $3 --group-size 8 --groups-per-step 16 --negatives-top-k 30 --lr $2 --max-length 256 --pooling $1 --backend cuda --log-every 20 > m-$tag.log 2>&1
  ./rankmamba rerank --model m-$tag --dataset scifact -o runs/$tag.trec --depth 100 --batch-size 128 --eval --backend cuda > eval-$tag.txt 2>>m-$tag.log
  { echo "== $tag"; cat eval-$tag.txt; grep -h tokens_per_s m-$tag/train_report.json; } >> $S
}
mkdir -p ft runs
( minilm mean 2e-5 200; minilm cls 2e-5 200 ) &
el "tokenizer"
./rankmamba tokenizer --corpus pretrain --vocab-size 8192 -o tok.json >> $L 2>&1
el "probe"
for arch in mamba gpt-neox; do
  ./rankmamba pretrain --arch $arch --size $SIZE --corpus pretrain --tokenizer tok.json --seq-len 256 --batch-size 64 --steps 40 --eval-every 40 --eval-sequences 8 --log-every 10 --backend cuda --quiet -o probe-$arch > probe-$arch.log 2>&1 &
done
wait
PT_STEPS=$(python3 - <<PY
import json
def rate(a):  # tokens/s between steps 20 and 40 (after kernel compilation), both at once
    l=[json.loads(x) for x in open(f"probe-{a}/pretrain.jsonl") if '"tokens"' in x]
    l={d["step"]:d for d in l}
    return (l[40]["tokens"]-l[20]["tokens"])/(l[40]["elapsed_s"]-l[20]["elapsed_s"])
tps=min(rate("mamba"),rate("gpt-neox"))
epoch=json.load(open("probe-mamba/pretrain_report.json"))["train_sequences"]//64
print(max(50, min(epoch, int($PT_SECONDS*tps/(64*256)))))
PY
)
grep -h tokens_per_s probe-*/pretrain_report.json >> $S; tail -n 2 probe-*/pretrain.jsonl >> $S
el "pretrain $SIZE x $PT_STEPS steps"
for arch in mamba gpt-neox; do
  ./rankmamba pretrain --arch $arch --size $SIZE --corpus pretrain --tokenizer tok.json --seq-len 256 --batch-size 64 --steps $PT_STEPS --lr 1e-3 --eval-every $(( PT_STEPS / 8 )) --eval-sequences 512 --backend cuda --quiet -o pt-$arch > pt-$arch.log 2>&1 &
done
wait
for arch in mamba gpt-neox; do tail -1 pt-$arch.log >> $S; cp pt-$arch/pretrain.jsonl $OUT/pretrain-$arch.jsonl; cp pt-$arch/pretrain_report.json $OUT/pretrain_report-$arch.json; done
ft() {  # name backbone seed template lr [--random-init]
  ./rankmamba train --model $2 --dataset scifact --out ft/$1-s$3 --steps $FT_STEPS --group-size 8 --groups-per-step 16 --negatives-top-k 30 --lr $5 --max-length 256 --pooling last-token --template $4 --seed $3 $6 --backend cuda --log-every 50 > ft/$1-s$3.log 2>&1 \
  && ./rankmamba rerank --model ft/$1-s$3 --dataset scifact -o runs/$1-s$3.trec --depth 100 --batch-size 128 --backend cuda >> ft/$1-s$3.log 2>&1
  echo "$1 s$3 $(grep -h tokens_per_s ft/$1-s$3/train_report.json | tr -d ' ,')" >> $S
}
el "fine-tuning ($FT_STEPS steps)"
for seed in 1 2 3; do
  ft mamba pt-mamba $seed doc-first 1e-4 &
  ft neox pt-gpt-neox $seed doc-first 1e-4 &
  ft mamba-random pt-mamba $seed doc-first 1e-3 --random-init &
  ft neox-random pt-gpt-neox $seed doc-first 1e-3 --random-init &
  ft mamba-qfirst pt-mamba $seed query-first 1e-4 &
  ft neox-qfirst pt-gpt-neox $seed query-first 1e-4 &
  wait
  el "seed $seed done"
  tar czf $OUT/runs.tgz runs ft/*.log ft/*/train.jsonl ft/*/train_report.json ft/*/rankmamba.json m-*/train.jsonl m-*.log 2>/dev/null
done
wait
el "done"
