//! Training settings, the learning-rate schedule and the report.

use serde::{Deserialize, Serialize};

use crate::{RankError, RankLoss};

/// Warmup length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Warmup {
    /// A number of optimizer steps.
    Steps(usize),
    /// A fraction of `total_steps`.
    Ratio(f64),
}

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Linear warmup from 0 to `lr`, then linear decay to 0 at `total_steps`.
    pub warmup: Warmup,
    /// Optimizer steps.
    pub total_steps: usize,
    /// Clip the global gradient norm (over all parameters) to this value.
    pub grad_clip_norm: Option<f64>,
    /// Micro-batches per optimizer step.
    pub accumulation: usize,
    /// Seed of every random op (dropout).
    pub seed: u64,
    /// Rows per group in a batch (positive first); the loss sees `[rows / G, G]`.
    pub group_size: usize,
    /// The loss.
    pub loss: RankLoss,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: Option<usize>,
    /// Write a checkpoint every this many steps (and at the end) when a checkpoint dir is set.
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept (older ones are deleted).
    pub keep_checkpoints: usize,
    /// Log a JSONL line every this many steps.
    pub log_every: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 2e-5,
            weight_decay: 0.01,
            warmup: Warmup::Ratio(0.1),
            total_steps: 1000,
            grad_clip_norm: Some(1.0),
            accumulation: 1,
            seed: 42,
            group_size: 8,
            loss: RankLoss::Lce,
            eval_every: None,
            checkpoint_every: None,
            keep_checkpoints: 2,
            log_every: 10,
            progress: true,
        }
    }
}

impl TrainConfig {
    /// Warmup steps.
    pub fn warmup_steps(&self) -> usize {
        match self.warmup {
            Warmup::Steps(n) => n,
            Warmup::Ratio(r) => (r * self.total_steps as f64).round() as usize,
        }
    }

    /// Learning rate of optimizer step `step` (0-based): `lr * (step + 1) / warmup` during
    /// warmup, then `lr * (total - step) / (total - warmup)`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let w = self.warmup_steps();
        if step < w {
            self.lr * (step + 1) as f64 / w as f64
        } else {
            let rest = self.total_steps.saturating_sub(w).max(1);
            self.lr * self.total_steps.saturating_sub(step) as f64 / rest as f64
        }
    }

    /// Checks the settings (what [`Trainer::new`](super::Trainer::new) refuses), so that a
    /// caller can refuse them before it writes anything.
    pub fn check(&self) -> Result<(), RankError> {
        let bad = |m: &str| Err(RankError::Config(m.into()));
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return bad("lr must be a positive finite number");
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return bad("weight_decay must be a finite number >= 0");
        }
        if self.total_steps == 0 || self.accumulation == 0 || self.group_size == 0 {
            return bad("total_steps, accumulation and group_size must be positive");
        }
        if self.log_every == 0 {
            return bad("log_every must be positive");
        }
        if let Warmup::Ratio(r) = self.warmup
            && !(0.0..=1.0).contains(&r)
        {
            return bad("warmup ratio must lie in [0, 1]");
        }
        if self.grad_clip_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return bad("grad_clip_norm must be positive");
        }
        Ok(())
    }
}

/// What [`Trainer::train`](super::Trainer::train) reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Steps done in this call.
    pub steps: usize,
    /// Mean loss of the last logged window.
    pub last_loss: f64,
    /// Tokens (non-padding) processed per second in this call.
    pub tokens_per_s: f64,
    /// `(step, value)` of each evaluation.
    pub evals: Vec<(usize, f64)>,
}
