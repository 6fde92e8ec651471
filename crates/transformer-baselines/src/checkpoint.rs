//! Small helpers around `model-io` shared by the models: the tensor names of a safetensors file
//! (read from its header only) and input checks.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use burn::tensor::{ElementConversion, Int, Tensor, backend::Backend};
use model_io::ModelIoError;

use crate::TransformerError;

/// The tensor names in a safetensors file, read from its JSON header without loading any data.
pub fn safetensors_names(path: &Path) -> Result<BTreeSet<String>, TransformerError> {
    let io = |source| ModelIoError::Io {
        path: path.into(),
        source,
    };
    let bad = |message: String| ModelIoError::Safetensors {
        path: path.into(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    let file_len = file.metadata().map_err(io)?.len();
    if len > file_len.saturating_sub(8) || len > 100 << 20 {
        return Err(bad(format!("header length {len} does not fit the file")).into());
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    Ok(header
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "__metadata__")
        .collect())
}

/// Checks that token ids lie in `0..limit`; `what` names the input in the error.
pub(crate) fn check_ids<B: Backend>(
    ids: &Tensor<B, 2, Int>,
    limit: usize,
    what: &str,
) -> Result<(), TransformerError> {
    let min: i64 = ids.clone().min().into_scalar().elem();
    let max: i64 = ids.clone().max().into_scalar().elem();
    if min < 0 || max as u64 >= limit as u64 {
        return Err(TransformerError::Input(format!(
            "{what} must lie in 0..{limit}, found values in {min}..={max}"
        )));
    }
    Ok(())
}

/// Checks that an optional `[batch, seq]` tensor has the shape of `input_ids`.
pub(crate) fn check_same_shape<B: Backend>(
    ids: &Tensor<B, 2, Int>,
    other: Option<&Tensor<B, 2, Int>>,
    what: &str,
) -> Result<(), TransformerError> {
    if let Some(t) = other
        && t.dims() != ids.dims()
    {
        return Err(TransformerError::Input(format!(
            "{what} has shape {:?}, input_ids has shape {:?}",
            t.dims(),
            ids.dims()
        )));
    }
    Ok(())
}

/// Checks that an attention mask holds only 0 and 1.
pub(crate) fn check_mask<B: Backend>(mask: &Tensor<B, 2, Int>) -> Result<(), TransformerError> {
    check_ids(mask, 2, "attention_mask")
}
