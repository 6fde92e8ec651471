//! `CrossEncoder`: an encoder, dropout and `Linear(H, 1)` over the pooled vector; one fp32
//! relevance logit per (query, document) pair.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{DType, Tensor, activation, backend::Backend};

use crate::{Pooling, RankError, SequenceEncoder, TokenBatch};

/// Encoder + pooling + dropout + scoring head (`classifier`, HF's name for the head of
/// `*ForSequenceClassification` with one label).
#[derive(Module, Debug)]
pub struct CrossEncoder<B: Backend, E> {
    /// The sequence encoder (Mamba, BERT, GPT-NeoX, or a user's own).
    pub encoder: E,
    /// Dropout on the pooled vector (active only under autodiff training).
    pub dropout: Dropout,
    /// `[H] -> [1]`.
    pub classifier: Linear<B>,
    /// How the hidden states are pooled.
    pub pooling: Pooling,
}

impl<B: Backend, E: SequenceEncoder<B>> CrossEncoder<B, E> {
    /// A head over `encoder` (classifier initialised as burn's Linear default).
    pub fn new(encoder: E, pooling: Pooling, dropout: f64, device: &B::Device) -> Self {
        Self::with_head_bias(encoder, pooling, dropout, true, device)
    }

    /// [`Self::new`] with or without a bias in the scoring head (HF's
    /// `GPTNeoXForSequenceClassification` has none).
    pub fn with_head_bias(
        encoder: E,
        pooling: Pooling,
        dropout: f64,
        bias: bool,
        device: &B::Device,
    ) -> Self {
        let h = encoder.hidden_size();
        CrossEncoder {
            encoder,
            dropout: DropoutConfig::new(dropout).init(),
            classifier: LinearConfig::new(h, 1).with_bias(bias).init(device),
            pooling,
        }
    }

    /// Relevance logits `[batch]` (fp32 whatever the model's dtype).
    ///
    /// Scoring pairs with a checkpoint (here a tiny `BertForSequenceClassification` of this
    /// crate's tests; a Hub id such as `cross-encoder/ms-marco-MiniLM-L-6-v2` with the `hub`
    /// feature):
    ///
    /// ```
    /// # #[cfg(all(feature = "transformers", feature = "mamba"))] {
    /// use burn::backend::NdArray;
    /// use rank_heads::AutoCrossEncoder;
    ///
    /// let dev = Default::default();
    /// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/bert1");
    /// let ce = AutoCrossEncoder::<NdArray>::from_pretrained(dir, &Default::default(), &dev)?;
    /// let batch = ce.pair_encoder.encode_batch(&[
    ///     ("what is the capital of france?", "Paris is the capital of France."),
    ///     ("what is the capital of france?", "Water boils at one hundred degrees."),
    /// ])?;
    /// let logits = ce.model.forward(&batch.to_tensors(&dev))?;
    /// assert_eq!(logits.dims(), [2]);
    /// # }
    /// # Ok::<(), rank_heads::RankError>(())
    /// ```
    pub fn forward(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 1>, RankError> {
        let pooled = self.encoder.encode_pooled(batch, self.pooling)?;
        let pooled = self.dropout.forward(pooled);
        let logits = self.classifier.forward(pooled);
        let [n, _] = logits.dims();
        let logits = logits.reshape([n]);
        Ok(if logits.dtype() == DType::F32 {
            logits
        } else {
            logits.cast(DType::F32)
        })
    }

    /// `sigmoid(forward)`: scores in (0, 1).
    pub fn forward_probabilities(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 1>, RankError> {
        Ok(activation::sigmoid(self.forward(batch)?))
    }
}
