//! The GPT-NeoX-20B byte-level BPE tokenizer used by the Mamba checkpoints, through the
//! `tokenizers` crate.

use std::path::Path;

use crate::MambaError;

/// A `tokenizer.json` tokenizer with the GPT-NeoX end-of-sequence token.
pub struct MambaTokenizer {
    inner: tokenizers::Tokenizer,
    eos_id: u32,
}

impl MambaTokenizer {
    /// Loads `tokenizer.json` (e.g. `../shared/data/tokenizers/gpt-neox-20b/tokenizer.json`).
    pub fn from_file(path: &Path) -> Result<Self, MambaError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| MambaError::Tokenizer(format!("{}: {e}", path.display())))?;
        let eos_id = inner.token_to_id("<|endoftext|>").ok_or_else(|| {
            MambaError::Tokenizer(format!(
                "{}: no `<|endoftext|>` token (not a GPT-NeoX tokenizer?)",
                path.display()
            ))
        })?;
        Ok(MambaTokenizer { inner, eos_id })
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, MambaError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| MambaError::Tokenizer(e.to_string()))
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, MambaError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| MambaError::Tokenizer(e.to_string()))
    }

    /// `<|endoftext|>` (0 in GPT-NeoX-20B).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
