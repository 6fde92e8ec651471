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
//! - [`attention`](mod@attention): flash attention ([`flash_attention`]) with a key-padding mask
//!   and a causal option: cubecl kernels forward and backward on CUDA and wgpu (features
//!   `cubecl` / `wgpu` / `cuda`, and `fusion` for Burn's `Fusion` wrapper), one `Autodiff` node,
//!   tensor ops on NdArray; also Burn's `attention` and a plain reference path.
//!
//! Models load from a local directory or a HF hub id (`model-io`); every user error is a
//! [`TransformerError`]. Models take token ids; text becomes ids in `rank-heads`' `PairEncoder`
//! (the one pair encoder, which tokenizes pairs exactly as `transformers` does) or through
//! `tokenizers` directly, as here.
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use burn::tensor::{Int, Tensor, TensorData};
//! use model_io::HubOptions;
//! use transformer_baselines::BertModel;
//!
//! let device = Default::default();
//! let dir = "/path/to/all-MiniLM-L6-v2";
//! let (model, _config) = BertModel::<NdArray>::from_pretrained(dir, &HubOptions::default(), &device)?;
//! let tokenizer = tokenizers::Tokenizer::from_file(format!("{dir}/tokenizer.json")).unwrap();
//! let enc = tokenizer.encode(("what is rust", "Rust is a systems language."), true).unwrap();
//! let ids = |v: &[u32]| {
//!     let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
//!     Tensor::<NdArray, 2, Int>::from_data(TensorData::new(v.clone(), [1, v.len()]), &device)
//! };
//! let out = model.forward(ids(enc.get_ids()), Some(ids(enc.get_type_ids())), None)?;
//! assert_eq!(out.last_hidden_state.dims()[2], 384);
//! # Ok::<(), transformer_baselines::TransformerError>(())
//! ```

pub mod activation;
pub mod attention;
pub mod bert;
pub mod checkpoint;
mod error;
pub mod gpt_neox;

pub use activation::HiddenAct;
pub use attention::{
    AttentionImpl, FlashAttentionBackend, FlashConfig, FlashKernel, KeyMask, flash_attention,
};
pub use bert::{BertConfig, BertModel, BertModelOutput};
pub use error::TransformerError;
pub use gpt_neox::{GptNeoXConfig, GptNeoXModel};
