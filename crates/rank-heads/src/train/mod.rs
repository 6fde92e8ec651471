//! The training loop: AdamW, linear warmup then linear decay, global-norm gradient clipping,
//! gradient accumulation, seeded determinism, periodic evaluation, atomic checkpoints with
//! exact resume, a progress bar and JSONL metrics.
//!
//! Data comes from a function of the global micro-batch index (`step * accumulation + micro`),
//! so the data position is the step: a resumed run asks for exactly the batches the
//! uninterrupted run would have seen. Dropout and every other random op are reseeded from
//! `(seed, index)` before each micro-batch, so randomness does not depend on history either.
//! Training `2N` steps equals training `N`, stopping, and resuming `N` (tested bit for bit).
//!
//! The host waits for the device once per step, when the step's backward passes are queued: it
//! reads the loss, the gradient norm and the token count together (the clipping and the
//! divergence check need them before the update), not after every forward and backward. A loss
//! that is not finite ends training with an error naming the cause before the update is
//! applied. A multi-device run also reads each replica's loss for the all-reduce, and the
//! models read their token ids once per forward to check them.

mod config;
mod grads;
mod nodes;
mod parallel;
mod ring;
mod trainer;

pub use config::{TrainConfig, TrainReport, Warmup};
pub use nodes::NodeSetup;
pub use trainer::{DEFAULT_BUCKET_VALUES, EvalFn, Trainer};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::{RankError, TokenBatch};

/// A model that scores a token batch (one logit per row).
pub trait Scorer<B: Backend> {
    /// Logits `[rows]`.
    fn score(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 1>, RankError>;
}

/// What the [`Trainer`] minimises: the mean loss of one micro-batch, a scalar `[1]`.
///
/// A [`crate::CrossEncoder`] minimises [`ranking_loss`] of its logits; a language model
/// ([`crate::lm::CausalLm`]) its next-token cross-entropy. A user's own [`Scorer`]
/// implements it with [`ranking_loss`] too.
pub trait Objective<B: Backend> {
    /// The loss of `batch` (not yet divided by the accumulation).
    fn objective(
        &self,
        batch: &TokenBatch<B>,
        cfg: &TrainConfig,
    ) -> Result<Tensor<B, 1>, RankError>;
}

/// The ranking loss of logits `[rows]`: rows in groups of [`TrainConfig::group_size`]
/// (positive first) under [`TrainConfig::loss`].
pub fn ranking_loss<B: Backend>(scores: Tensor<B, 1>, cfg: &TrainConfig) -> Tensor<B, 1> {
    let [rows] = scores.dims();
    cfg.loss
        .compute(scores.reshape([rows / cfg.group_size, cfg.group_size]))
}
