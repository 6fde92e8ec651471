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
