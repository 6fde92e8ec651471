//! `rank-heads`: cross-encoder reranking on Burn.
//!
//! - [`SequenceEncoder`]: token batch -> hidden states; implemented for `MambaModel`,
//!   `BertModel`, `GptNeoXModel`, and open to a user's own encoder;
//! - [`Pooling`] (CLS, last real token, mean) and [`CrossEncoder`] (encoder + dropout +
//!   `Linear(H, 1)`, fp32 logits);
//! - [`PairEncoder`]: the paper's input templates, truncating the document only;
//! - losses ([`RankLoss`]: LCE, BCE, RankNet, margin);
//! - [`CausalLm`]: causal language-model pretraining of a backbone (tied head);
//! - [`train`]: AdamW, warmup + linear decay, global-norm clipping, accumulation, seeded
//!   determinism, atomic checkpoints with exact resume, progress bar, JSONL metrics;
//! - [`Reranker`]: batching, sorting, reranking a whole TREC run;
//! - [`BiEncoder`]: a sentence-embedding model scoring by cosine (the zero-shot reference);
//! - [`hf`] (feature `transformers`): HF sequence-classification checkpoints in
//!   ([`AutoCrossEncoder`]`::from_pretrained`) and out ([`CrossEncoder::save_pretrained`]).

mod bi_encoder;
mod cross_encoder;
mod encoder;
#[cfg(feature = "transformers")]
pub mod hf;
pub mod lm;
pub mod loss;
mod pooling;
mod rerank;
mod template;
pub mod train;

pub use bi_encoder::BiEncoder;
pub use cross_encoder::CrossEncoder;
pub use encoder::{SequenceEncoder, TokenBatch, TokenEmbedding};
#[cfg(feature = "transformers")]
pub use hf::{
    Activation, AnyBackend, AnyEncoder, AutoCrossEncoder, HfLayout, Pretrained, ScoringSettings,
};
pub use lm::CausalLm;
pub use loss::RankLoss;
pub use pooling::Pooling;
pub use rerank::Reranker;
pub use template::{
    EncodedBatch, EncodedPair, PAPER_DECODER_TEMPLATE, PaddingSide, PairEncoder, PairTruncation,
    QUERY_FIRST_TEMPLATE, TemplateStyle,
};
pub use train::{NodeSetup, Objective, Scorer, TrainConfig, Trainer, Warmup, ranking_loss};

use burn::tensor::backend::Backend;

/// Errors of reranking and training.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    /// A setting that cannot work.
    #[error("config: {0}")]
    Config(String),
    /// Input that cannot be scored (a query longer than the limit, a missing document).
    #[error("input: {0}")]
    Input(String),
    /// Tokenizer failures.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Mamba model errors.
    #[error(transparent)]
    #[cfg(feature = "mamba")]
    Mamba(#[from] mamba_blocks::MambaError),
    /// Transformer model errors.
    #[error(transparent)]
    #[cfg(feature = "transformers")]
    Transformer(#[from] transformer_baselines::TransformerError),
    /// Data-parallel training: a collective operation or a replica failed.
    #[error("data-parallel training: {0}")]
    Distributed(String),
    /// Checkpoint and log I/O.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        message: String,
    },
}

impl RankError {
    /// A Burn record (`.mpk`) at `path` that would not load, said plainly: Burn's own message
    /// for bytes it cannot decode suggests a format change of Burn 0.14, which is not the
    /// cause for a file this workspace wrote; a truncated, corrupt or foreign file is.
    pub fn record(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        let text = e.to_string();
        // Burn's message, as its error's Debug text: `Unknown("CAUSE\nThe internal data
        // format has changed since version 0.14.0 ...")`
        let message = match text.find("The internal data format has changed") {
            Some(cut) => {
                let cause = text[..cut]
                    .trim_end_matches("\\n")
                    .trim_end_matches('\n')
                    .trim_start_matches("Unknown(\"");
                let size = std::fs::metadata(path)
                    .map(|m| format!("{} bytes", m.len()))
                    .unwrap_or_else(|e| e.to_string());
                format!(
                    "not a readable Burn record ({size}): truncated or corrupt, or written for \
                     a model of another shape ({})",
                    cause.trim()
                )
            }
            None => text,
        };
        RankError::Io {
            path: path.into(),
            message,
        }
    }
}

impl<B: Backend, E: SequenceEncoder<B>> Scorer<B> for CrossEncoder<B, E> {
    fn score(&self, batch: &TokenBatch<B>) -> Result<burn::tensor::Tensor<B, 1>, RankError> {
        self.forward(batch)
    }
}

impl<B: Backend, E: SequenceEncoder<B>> Objective<B> for CrossEncoder<B, E> {
    fn objective(
        &self,
        batch: &TokenBatch<B>,
        cfg: &TrainConfig,
    ) -> Result<burn::tensor::Tensor<B, 1>, RankError> {
        Ok(train::ranking_loss(self.forward(batch)?, cfg))
    }
}
