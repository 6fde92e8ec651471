//! Small helpers around `model-io` shared by the models: the tensor names of a safetensors file
//! (read from its header only) and the input check.

use std::collections::BTreeSet;
use std::path::Path;

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::TransformerError;

/// The tensor names in a safetensors file, read from its JSON header without loading any data
/// ([`model_io::tensor_names`]).
pub fn safetensors_names(path: &Path) -> Result<BTreeSet<String>, TransformerError> {
    Ok(model_io::tensor_names(path)?.into_iter().collect())
}

/// Checks a token batch ([`model_io::check_token_batch_with_types`]: shapes, id ranges, a 0/1
/// mask, one device read).
pub(crate) fn check_batch<B: Backend>(
    input_ids: &Tensor<B, 2, Int>,
    token_type_ids: Option<(&Tensor<B, 2, Int>, usize)>,
    attention_mask: Option<&Tensor<B, 2, Int>>,
    vocab: usize,
) -> Result<(), TransformerError> {
    model_io::check_token_batch_with_types(input_ids, token_type_ids, attention_mask, vocab)
        .map(|_| ())
        .map_err(TransformerError::Input)
}

/// `transformers`' initialisation (`initializer_range` 0.02): weights and embeddings
/// ~ N(0, 0.02), biases 0 (LayerNorms keep Burn's ones and zeros, as HF's).
pub(crate) fn hf_init() -> burn::nn::Initializer {
    burn::nn::Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
}

/// A `Linear` initialised as `transformers` does ([`hf_init`], zero bias).
pub(crate) fn hf_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &B::Device,
) -> burn::nn::Linear<B> {
    let mut l = burn::nn::LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(hf_init())
        .init(device);
    l.bias = l.bias.map(|b| b.map(|t| t.zeros_like()));
    l
}

/// An `Embedding` initialised as `transformers` does ([`hf_init`]; the padding row, if any,
/// zero).
pub(crate) fn hf_embedding<B: Backend>(
    n: usize,
    d: usize,
    padding: Option<usize>,
    device: &B::Device,
) -> burn::nn::Embedding<B> {
    let mut e = burn::nn::EmbeddingConfig::new(n, d)
        .with_initializer(hf_init())
        .init(device);
    if let Some(p) = padding.filter(|&p| p < n) {
        e.weight = e.weight.map(|w| {
            let zeros = Tensor::zeros([1, d], &w.device());
            w.slice_assign([p..p + 1, 0..d], zeros)
        });
    }
    e
}
