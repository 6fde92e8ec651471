#!/usr/bin/env python3
"""GPT-NeoX-20B token ids of awkward strings, from HF `tokenizers` (Python, onig regex engine).

The workspace builds `tokenizers` with its pure-Rust fancy-regex engine (no C build); this
fixture checks it splits text exactly as the reference does. Run by hand (output committed):

    /root/.cache/rm-venv/bin/python scripts/gen_tokenizer_fixtures.py
"""
import json
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
TOK = ROOT.parent / "shared" / "data" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"
OUT = ROOT / "crates" / "rank-heads" / "tests" / "fixtures" / "neox_ids.json"

TEXTS = [
    "Document: Paris is the capital of France.\n\nQuery: what is the capital of france?",
    "I'm sure it's they're we've you'll he'd I'M IT'S",
    "Numbers: 3.14159, 1,000,000 and 2024-12-07; 42nd 7th",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\r\n\n\nand   runs     of spaces",
    "café naïve résumé Zürich Straße",
    "日本語のテキストと中文文本",
    "Emoji 😀🚀 and symbols © ® ™ — – … “quotes” ‘single’",
    "math: α+β=γ, ∑ x_i ≤ ∞, √2 ≈ 1.414",
    "code: fn main() { println!(\"{}\", x.iter().map(|v| v * 2).sum::<i32>()); }",
    "URL https://example.com/a?b=c&d=e#f and email a.b@c.org",
    "ALLCAPS MixedCase camelCaseWord snake_case_word kebab-case-word",
    "Ω Ωmega ΩΩΩ ﬁ ligature",
    "Arabic: مرحبا بالعالم; Hebrew: שלום עולם; Hindi: नमस्ते दुनिया",
    "a\u00a0non-breaking\u2009thin\u200bzero-width",
    "'s 't 're 've 'm 'll 'd at the start",
    "   \n   ",
    "x",
    "SARS-CoV-2 spike (S) protein binds ACE2 with Kd ~15 nM [12].",
    "p < 0.05; n = 1,234; 95% CI: 0.12–0.34",
]

tok = Tokenizer.from_file(str(TOK))
cases = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS]
OUT.write_text(json.dumps({"tokenizer": "gpt-neox-20b", "cases": cases}, ensure_ascii=False, indent=1) + "\n")
print(f"wrote {OUT} ({len(cases)} texts)")
