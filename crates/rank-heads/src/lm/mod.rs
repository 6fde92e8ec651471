//! Causal language modelling over a [`SequenceEncoder`]: next-token cross-entropy through a
//! head tied to the encoder's token embedding ([`TokenEmbedding`]), so that a backbone
//! pretrained here carries all its weights in the backbone itself and loads into a
//! [`crate::CrossEncoder`] like any other checkpoint.
//!
//! [`CausalLm`] is an [`Objective`]: the [`Trainer`](crate::Trainer)
//! pretrains it with the same AdamW, schedule, clipping, checkpoints and logs as a reranker.

mod data;

use std::marker::PhantomData;

pub use data::{EOS_TOKEN, PAD_TOKEN, PackedCorpus, train_tokenizer};

use burn::module::Module;
use burn::tensor::{DType, Int, Tensor, activation, backend::Backend};

use crate::train::{Objective, TrainConfig};
use crate::{RankError, SequenceEncoder, TokenBatch, TokenEmbedding};

/// An encoder with a tied language-model head: `logits = hidden · embeddingᵀ`.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend, E> {
    /// The backbone (Mamba, GPT-NeoX, or a user's own causal encoder).
    pub encoder: E,
    marker: PhantomData<B>,
}

impl<B: Backend, E: SequenceEncoder<B> + TokenEmbedding<B>> CausalLm<B, E> {
    /// A language model over `encoder`. The encoder must be causal (position `t` sees only
    /// positions `<= t`), as Mamba and GPT-NeoX are; a bidirectional encoder would see the
    /// token it predicts.
    pub fn new(encoder: E) -> Self {
        CausalLm {
            encoder,
            marker: PhantomData,
        }
    }

    /// The backbone.
    pub fn into_encoder(self) -> E {
        self.encoder
    }

    /// Next-token logits `[batch, seq, vocab]` in fp32: position `t` predicts token `t + 1`.
    pub fn logits(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError> {
        let hidden = self.encoder.encode(batch)?;
        let [b, l, h] = hidden.dims();
        let emb = self.encoder.token_embedding();
        let vocab = emb.dims()[0];
        let logits = hidden.reshape([b * l, h]).matmul(emb.transpose());
        Ok(f32_of(logits).reshape([b, l, vocab]))
    }

    /// The summed next-token cross-entropy (nats) of `batch` and the number of predicted
    /// tokens: every position `t < seq - 1` whose token and next token are both real
    /// (attention mask 1) predicts token `t + 1`.
    pub fn loss_sum(&self, batch: &TokenBatch<B>) -> Result<(Tensor<B, 1>, usize), RankError> {
        let [b, l] = batch.input_ids.dims();
        if l < 2 {
            return Err(RankError::Input(format!(
                "a language-model batch needs sequences of at least 2 tokens, got {l}"
            )));
        }
        let hidden = self.encoder.encode(batch)?;
        let h = hidden.dims()[2];
        let n = b * (l - 1);
        let inputs = hidden.narrow(1, 0, l - 1).reshape([n, h]);
        let logits = f32_of(inputs.matmul(self.encoder.token_embedding().transpose()));
        let logp = activation::log_softmax(logits, 1);
        let targets: Tensor<B, 2, Int> =
            batch.input_ids.clone().narrow(1, 1, l - 1).reshape([n, 1]);
        let picked = logp.gather(1, targets).reshape([n]);
        let mask = batch.attention_mask.clone();
        let keep = (mask.clone().narrow(1, 0, l - 1) * mask.narrow(1, 1, l - 1)).reshape([n]);
        let count = keep.clone().sum().into_scalar();
        let count: i64 = burn::tensor::ElementConversion::elem(count);
        let sum = (picked * keep.float()).sum().neg();
        Ok((sum, count.max(0) as usize))
    }

    /// The mean next-token cross-entropy (nats per predicted token) of `batch`.
    pub fn loss(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 1>, RankError> {
        let (sum, count) = self.loss_sum(batch)?;
        if count == 0 {
            return Err(RankError::Input(
                "a language-model batch without any pair of adjacent real tokens".into(),
            ));
        }
        Ok(sum.div_scalar(count as f64))
    }
}

fn f32_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

impl<B: Backend, E: SequenceEncoder<B> + TokenEmbedding<B>> Objective<B> for CausalLm<B, E> {
    fn objective(
        &self,
        batch: &TokenBatch<B>,
        _cfg: &TrainConfig,
    ) -> Result<Tensor<B, 1>, RankError> {
        self.loss(batch)
    }
}
