# Sourced by the device scripts, in their work folder, with BIN set to the carried folder:
# unpacks the CLI (rankmamba.xz) and whatever of minilm/, scifact/, dl19/, dl20/ and
# tokenizers/gpt-neox-20b/ BIN holds into ./rankmamba, ./minilm and ./data, and points
# RANKMAMBA_DATA at ./data.
xz -dc $BIN/rankmamba.xz > rankmamba && chmod +x rankmamba
if [ -d $BIN/minilm ]; then
  mkdir -p minilm && cp $BIN/minilm/config.json minilm/
  xz -dc $BIN/minilm/model.safetensors.xz > minilm/model.safetensors
  xz -dc $BIN/minilm/tokenizer.json.xz > minilm/tokenizer.json
fi
if [ -d $BIN/scifact ]; then
  mkdir -p data/scifact/qrels && xz -dc $BIN/scifact/corpus.jsonl.xz > data/scifact/corpus.jsonl
  cp $BIN/scifact/queries.jsonl data/scifact/ && cp $BIN/scifact/qrels/*.tsv data/scifact/qrels/
fi
for y in 2019 2020; do
  s=$BIN/dl${y#20}; [ -d $s ] || continue
  d=data/trec-dl-$y-passage; mkdir -p $d/runs
  xz -dc $s/collection.tsv.xz > $d/collection.tsv
  cp $s/queries.tsv $s/qrels.txt $d/ && cp $s/runs/bm25.trec $d/runs/
done
if [ -d $BIN/tokenizers/gpt-neox-20b ]; then
  mkdir -p data/tokenizers/gpt-neox-20b
  xz -dc $BIN/tokenizers/gpt-neox-20b/tokenizer.json.xz > data/tokenizers/gpt-neox-20b/tokenizer.json
fi
export RANKMAMBA_DATA=$PWD/data RUST_BACKTRACE=0
