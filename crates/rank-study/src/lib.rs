//! The RankMamba study as a library, under the `rankmamba` command line:
//!
//! - [`models`]: model directories (`rankmamba.json` cards, HF checkpoints, all-MiniLM-L6-v2),
//!   built into the cross-encoder of their architecture;
//! - [`study`]: collections, training data, train / rerank jobs, presets and reports;
//! - [`recipes`]: the CPU recipes used by the examples (MiniLM on SciFact);
//! - [`pretrain`]: causal-LM pretraining of the Mamba and GPT-NeoX backbones;
//! - [`controlled`]: the controlled Mamba-vs-transformer protocol (one tokenizer, the same
//!   tokens, matched sizes, one fine-tuning recipe, seeds and paired tests).
//!
//! Dependencies run one way: `models` is the leaf; `study` uses it; `recipes` and `pretrain`
//! use `models` (and `recipes` the study's `encode_groups`); `controlled` uses all of them.

pub mod controlled;
pub mod models;
pub mod pretrain;
pub mod recipes;
pub mod study;
