//! Ranking losses over score tensors.
//!
//! Groups are laid out row-major as `[n_groups, group_size]` with the positive at index 0
//! (the layout of the training sampler).

use burn::tensor::{Tensor, activation, backend::Backend};
use serde::{Deserialize, Serialize};

/// Which loss a training run uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RankLoss {
    /// Localized contrastive estimation: softmax cross-entropy over a group, positive at 0
    /// (the RankMamba paper's loss).
    Lce,
    /// Pointwise binary cross-entropy on logits (label 1 for index 0, 0 for the rest).
    Bce,
    /// Pairwise RankNet: `log(1 + exp(-(s_pos - s_neg)))` averaged over (positive, negative)
    /// pairs.
    RankNet,
    /// Pairwise hinge: `max(0, margin - (s_pos - s_neg))`.
    Margin {
        /// The margin.
        margin: f32,
    },
}

impl RankLoss {
    /// The loss of `scores` `[n_groups, group_size]` (positive at index 0), averaged.
    pub fn compute<B: Backend>(&self, scores: Tensor<B, 2>) -> Tensor<B, 1> {
        match *self {
            RankLoss::Lce => lce(scores),
            RankLoss::Bce => bce_groups(scores),
            RankLoss::RankNet => ranknet(scores),
            RankLoss::Margin { margin } => margin_loss(scores, margin),
        }
    }
}

/// `mean_g(-log softmax(s_g)[0])`.
pub fn lce<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = scores.dims();
    let logp = activation::log_softmax(scores, 1);
    logp.slice([0..n, 0..1]).neg().mean()
}

/// Binary cross-entropy with logits, `mean(softplus(s) - y s)` (stable form).
pub fn bce<B: Backend, const D: usize>(logits: Tensor<B, D>, labels: Tensor<B, D>) -> Tensor<B, 1> {
    // softplus(s) = max(s, 0) + log1p(exp(-|s|))
    let sp = logits.clone().clamp_min(0.0) + logits.clone().abs().neg().exp().log1p();
    (sp - labels * logits).mean()
}

fn bce_groups<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, g] = scores.dims();
    let device = scores.device();
    let labels = Tensor::<B, 2>::zeros([n, g], &device)
        .slice_assign([0..n, 0..1], Tensor::ones([n, 1], &device));
    bce(scores, labels)
}

/// Differences `s_pos - s_neg`, `[n_groups, group_size - 1]`.
fn pair_diffs<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, g] = scores.dims();
    let pos = scores.clone().slice([0..n, 0..1]);
    let neg = scores.slice([0..n, 1..g]);
    pos - neg
}

/// `mean log(1 + exp(-(s_pos - s_neg)))`.
pub fn ranknet<B: Backend>(scores: Tensor<B, 2>) -> Tensor<B, 1> {
    let d = pair_diffs(scores).neg();
    // softplus, stable
    (d.clone().clamp_min(0.0) + d.abs().neg().exp().log1p()).mean()
}

/// `mean max(0, margin - (s_pos - s_neg))`.
pub fn margin_loss<B: Backend>(scores: Tensor<B, 2>, margin: f32) -> Tensor<B, 1> {
    pair_diffs(scores)
        .neg()
        .add_scalar(margin)
        .clamp_min(0.0)
        .mean()
}
