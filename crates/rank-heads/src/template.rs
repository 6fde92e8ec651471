//! Turning (query, document) pairs into token batches, with truncation that cuts the document
//! only: never the query, the special tokens or the EOS.
//!
//! - Encoder style (BERT, MiniLM): the tokenizer's own pair post-processor, i.e.
//!   `[CLS] query [SEP] document [SEP]` with token types 0 for the query part and 1 for the
//!   document part.
//! - Decoder style (GPT-NeoX, Mamba), the RankMamba paper's template: the text
//!   `Document: {doc}\n\nQuery: {query}` (document first) followed by the EOS token; the
//!   hidden state at the EOS is the pair's representation (last-token pooling).

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::{RankError, TokenBatch};

/// The paper's decoder / Mamba template.
pub const PAPER_DECODER_TEMPLATE: &str = "Document: {doc}\n\nQuery: {query}";

/// The query-first order of [`PAPER_DECODER_TEMPLATE`] (the paper's ablation).
pub const QUERY_FIRST_TEMPLATE: &str = "Query: {query}\n\nDocument: {doc}";

/// How pairs are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "style")]
pub enum TemplateStyle {
    /// `[CLS] q [SEP] d [SEP]` from the tokenizer's post-processor.
    Encoder,
    /// A text template with `{doc}` and `{query}` (each exactly once), then EOS.
    Decoder {
        /// e.g. [`PAPER_DECODER_TEMPLATE`].
        template: String,
        /// The EOS token id (0 for GPT-NeoX-20B's `<|endoftext|>`).
        eos_id: u32,
    },
}

/// A tokenized pair (before padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token types (0 query / template, 1 document in encoder style; all 0 in decoder style).
    pub type_ids: Vec<u32>,
    /// Whether the document was cut.
    pub truncated: bool,
}

/// A padded batch, row-major `[batch, seq]`, host side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Rows.
    pub batch: usize,
    /// Columns (the longest pair).
    pub seq_len: usize,
    /// Token ids (pad id at padding).
    pub input_ids: Vec<i64>,
    /// Token types (0 at padding).
    pub token_type_ids: Vec<i64>,
    /// 1 = token, 0 = padding.
    pub attention_mask: Vec<i64>,
}

impl EncodedBatch {
    /// The batch as tensors on `device`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> TokenBatch<B> {
        let t = |v: &Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(
                TensorData::new(v.clone(), [self.batch, self.seq_len]),
                device,
            )
        };
        TokenBatch {
            input_ids: t(&self.input_ids),
            token_type_ids: t(&self.token_type_ids),
            attention_mask: t(&self.attention_mask),
        }
    }
}

/// Which side padding goes on (the models pool with the mask, so both are exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PaddingSide {
    /// After the tokens.
    #[default]
    Right,
    /// Before the tokens.
    Left,
}

/// What an encoder-style pair loses when it is longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PairTruncation {
    /// Only the document is cut; a query that does not fit is an error (the reranking
    /// default: the query is what the pair is scored against).
    #[default]
    DocumentOnly,
    /// `transformers`' `truncation="longest_first"`: a token at a time from the longer of the
    /// two texts, so a long query is cut too. Tokenizes exactly as
    /// `tokenizer(queries, docs, truncation=True, max_length=N)` does, for checkpoints
    /// trained that way.
    LongestFirst,
}

/// The one (query, document) pair encoder: a tokenizer plus a template, a length limit and a
/// padding side. Encoder style reproduces `transformers`' pair tokenization (`[CLS] q [SEP] d
/// [SEP]`, token types 0 then 1; with [`PairTruncation::LongestFirst`] token for token);
/// decoder style lays the pair out with a text template and EOS.
#[derive(Clone)]
pub struct PairEncoder {
    tokenizer: Tokenizer,
    style: TemplateStyle,
    max_length: usize,
    pad_id: u32,
    padding: PaddingSide,
    pad_multiple: usize,
    truncation: PairTruncation,
}

impl PairEncoder {
    /// Reads `tokenizer.json` and checks the template. `max_length` counts every token,
    /// special ones included.
    pub fn from_file(
        path: &Path,
        style: TemplateStyle,
        max_length: usize,
        padding: PaddingSide,
    ) -> Result<Self, RankError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| RankError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(tokenizer, style, max_length, padding)
    }

    /// Wraps a tokenizer (its own padding and truncation settings are replaced, as
    /// `transformers` replaces them on every call). The pad id is the file's padding token,
    /// else `[PAD]`, `<pad>`, `<|padding|>` or `<|endoftext|>`, else 0 (padding is masked).
    pub fn new(
        mut tokenizer: Tokenizer,
        style: TemplateStyle,
        max_length: usize,
        padding: PaddingSide,
    ) -> Result<Self, RankError> {
        let file_pad = tokenizer.get_padding().map(|p| p.pad_id);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| RankError::Tokenizer(e.to_string()))?;
        if let TemplateStyle::Decoder { template, .. } = &style {
            for key in ["{doc}", "{query}"] {
                if template.matches(key).count() != 1 {
                    return Err(RankError::Config(format!(
                        "template {template:?} must contain {key} exactly once"
                    )));
                }
            }
        }
        let pad_id = file_pad
            .or_else(|| {
                ["[PAD]", "<pad>", "<|padding|>", "<|endoftext|>"]
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
            })
            .unwrap_or(0);
        if max_length < 4 {
            return Err(RankError::Config(format!(
                "max_length {max_length} is too small"
            )));
        }
        Ok(PairEncoder {
            tokenizer,
            style,
            max_length,
            pad_id,
            padding,
            pad_multiple: 1,
            truncation: PairTruncation::DocumentOnly,
        })
    }

    /// Sets how an over-long encoder-style pair is cut. Decoder style cuts the document only,
    /// and asking it for anything else is an error.
    pub fn with_truncation(mut self, truncation: PairTruncation) -> Result<Self, RankError> {
        if truncation != PairTruncation::DocumentOnly
            && matches!(self.style, TemplateStyle::Decoder { .. })
        {
            return Err(RankError::Config(format!(
                "{truncation:?} truncation needs the encoder style: a decoder template cuts \
                 the document only"
            )));
        }
        self.truncation = truncation;
        Ok(self)
    }

    /// How over-long pairs are cut.
    pub fn truncation(&self) -> PairTruncation {
        self.truncation
    }

    /// Pads every batch to a multiple of `multiple` tokens (capped at the length limit), so
    /// that a batch's width takes few distinct values. JIT-compiling GPU backends (Burn's
    /// CUDA / wgpu with fusion and autotune) compile and tune kernels per shape; with widths
    /// padded only to the longest pair, nearly every batch is a new shape. 1 (the default)
    /// pads to the longest pair.
    pub fn with_pad_multiple(mut self, multiple: usize) -> Self {
        self.pad_multiple = multiple.max(1);
        self
    }

    /// The length limit.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The template style.
    pub fn style(&self) -> &TemplateStyle {
        &self.style
    }

    /// Tokenizes one pair, cutting the document (only) to fit `max_length`.
    pub fn encode_pair(&self, query: &str, doc: &str) -> Result<EncodedPair, RankError> {
        match &self.style {
            TemplateStyle::Encoder => self.encode_encoder(query, doc),
            TemplateStyle::Decoder { template, eos_id } => {
                self.encode_decoder(template, *eos_id, query, doc)
            }
        }
    }

    /// Tokenizes one text alone, as a sentence-embedding model reads it: encoder style,
    /// `[CLS] text [SEP]` cut to `max_length`; decoder style, the text then EOS, cut to
    /// `max_length` with the EOS kept.
    pub fn encode_text(&self, text: &str) -> Result<EncodedPair, RankError> {
        match &self.style {
            TemplateStyle::Encoder => {
                let mut tok = self.tokenizer.clone();
                tok.with_truncation(Some(TruncationParams {
                    direction: TruncationDirection::Right,
                    max_length: self.max_length,
                    strategy: TruncationStrategy::LongestFirst,
                    stride: 0,
                }))
                .map_err(|e| RankError::Tokenizer(e.to_string()))?;
                let enc = tok
                    .encode(text, true)
                    .map_err(|e| RankError::Tokenizer(e.to_string()))?;
                let truncated = !enc.get_overflowing().is_empty();
                Ok(EncodedPair {
                    ids: enc.get_ids().to_vec(),
                    type_ids: enc.get_type_ids().to_vec(),
                    truncated,
                })
            }
            TemplateStyle::Decoder { eos_id, .. } => {
                let enc = self
                    .tokenizer
                    .encode(text, false)
                    .map_err(|e| RankError::Tokenizer(e.to_string()))?;
                let mut ids = enc.get_ids().to_vec();
                let truncated = ids.len() + 1 > self.max_length;
                ids.truncate(self.max_length - 1);
                ids.push(*eos_id);
                Ok(EncodedPair {
                    type_ids: vec![0; ids.len()],
                    ids,
                    truncated,
                })
            }
        }
    }

    fn encode_encoder(&self, query: &str, doc: &str) -> Result<EncodedPair, RankError> {
        let full = self
            .tokenizer
            .encode((query, doc), true)
            .map_err(|e| RankError::Tokenizer(e.to_string()))?;
        if full.get_ids().len() <= self.max_length {
            return Ok(EncodedPair {
                ids: full.get_ids().to_vec(),
                type_ids: full.get_type_ids().to_vec(),
                truncated: false,
            });
        }
        let mut tok = self.tokenizer.clone();
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: self.max_length,
            strategy: match self.truncation {
                PairTruncation::DocumentOnly => TruncationStrategy::OnlySecond,
                PairTruncation::LongestFirst => TruncationStrategy::LongestFirst,
            },
            stride: 0,
        }))
        .map_err(|e| RankError::Tokenizer(e.to_string()))?;
        let enc = tok.encode((query, doc), true).map_err(|e| {
            RankError::Input(format!(
                "the query alone does not fit in {} tokens ({e}): {query:?}",
                self.max_length
            ))
        })?;
        Ok(EncodedPair {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            truncated: true,
        })
    }

    fn encode_decoder(
        &self,
        template: &str,
        eos: u32,
        query: &str,
        doc: &str,
    ) -> Result<EncodedPair, RankError> {
        // Build the text piece by piece, remembering the document's byte span (a document that
        // itself contains "{query}" must not be substituted).
        let (mut text, mut span) = (String::new(), (0, 0));
        let mut rest = template;
        while !rest.is_empty() {
            let next_doc = rest.find("{doc}");
            let next_query = rest.find("{query}");
            match (next_doc, next_query) {
                (Some(d), q) if q.is_none_or(|q| d < q) => {
                    text.push_str(&rest[..d]);
                    span.0 = text.len();
                    text.push_str(doc);
                    span.1 = text.len();
                    rest = &rest[d + 5..];
                }
                (_, Some(q)) => {
                    text.push_str(&rest[..q]);
                    text.push_str(query);
                    rest = &rest[q + 7..];
                }
                _ => {
                    text.push_str(rest);
                    rest = "";
                }
            }
        }
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| RankError::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids();
        if ids.len() < self.max_length {
            let mut ids = ids.to_vec();
            ids.push(eos);
            let n = ids.len();
            return Ok(EncodedPair {
                ids,
                type_ids: vec![0; n],
                truncated: false,
            });
        }
        let offsets = enc.get_offsets();
        let (mut before, mut inside, mut after) = (Vec::new(), Vec::new(), Vec::new());
        for (&id, &(s, e)) in ids.iter().zip(offsets) {
            if e <= span.0 {
                before.push(id);
            } else if s >= span.1 {
                after.push(id);
            } else {
                inside.push(id);
            }
        }
        let fixed = before.len() + after.len() + 1;
        if fixed > self.max_length {
            return Err(RankError::Input(format!(
                "the query and template alone take {fixed} tokens, more than max_length {}: {query:?}",
                self.max_length
            )));
        }
        inside.truncate(self.max_length - fixed);
        let mut out = before;
        out.extend(inside);
        out.extend(after);
        out.push(eos);
        let n = out.len();
        Ok(EncodedPair {
            ids: out,
            type_ids: vec![0; n],
            truncated: true,
        })
    }

    /// Tokenizes and pads pairs into one batch (padded to the longest pair).
    pub fn encode_batch(&self, pairs: &[(&str, &str)]) -> Result<EncodedBatch, RankError> {
        if pairs.is_empty() {
            return Err(RankError::Input("no pairs to encode".into()));
        }
        let encoded: Vec<EncodedPair> = pairs
            .iter()
            .map(|(q, d)| self.encode_pair(q, d))
            .collect::<Result<_, _>>()?;
        Ok(self.pad(&encoded))
    }

    /// One training batch of groups, each a query with its documents (by convention the
    /// positive first): the rows are the (query, document) pairs group after group, the layout
    /// the listwise losses read (consecutive groups of `group size` rows).
    pub fn encode_groups<I, Q, D>(&self, groups: I) -> Result<EncodedBatch, RankError>
    where
        I: IntoIterator<Item = (Q, D)>,
        Q: AsRef<str>,
        D: IntoIterator,
        D::Item: AsRef<str>,
    {
        let mut encoded = Vec::new();
        for (query, docs) in groups {
            for doc in docs {
                encoded.push(self.encode_pair(query.as_ref(), doc.as_ref())?);
            }
        }
        if encoded.is_empty() {
            return Err(RankError::Input("no pairs to encode".into()));
        }
        Ok(self.pad(&encoded))
    }

    /// Pads already tokenized pairs.
    pub fn pad(&self, encoded: &[EncodedPair]) -> EncodedBatch {
        let longest = encoded.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let m = self.pad_multiple;
        let seq_len = if m > 1 {
            longest
                .div_ceil(m)
                .saturating_mul(m)
                .min(self.max_length.max(longest))
        } else {
            longest
        };
        let batch = encoded.len();
        let mut out = EncodedBatch {
            batch,
            seq_len,
            input_ids: vec![self.pad_id as i64; batch * seq_len],
            token_type_ids: vec![0; batch * seq_len],
            attention_mask: vec![0; batch * seq_len],
        };
        for (row, e) in encoded.iter().enumerate() {
            let off = match self.padding {
                PaddingSide::Right => 0,
                PaddingSide::Left => seq_len - e.ids.len(),
            };
            for (j, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                let k = row * seq_len + off + j;
                out.input_ids[k] = id as i64;
                out.token_type_ids[k] = ty as i64;
                out.attention_mask[k] = 1;
            }
        }
        out
    }
}
