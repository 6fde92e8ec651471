#!/usr/bin/env python3
"""Scores a `rankmamba export` checkpoint with `transformers` and compares with rankmamba's scores.

    /root/.cache/rm-venv/bin/python scripts/check_hf_export.py EXPORTED RUN.trec COLLECTION_DIR

EXPORTED is a folder written by `rankmamba export`; RUN.trec a run written by
`rankmamba rerank` whose every line was scored by the model (a first stage of depth <= --depth);
COLLECTION_DIR a TREC DL layout (queries.tsv, collection.tsv). Each (query, passage) pair of the
run is scored by AutoModelForSequenceClassification with the tokenizer AutoTokenizer reads from
EXPORTED, in the pair layout the checkpoint's `rankmamba` settings name (BERT: the tokenizer's
pair template, passage truncated; decoders: the template text + EOS). Prints the largest
absolute difference and exits 1 above --tol. `tests/export.rs` leaves such a folder and run
under target/tmp/export-check/.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def decoder_ids(tok, settings, query, doc):
    """The template filled in, then EOS; over the limit, the passage's tokens are cut (found by
    their offsets), as rankmamba's pair encoder does."""
    t = settings["template"]
    template, limit = t["template"], settings["max_length"]
    head, tail = template.split("{doc}")
    head = head.replace("{query}", query)
    tail = tail.replace("{query}", query)
    text = head + doc + tail
    span = (len(head), len(head) + len(doc))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if len(ids) < limit:
        return ids + [t["eos_id"]]
    before = [i for i, (s, e) in zip(ids, offsets) if e <= span[0]]
    after = [i for i, (s, e) in zip(ids, offsets) if s >= span[1] and e > span[0]]
    inside = [i for i, (s, e) in zip(ids, offsets) if e > span[0] and s < span[1]]
    inside = inside[: limit - len(before) - len(after) - 1]
    return before + inside + after + [t["eos_id"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exported", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("collection", type=Path)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    cfg = json.loads((a.exported / "config.json").read_text())
    settings = cfg["rankmamba"]
    queries = dict(l.rstrip("\n").split("\t", 1) for l in (a.collection / "queries.tsv").open())
    rows = [l.split() for l in a.run.open() if l.strip()]
    wanted = {r[2] for r in rows}
    passages = {}
    with (a.collection / "collection.tsv").open() as f:
        for line in f:
            pid, text = line.rstrip("\n").split("\t", 1)
            if pid in wanted:
                passages[pid] = text
    model = AutoModelForSequenceClassification.from_pretrained(str(a.exported), attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(str(a.exported))
    worst = 0.0
    for qid, _, pid, _, score, _ in rows:
        q, d = queries[qid], passages[pid]
        with torch.no_grad():
            if settings["template"]["style"] == "encoder":
                enc = tok(q, d, truncation="only_second", max_length=settings["max_length"], return_tensors="pt")
                logit = model(**enc).logits[0, 0].item()
            else:
                ids = decoder_ids(tok, settings, q, d)
                logit = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        worst = max(worst, abs(logit - float(score)))
    print(f"{len(rows)} pairs: largest |transformers - rankmamba| = {worst:.3g}")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
