//! `SequenceEncoder`: what a cross-encoder needs from a model (token ids + mask -> hidden
//! states), implemented for the workspace's Mamba (feature `mamba`), BERT and GPT-NeoX (feature
//! `transformers`) models. A user's own
//! encoder implements it to sit behind a [`crate::CrossEncoder`].

use burn::module::Module;
use burn::tensor::{Int, Tensor, backend::Backend};
#[cfg(feature = "mamba")]
use mamba_blocks::MambaModel;
#[cfg(feature = "mamba")]
use mamba_ssm::SelectiveScanBackend;
#[cfg(feature = "transformers")]
use transformer_baselines::{BertModel, FlashAttentionBackend, GptNeoXModel};

use crate::{Pooling, RankError};

/// A token batch on a device: ids, token types (segment ids; zeros when unused) and the
/// attention mask (1 = token, 0 = padding), all `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct TokenBatch<B: Backend> {
    /// `[batch, seq]`
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`
    pub token_type_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`
    pub attention_mask: Tensor<B, 2, Int>,
}

/// A model that turns a token batch into hidden states `[batch, seq, hidden]`.
pub trait SequenceEncoder<B: Backend>: Module<B> {
    /// Hidden states of every position (padding positions hold unspecified values).
    fn encode(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError>;
    /// Width of the hidden states.
    fn hidden_size(&self) -> usize;

    /// One vector per sequence `[batch, H]`: `pooling` over [`Self::encode`]'s hidden states.
    /// [`Pooling::Pooler`] needs an encoder with a pooler head (BERT with pooler weights);
    /// other encoders refuse it.
    fn encode_pooled(
        &self,
        batch: &TokenBatch<B>,
        pooling: Pooling,
    ) -> Result<Tensor<B, 2>, RankError> {
        if pooling == Pooling::Pooler {
            return Err(RankError::Config(
                "pooling `pooler` needs an encoder with a pooler head (a BERT checkpoint with \
                 pooler weights); this encoder has none"
                    .into(),
            ));
        }
        Ok(pooling.pool(self.encode(batch)?, &batch.attention_mask))
    }
}

/// An encoder whose input token embedding `[vocab, hidden]` can serve as a tied output
/// projection (the language-model head of [`crate::lm::CausalLm`]).
pub trait TokenEmbedding<B: Backend> {
    /// The token embedding matrix `[vocab, hidden]` (rows may exceed the tokenizer's
    /// vocabulary where the model pads it).
    fn token_embedding(&self) -> Tensor<B, 2>;
}

#[cfg(feature = "mamba")]
impl<B: Backend> TokenEmbedding<B> for MambaModel<B> {
    fn token_embedding(&self) -> Tensor<B, 2> {
        self.embeddings.weight.val()
    }
}

#[cfg(feature = "transformers")]
impl<B: Backend> TokenEmbedding<B> for GptNeoXModel<B> {
    fn token_embedding(&self) -> Tensor<B, 2> {
        self.embed_in.weight.val()
    }
}

#[cfg(feature = "mamba")]
impl<B: SelectiveScanBackend> SequenceEncoder<B> for MambaModel<B> {
    fn encode(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError> {
        Ok(self.forward(batch.input_ids.clone(), Some(batch.attention_mask.clone()))?)
    }

    fn hidden_size(&self) -> usize {
        MambaModel::hidden_size(self)
    }
}

#[cfg(feature = "transformers")]
impl<B: FlashAttentionBackend> SequenceEncoder<B> for BertModel<B> {
    fn encode(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError> {
        Ok(self
            .forward(
                batch.input_ids.clone(),
                Some(batch.token_type_ids.clone()),
                Some(batch.attention_mask.clone()),
            )?
            .last_hidden_state)
    }

    fn hidden_size(&self) -> usize {
        BertModel::hidden_size(self)
    }

    fn encode_pooled(
        &self,
        batch: &TokenBatch<B>,
        pooling: Pooling,
    ) -> Result<Tensor<B, 2>, RankError> {
        let out = self.forward(
            batch.input_ids.clone(),
            Some(batch.token_type_ids.clone()),
            Some(batch.attention_mask.clone()),
        )?;
        match (pooling, out.pooler_output) {
            (Pooling::Pooler, Some(pooled)) => Ok(pooled),
            (Pooling::Pooler, None) => Err(RankError::Config(
                "pooling `pooler` needs BERT's pooler head; this model was built without one \
                 (its checkpoint has no pooler.dense weights)"
                    .into(),
            )),
            (p, _) => Ok(p.pool(out.last_hidden_state, &batch.attention_mask)),
        }
    }
}

#[cfg(feature = "transformers")]
impl<B: FlashAttentionBackend> SequenceEncoder<B> for GptNeoXModel<B> {
    fn encode(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 3>, RankError> {
        Ok(self.forward(batch.input_ids.clone(), Some(batch.attention_mask.clone()))?)
    }

    fn hidden_size(&self) -> usize {
        GptNeoXModel::hidden_size(self)
    }
}
