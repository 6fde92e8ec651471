#!/usr/bin/env python3
"""Tiny random Mamba checkpoints and their `transformers` outputs, for the mamba-blocks parity tests.

Writes crates/mamba-blocks/tests/fixtures/:
  tiny/            HF format (config.json + model.safetensors), hidden 64, 2 layers, state 16,
                   vocab 512, tied LM head, no in/out bias
  odd/             HF format, odd sizes and the other options: hidden 36, 3 layers, state 7,
                   conv 3, dt rank 5, vocab 304, untied head, in/out bias, no conv bias,
                   residual not in fp32
  tiny-original/   the tiny model in the original state-spaces layout (`backbone.embedding`,
                   config with d_model / n_layer / ssm_cfg, vocab 509 padded to a multiple of 8)
  tiny-bf16/       the tiny model stored in bfloat16
  */outputs.safetensors  input_ids, last hidden state (after norm_f), logits, the projection
                   `proj` of the scalar loss sum(logits * proj), and that loss's gradient for a
                   few parameters; for tiny also a left-padded batch with its attention mask.
  tokenizer_ids.json  GPT-NeoX-20B token ids of ten varied texts (HF `tokenizers`).

The reference runs transformers' slow (pure PyTorch) path in float64 on CPU; the float64 weights
are exactly the float32 (or bf16) values stored, so the reference is exact for what Rust loads.
Usage: HF_HUB_OFFLINE=1 python scripts/gen_mamba_fixtures.py [--data ../shared/data]
"""
import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import MambaConfig, MambaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "mamba-blocks" / "tests" / "fixtures"

GRAD_PARAMS = [
    "backbone.embeddings.weight",
    "backbone.layers.0.mixer.A_log",
    "backbone.layers.0.mixer.D",
    "backbone.layers.0.mixer.conv1d.weight",
    "backbone.layers.0.mixer.x_proj.weight",
    "backbone.layers.1.mixer.in_proj.weight",
    "backbone.layers.1.mixer.dt_proj.weight",
    "backbone.layers.1.mixer.dt_proj.bias",
    "backbone.layers.1.mixer.out_proj.weight",
    "backbone.layers.1.norm.weight",
    "backbone.norm_f.weight",
]


def randomise(model, seed):
    """Move every parameter off its init so that a wrong name or layout shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight") or name.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".D"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("dt_proj.bias"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p.shape[-1]) ** 0.5))


def reference(model, ids, proj, mask=None):
    m = model.double()
    m.eval()
    for p in m.parameters():
        p.grad = None
    out = m(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
    loss = (out.logits * proj.double()).sum()
    loss.backward()
    named = dict(m.named_parameters())
    grads = {}
    for n in GRAD_PARAMS:
        if n in named and named[n].grad is not None:
            grads["grad." + n] = named[n].grad.float().contiguous()
    return out.hidden_states[-1].float(), out.logits.float(), loss.item(), grads


def write_model(model, cfg_json, name, dtype=torch.float32, rename=None):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        kk = rename(k) if rename else k
        sd[kk] = v.detach().to(dtype).contiguous()
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
    return d


def make(name, cfg, seed, batch=3, length=11, padded=False):
    torch.manual_seed(seed)
    model = MambaForCausalLM(cfg).float()
    randomise(model, seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, cfg.vocab_size, (batch, length), generator=g)
    proj = torch.randn(batch, length, cfg.vocab_size, generator=g)
    cfg_json = cfg.to_dict()
    d = write_model(model, cfg_json, name)
    hidden, logits, loss, grads = reference(model, ids, proj)
    tensors = {
        "input_ids": ids.to(torch.int64),
        "proj": proj,
        "hidden": hidden,
        "logits": logits,
        "loss": torch.tensor([loss], dtype=torch.float32),
        **grads,
    }
    if padded:
        # Left padding: row 0 alone, row 1 with 4 pad tokens in front, row 2 with 2.
        mask = torch.ones(batch, length, dtype=torch.int64)
        mask[1, :4] = 0
        mask[2, :2] = 0
        pad_ids = ids.clone()
        pad_ids[mask == 0] = 0
        with torch.no_grad():
            out = model.double()(input_ids=pad_ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        tensors["padded_ids"] = pad_ids
        tensors["padded_mask"] = mask
        tensors["padded_hidden"] = out.hidden_states[-1].float()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "outputs.safetensors"))
    return model.float(), ids, proj


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("RANKMAMBA_DATA", str(ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    tiny_cfg = MambaConfig(
        vocab_size=512, hidden_size=64, state_size=16, num_hidden_layers=2, expand=2,
        conv_kernel=4, time_step_rank="auto", use_bias=False, use_conv_bias=True,
        residual_in_fp32=True, tie_word_embeddings=True, layer_norm_epsilon=1e-5,
    )
    tiny, ids, proj = make("tiny", tiny_cfg, 11, padded=True)

    odd_cfg = MambaConfig(
        vocab_size=304, hidden_size=36, state_size=7, num_hidden_layers=3, expand=2,
        conv_kernel=3, time_step_rank=5, use_bias=True, use_conv_bias=False,
        residual_in_fp32=False, tie_word_embeddings=False, layer_norm_epsilon=1e-6,
    )
    make("odd", odd_cfg, 23)

    # The tiny model in the original state-spaces layout: same weights, so same outputs.
    original_cfg = {
        "d_model": 64, "n_layer": 2, "vocab_size": 509, "pad_vocab_size_multiple": 8,
        "ssm_cfg": {"d_state": 16, "d_conv": 4, "expand": 2}, "rms_norm": True,
        "residual_in_fp32": True, "fused_add_norm": True, "tie_embeddings": True,
    }
    d = write_model(tiny, original_cfg, "tiny-original",
                    rename=lambda k: k.replace("backbone.embeddings.", "backbone.embedding."))
    (d / "outputs.safetensors").write_bytes((OUT / "tiny" / "outputs.safetensors").read_bytes())

    # bf16 storage: the reference runs on the bf16-rounded weights.
    tiny_bf16 = MambaForCausalLM(tiny_cfg).float()
    tiny_bf16.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in tiny.state_dict().items()})
    write_model(tiny_bf16, tiny_cfg.to_dict(), "tiny-bf16", dtype=torch.bfloat16)
    hidden, logits, loss, _ = reference(tiny_bf16, ids, proj)
    save_file({"input_ids": ids, "hidden": hidden.contiguous(), "logits": logits.contiguous()},
              str(OUT / "tiny-bf16" / "outputs.safetensors"))

    # Tokenizer parity: the GPT-NeoX-20B BPE through HF tokenizers.
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(Path(args.data) / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"))
    texts = [
        "what is the daily dose of vitamin d for adults",
        "Document: The Manhattan Project was a research effort during World War II.\n\nQuery: who led the manhattan project",
        "  leading and trailing spaces  ",
        "Tabs\tand\nnewlines\r\nmixed",
        "Unicode: café, naïve, Straße, Ελληνικά, русский",
        "CJK 日本語のテキスト and 中文",
        "emoji 🚀🔥 and symbols ©®™ ± ≤ ≥",
        "numbers 3.14159, 1,000,000 and 2026-11-28",
        "def f(x):\n    return x ** 2  # code",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
    ]
    rows = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
    eos = tok.token_to_id("<|endoftext|>")
    (OUT / "tokenizer_ids.json").write_text(json.dumps({"eos_id": eos, "cases": rows}, ensure_ascii=False, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
