//! `mamba-blocks`: Mamba (v1) models on Burn, with exact parity to HF `transformers`.
//!
//! - [`MambaConfig`]: HF `config.json` or the original state-spaces config, presets 130m..2.8b;
//! - modules with HF parameter names: [`MambaMixer`], [`RmsNorm`], [`MambaBlock`],
//!   [`MambaModel`], [`MambaForCausalLM`]; the scan runs through `mamba-ssm` (fast CPU scan on
//!   NdArray, cubecl kernel on wgpu/CUDA, custom backward under Autodiff);
//! - checkpoints: loading from a directory or a hub id (HF or original names, fp16/bf16/fp32),
//!   saving in the HF layout ([`checkpoint`]);
//! - padding-invariant batching: with an attention mask, padded positions are exact no-ops, so
//!   a sequence's hidden states are the same alone or in a left- or right-padded batch;
//! - [`MambaTokenizer`]: the GPT-NeoX-20B tokenizer.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Int, Tensor};
//! use mamba_blocks::{MambaConfig, MambaForCausalLM};
//!
//! let dev = Default::default();
//! let config = MambaConfig::new(32, 2, 100);
//! let model = MambaForCausalLM::<NdArray>::new(&config, &dev);
//! let ids = Tensor::<NdArray, 2, Int>::from_ints([[1, 2, 3, 4], [0, 0, 5, 6]], &dev);
//! let mask = Tensor::<NdArray, 2, Int>::from_ints([[1, 1, 1, 1], [0, 0, 1, 1]], &dev);
//! let logits = model.forward(ids, Some(mask))?;
//! assert_eq!(logits.dims(), [2, 4, 100]);
//! # Ok::<(), mamba_blocks::MambaError>(())
//! ```

mod block;
pub mod checkpoint;
mod config;
mod conv;
mod mixer;
mod model;
mod norm;
mod tokenizer;

pub use block::MambaBlock;
pub use config::MambaConfig;
pub use conv::CausalConv1d;
pub use mixer::MambaMixer;
pub use model::{MambaForCausalLM, MambaModel};
pub use model_io::HubOptions;
pub use norm::RmsNorm;
pub use tokenizer::MambaTokenizer;

/// Errors of config parsing, checkpoint I/O and tokenization.
#[derive(Debug, thiserror::Error)]
pub enum MambaError {
    /// A config that cannot be used.
    #[error("config: {0}")]
    Config(String),
    /// Checkpoint files (missing, malformed, wrong names or shapes, hub failures).
    #[error(transparent)]
    Io(#[from] model_io::ModelIoError),
    /// Model inputs that cannot be run (ids out of the vocabulary, mask of the wrong shape).
    #[error("input: {0}")]
    Input(String),
    /// Tokenizer file or encoding failures.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}
