//! Pooling hidden states `[batch, seq, H]` into one vector per sequence `[batch, H]`.

use burn::tensor::{Int, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

/// How a sequence's hidden states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The first position (`[CLS]` of BERT-style encoders; assumes right padding).
    Cls,
    /// The last real token (the EOS of decoder / Mamba templates), found from the mask, so it
    /// is right with left or right padding.
    #[default]
    LastToken,
    /// Mean over real tokens.
    Mean,
    /// The encoder's own pooler head over the first position: BERT's `tanh(dense([CLS]))`, the
    /// head of HF `BertForSequenceClassification` (and RoBERTa's classification head). Only
    /// [`crate::SequenceEncoder::encode_pooled`] applies the pooler; [`Pooling::pool`] alone
    /// returns its input, the first position.
    Pooler,
}

impl Pooling {
    /// Pools `hidden` `[batch, seq, H]` under `mask` `[batch, seq]` (1 = token).
    pub fn pool<B: Backend>(self, hidden: Tensor<B, 3>, mask: &Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq, h] = hidden.dims();
        match self {
            Pooling::Cls | Pooling::Pooler => {
                hidden.slice([0..batch, 0..1, 0..h]).reshape([batch, h])
            }
            Pooling::LastToken => {
                // index of the last 1 in each row: max over (position * mask)
                let pos = Tensor::<B, 1, Int>::arange(0..seq as i64, &mask.device())
                    .reshape([1, seq])
                    .expand([batch, seq]);
                let last = (pos * mask.clone()).max_dim(1); // [batch, 1]
                let idx = last.reshape([batch, 1, 1]).expand([batch, 1, h]);
                hidden.gather(1, idx).reshape([batch, h])
            }
            Pooling::Mean => {
                let m = mask.clone().float().reshape([batch, seq, 1]);
                let sum = (hidden * m.clone()).sum_dim(1).reshape([batch, h]);
                let count = m.sum_dim(1).reshape([batch, 1]).clamp_min(1.0);
                sum / count
            }
        }
    }
}
