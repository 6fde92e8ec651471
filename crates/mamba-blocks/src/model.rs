//! `MambaModel` (embeddings, blocks, final norm) and `MambaForCausalLM` (plus the LM head).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Int, Tensor, backend::Backend};
use mamba_ssm::SelectiveScanBackend;

use crate::{MambaBlock, MambaConfig, MambaError, RmsNorm};

/// The Mamba backbone (HF `MambaModel`: `embeddings`, `layers`, `norm_f`).
#[derive(Module, Debug)]
pub struct MambaModel<B: Backend> {
    /// Token embeddings, `[padded vocab, H]`.
    pub embeddings: Embedding<B>,
    /// Residual blocks.
    pub layers: Vec<MambaBlock<B>>,
    /// Final RMSNorm.
    pub norm_f: RmsNorm<B>,
}

impl<B: Backend> MambaModel<B> {
    /// A freshly initialised backbone (embeddings ~ N(0, 0.02) as upstream).
    pub fn new(config: &MambaConfig, device: &B::Device) -> Self {
        let embeddings = EmbeddingConfig::new(config.padded_vocab_size(), config.hidden_size)
            .with_initializer(burn::nn::Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        MambaModel {
            embeddings,
            layers: (0..config.num_hidden_layers)
                .map(|_| MambaBlock::new(config, device))
                .collect(),
            norm_f: RmsNorm::new(config.hidden_size, config.layer_norm_epsilon, device),
        }
    }

    /// Width H.
    pub fn hidden_size(&self) -> usize {
        self.norm_f.weight.dims()[0]
    }
}

impl<B: SelectiveScanBackend> MambaModel<B> {
    /// Last hidden states (after `norm_f`), `[batch, L, H]`.
    ///
    /// `attention_mask` (`[batch, L]`, 1 at real tokens, 0 at padding) makes padded positions
    /// exact no-ops, so real positions do not depend on the padding (left or right); without
    /// it every position is a real token. Ids out of the vocabulary, a mask of another shape
    /// or with values other than 0/1 are errors ([`MambaError::Input`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, MambaError> {
        let vocab = self.embeddings.weight.dims()[0];
        let padded = model_io::check_token_batch(&input_ids, attention_mask.as_ref(), vocab)
            .map_err(MambaError::Input)?;
        // An all-ones mask changes nothing: skip its multiplications (and keep softplus and the
        // delta bias inside the scan kernel).
        let attention_mask = attention_mask.filter(|_| padded);
        Ok(self.forward_unchecked(input_ids, attention_mask))
    }

    /// [`Self::forward`] without the input checks (no device sync); out-of-range ids are
    /// undefined behaviour of the backend (a panic on NdArray).
    pub fn forward_unchecked(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let mask = attention_mask.map(|m| m.float());
        let mut h = self.embeddings.forward(input_ids);
        for layer in &self.layers {
            h = layer.forward(h, mask.as_ref());
        }
        self.norm_f.forward(h)
    }
}

/// Mamba with a language-model head (HF `MambaForCausalLM`: `backbone`, `lm_head`).
#[derive(Module, Debug)]
pub struct MambaForCausalLM<B: Backend> {
    /// The backbone.
    pub backbone: MambaModel<B>,
    /// Untied head `[H] -> [vocab]`; `None` when tied to the embeddings.
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> MambaForCausalLM<B> {
    /// A freshly initialised model.
    pub fn new(config: &MambaConfig, device: &B::Device) -> Self {
        MambaForCausalLM {
            backbone: MambaModel::new(config, device),
            lm_head: (!config.tie_word_embeddings).then(|| {
                LinearConfig::new(config.hidden_size, config.padded_vocab_size())
                    .with_bias(false)
                    .init(device)
            }),
        }
    }
}

impl<B: SelectiveScanBackend> MambaForCausalLM<B> {
    /// Logits `[batch, L, vocab]` from the last hidden states (inputs checked as in
    /// [`MambaModel::forward`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>, MambaError> {
        let h = self.backbone.forward(input_ids, attention_mask)?;
        Ok(self.logits(h))
    }

    /// The LM head applied to hidden states `[batch, L, H]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let w = self.backbone.embeddings.weight.val(); // [V, H]
                hidden.matmul(w.transpose().unsqueeze_dim(0))
            }
        }
    }
}
