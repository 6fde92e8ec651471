//! `transformer-baselines`: the transformer backbones that RankMamba compares Mamba with, on
//! Burn, with HF `transformers` tensor names and outputs.
//!
//! Every model follows one convention: `XConfig::init(&device)` builds a random model,
//! `from_pretrained(dir_or_hub_id)` / `load_dir(dir)` return `(model, config)`, and
//! `save_pretrained(&config, dir)` writes a HF checkpoint directory (as `mamba-blocks` does).
//!
//! - [`BertModel`]: a BERT-style encoder (BERT, MiniLM, RoBERTa-style positions), post-norm,
//!   optional pooler; loads HF safetensors with or without the `bert.` / `roberta.` prefix.
//! - [`GptNeoXModel`]: a GPT-NeoX decoder (Pythia): rotary embeddings on `rotary_pct` of each
//!   head, parallel residual, causal attention; presets for pythia-70m / 160m / 410m.
//! - [`attention`](mod@attention): Burn's fused `attention` (flash attention on the cubecl
//!   backends) with a key-padding mask and a causal option, and a plain reference path.
//! - [`PairTokenizer`]: (query, document) pairs through HF `tokenizers` (token types right).
//!
//! Models load from a local directory or a HF hub id (`model-io`); every user error is a
//! [`TransformerError`].
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use model_io::HubOptions;
//! use transformer_baselines::{BertModel, PairTokenizer, PaddingSide};
//!
//! let device = Default::default();
//! let dir = "/path/to/all-MiniLM-L6-v2";
//! let (model, _config) = BertModel::<NdArray>::from_pretrained(dir, &HubOptions::default(), &device)?;
//! let tokenizer = PairTokenizer::from_pretrained(dir, &HubOptions::default(), 256, PaddingSide::Right)?;
//! let batch = tokenizer.encode_pairs(&[("what is rust", "Rust is a systems language.")])?;
//! let t = batch.to_tensors::<NdArray>(&device);
//! let out = model.forward(t.input_ids, Some(t.token_type_ids), Some(t.attention_mask))?;
//! assert_eq!(out.last_hidden_state.dims()[2], 384);
//! # Ok::<(), transformer_baselines::TransformerError>(())
//! ```

pub mod activation;
pub mod attention;
pub mod bert;
pub mod checkpoint;
mod error;
pub mod gpt_neox;
pub mod tokenize;

pub use activation::HiddenAct;
pub use attention::AttentionImpl;
pub use bert::{BertConfig, BertModel, BertModelOutput};
pub use error::TransformerError;
pub use gpt_neox::{GptNeoXConfig, GptNeoXModel};
pub use tokenize::{BatchTensors, EncodedBatch, PaddingSide, PairTokenizer};
