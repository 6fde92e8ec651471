//! Pretraining data: a byte-level BPE tokenizer trained on the corpus, and the corpus
//! tokenized, joined with an end-of-text token between documents and cut into fixed-length
//! sequences, every `k`-th sequence held out for validation.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::{RankError, TokenBatch};

/// The end-of-text token (id 0 of [`train_tokenizer`]'s vocabularies, as in GPT-NeoX-20B):
/// it separates documents in pretraining and ends a decoder cross-encoder's input.
pub const EOS_TOKEN: &str = "<|endoftext|>";
/// The padding token (id 1, as in GPT-NeoX-20B).
pub const PAD_TOKEN: &str = "<|padding|>";

/// Trains a byte-level BPE tokenizer (GPT-2 / GPT-NeoX style: byte-level pre-tokenizer,
/// no normalizer, no prefix space) of `vocab_size` ids on `docs`, with [`EOS_TOKEN`] as id 0
/// and [`PAD_TOKEN`] as id 1. Deterministic for the same documents and size.
pub fn train_tokenizer(docs: &[String], vocab_size: usize) -> Result<Tokenizer, RankError> {
    let alphabet = ByteLevel::alphabet();
    if vocab_size < alphabet.len() + 2 {
        return Err(RankError::Config(format!(
            "a byte-level vocabulary needs at least {} ids (256 bytes and 2 special tokens), got {vocab_size}",
            alphabet.len() + 2
        )));
    }
    let err = |e: tokenizers::Error| RankError::Tokenizer(e.to_string());
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(vec![
            AddedToken::from(EOS_TOKEN, true),
            AddedToken::from(PAD_TOKEN, true),
        ])
        .initial_alphabet(alphabet.into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevel::default()))
        .with_post_processor(Some(ByteLevel::new(false, true, true)));
    tokenizer.train(&mut trainer, docs.iter()).map_err(err)?;
    for (id, tok) in [(0, EOS_TOKEN), (1, PAD_TOKEN)] {
        if tokenizer.token_to_id(tok) != Some(id) {
            return Err(RankError::Tokenizer(format!(
                "the trained vocabulary put {tok} at {:?}, not {id}",
                tokenizer.token_to_id(tok)
            )));
        }
    }
    Ok(tokenizer)
}

/// A tokenized corpus cut into sequences of `seq_len` tokens: documents joined with the
/// end-of-text id between them (and after the last), the stream cut without overlap (a final
/// partial sequence is dropped). Sequence `i` is held out for validation when
/// `i % holdout_every == holdout_every - 1`.
#[derive(Debug, Clone)]
pub struct PackedCorpus {
    seq_len: usize,
    train: Vec<u32>,
    valid: Vec<u32>,
    /// Token ids the tokenizer knows (the largest id + 1).
    pub vocab_size: usize,
}

impl PackedCorpus {
    /// Tokenizes `docs` with `tokenizer` (no special tokens added inside documents) and packs
    /// them. `eos_id` separates documents.
    pub fn pack(
        tokenizer: &Tokenizer,
        docs: &[String],
        eos_id: u32,
        seq_len: usize,
        holdout_every: usize,
    ) -> Result<Self, RankError> {
        if seq_len < 2 {
            return Err(RankError::Config(format!(
                "sequences need at least 2 tokens, got --seq-len {seq_len}"
            )));
        }
        if holdout_every < 2 {
            return Err(RankError::Config(format!(
                "holding out every {holdout_every}-th sequence leaves nothing to train on (need >= 2)"
            )));
        }
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let encodings = tokenizer
            .encode_batch(refs, false)
            .map_err(|e| RankError::Tokenizer(e.to_string()))?;
        let mut stream = Vec::new();
        for e in &encodings {
            stream.extend_from_slice(e.get_ids());
            stream.push(eos_id);
        }
        let n = stream.len() / seq_len;
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for (i, seq) in stream.chunks_exact(seq_len).take(n).enumerate() {
            if i % holdout_every == holdout_every - 1 {
                valid.extend_from_slice(seq);
            } else {
                train.extend_from_slice(seq);
            }
        }
        if train.is_empty() || valid.is_empty() {
            return Err(RankError::Input(format!(
                "the corpus gives {n} sequences of {seq_len} tokens ({} tokens): too few for a training and a validation part (holding out every {holdout_every}-th)",
                stream.len()
            )));
        }
        Ok(PackedCorpus {
            seq_len,
            train,
            valid,
            vocab_size: tokenizer.get_vocab_size(true),
        })
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Training sequences.
    pub fn train_len(&self) -> usize {
        self.train.len() / self.seq_len
    }

    /// Validation sequences.
    pub fn valid_len(&self) -> usize {
        self.valid.len() / self.seq_len
    }

    /// Training tokens.
    pub fn train_tokens(&self) -> usize {
        self.train.len()
    }

    /// The training sequences of global positions `start..start + rows` of a seeded stream
    /// that visits every training sequence once per epoch, in a new order each epoch.
    pub fn train_batch<B: Backend>(
        &self,
        start: usize,
        rows: usize,
        seed: u64,
        device: &B::Device,
    ) -> TokenBatch<B> {
        let n = self.train_len();
        let mut ids = Vec::with_capacity(rows * self.seq_len);
        let mut epoch = usize::MAX;
        let mut order = Vec::new();
        for pos in start..start + rows {
            if pos / n != epoch {
                epoch = pos / n;
                order = permutation(n, seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            }
            let s = order[pos % n];
            ids.extend_from_slice(&self.train[s * self.seq_len..(s + 1) * self.seq_len]);
        }
        batch_of(&ids, rows, self.seq_len, device)
    }

    /// Validation sequences `start..start + rows` (clamped to the held-out part).
    pub fn valid_batch<B: Backend>(
        &self,
        start: usize,
        rows: usize,
        device: &B::Device,
    ) -> TokenBatch<B> {
        let end = (start + rows).min(self.valid_len());
        let ids = &self.valid[start * self.seq_len..end * self.seq_len];
        batch_of(ids, end - start, self.seq_len, device)
    }
}

fn batch_of<B: Backend>(
    ids: &[u32],
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> TokenBatch<B> {
    let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, cols]), device);
    TokenBatch {
        token_type_ids: input_ids.zeros_like(),
        attention_mask: input_ids.ones_like(),
        input_ids,
    }
}

/// A seeded Fisher-Yates permutation of `0..n` (splitmix64).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation() {
        for n in [1, 2, 17, 100] {
            let mut p = permutation(n, 5);
            p.sort();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
        assert_ne!(permutation(50, 1), permutation(50, 2));
    }
}
