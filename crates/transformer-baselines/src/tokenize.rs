//! Query/document pair tokenization through HF `tokenizers`, as `transformers`' fast tokenizer
//! does it for `tokenizer(queries, documents, padding="longest", truncation="longest_first",
//! max_length=N)`: special tokens from the file's post-processor (`[CLS] q [SEP] d [SEP]` with
//! token types 0 then 1 for WordPiece BERT tokenizers), padding to the longest pair.
//!
//! The padding and truncation stored in a `tokenizer.json` (all-MiniLM-L6-v2 ships a fixed
//! padding to 128) are replaced, as `transformers` replaces them on every call.

use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use model_io::HubOptions;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, PostProcessor, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::TransformerError;

/// Which side padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingSide {
    /// After the tokens (encoders).
    #[default]
    Right,
    /// Before the tokens (decoders read the last position).
    Left,
}

/// A tokenizer for (query, document) pairs with a length limit.
#[derive(Clone)]
pub struct PairTokenizer {
    tokenizer: Tokenizer,
    path: PathBuf,
}

/// A tokenized batch: row-major `[batch, seq]` ids, token types and mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub batch: usize,
    pub seq_len: usize,
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

/// An [`EncodedBatch`] on a device.
#[derive(Debug, Clone)]
pub struct BatchTensors<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub token_type_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2, Int>,
}

impl PairTokenizer {
    /// Reads a `tokenizer.json`; pairs are truncated longest-first to `max_length` tokens
    /// (special tokens included) and padded to the longest pair on `side`. The pad token is the
    /// file's padding token, else `[PAD]`, `<pad>` or `<|padding|>`.
    pub fn from_file(
        path: &Path,
        max_length: usize,
        side: PaddingSide,
    ) -> Result<Self, TransformerError> {
        let tok_err = |message: String| TransformerError::Tokenizer {
            path: path.into(),
            message,
        };
        if !path.is_file() {
            return Err(tok_err("file not found".into()));
        }
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| tok_err(e.to_string()))?;
        let (pad_id, pad_type_id, pad_token) = match tokenizer.get_padding() {
            Some(p) => (p.pad_id, p.pad_type_id, p.pad_token.clone()),
            None => ["[PAD]", "<pad>", "<|padding|>"]
                .iter()
                .find_map(|t| tokenizer.token_to_id(t).map(|id| (id, 0, t.to_string())))
                .ok_or_else(|| tok_err("no padding token ([PAD], <pad>, <|padding|>)".into()))?,
        };
        let special = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        if max_length <= special {
            return Err(tok_err(format!(
                "max_length {max_length} leaves no room next to {special} special tokens"
            )));
        }
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: match side {
                PaddingSide::Right => PaddingDirection::Right,
                PaddingSide::Left => PaddingDirection::Left,
            },
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        Ok(Self {
            tokenizer,
            path: path.into(),
        })
    }

    /// Reads `tokenizer.json` from a local directory or a HF hub id.
    pub fn from_pretrained(
        spec: &str,
        hub: &HubOptions,
        max_length: usize,
        side: PaddingSide,
    ) -> Result<Self, TransformerError> {
        let dir = model_io::resolve_model(spec, &["tokenizer.json"], hub)?;
        Self::from_file(&dir.join("tokenizer.json"), max_length, side)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes `(query, document)` pairs into one padded batch.
    pub fn encode_pairs(&self, pairs: &[(&str, &str)]) -> Result<EncodedBatch, TransformerError> {
        if pairs.is_empty() {
            return Err(TransformerError::Input("no pairs to tokenize".into()));
        }
        let inputs: Vec<(&str, &str)> = pairs.to_vec();
        let encodings =
            self.tokenizer
                .encode_batch(inputs, true)
                .map_err(|e| TransformerError::Tokenizer {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
        let seq_len = encodings.first().map_or(0, |e| e.len());
        let mut out = EncodedBatch {
            batch: encodings.len(),
            seq_len,
            input_ids: Vec::with_capacity(encodings.len() * seq_len),
            token_type_ids: Vec::with_capacity(encodings.len() * seq_len),
            attention_mask: Vec::with_capacity(encodings.len() * seq_len),
        };
        for e in &encodings {
            debug_assert_eq!(e.len(), seq_len, "BatchLongest pads every row");
            out.input_ids.extend(e.get_ids().iter().map(|&v| v as i64));
            out.token_type_ids
                .extend(e.get_type_ids().iter().map(|&v| v as i64));
            out.attention_mask
                .extend(e.get_attention_mask().iter().map(|&v| v as i64));
        }
        Ok(out)
    }
}

impl EncodedBatch {
    /// The batch as `[batch, seq]` int tensors on `device`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> BatchTensors<B> {
        let shape = [self.batch, self.seq_len];
        let t = |v: &Vec<i64>| Tensor::from_data(TensorData::new(v.clone(), shape), device);
        BatchTensors {
            input_ids: t(&self.input_ids),
            token_type_ids: t(&self.token_type_ids),
            attention_mask: t(&self.attention_mask),
        }
    }

    /// Row `i`'s ids (padding included).
    pub fn row_ids(&self, i: usize) -> &[i64] {
        &self.input_ids[i * self.seq_len..(i + 1) * self.seq_len]
    }
}
