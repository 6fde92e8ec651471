//! [`BiEncoder`]: a sentence-embedding model scoring a (query, document) pair by the cosine
//! of the two texts' pooled embeddings, each text encoded on its own. all-MiniLM-L6-v2 was
//! trained this way (mean pooling, cosine): scored so, it is the zero-shot reference row of a
//! reranking table, what the pretrained model does before any cross-encoder fine-tuning.

use std::collections::HashMap;
use std::marker::PhantomData;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ir_metrics::Run;

use crate::rerank::rerank_run_with;
use crate::{PairEncoder, Pooling, RankError, SequenceEncoder, TokenBatch};

/// An encoder and a pooling, giving unit-length text embeddings.
#[derive(Debug, Clone)]
pub struct BiEncoder<B: Backend, E: SequenceEncoder<B>> {
    /// The text encoder.
    pub encoder: E,
    /// How hidden states become one vector (all-MiniLM-L6-v2: [`Pooling::Mean`]).
    pub pooling: Pooling,
    _backend: PhantomData<B>,
}

impl<B: Backend, E: SequenceEncoder<B>> BiEncoder<B, E> {
    /// Wraps `encoder`.
    pub fn new(encoder: E, pooling: Pooling) -> Self {
        Self {
            encoder,
            pooling,
            _backend: PhantomData,
        }
    }

    /// L2-normalised embeddings `[batch, hidden]` of a batch of single texts.
    pub fn embed(&self, batch: &TokenBatch<B>) -> Result<Tensor<B, 2>, RankError> {
        let pooled = self.encoder.encode_pooled(batch, self.pooling)?;
        let norm = pooled
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        Ok(pooled / norm)
    }

    /// Unit embeddings of `texts`, `batch_size` at a time (sorted by length inside the call,
    /// returned in input order), as host rows.
    pub fn embed_texts(
        &self,
        texts: &[&str],
        tokenizer: &PairEncoder,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Vec<Vec<f32>>, RankError> {
        if batch_size == 0 {
            return Err(RankError::Config("batch_size must be positive".into()));
        }
        let encoded = texts
            .iter()
            .map(|t| tokenizer.encode_text(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch_size) {
            let rows: Vec<_> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            let batch = tokenizer.pad(&rows).to_tensors::<B>(device);
            let e = self.embed(&batch)?;
            let [n, h] = e.dims();
            let v: Vec<f32> = e
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| RankError::Input(format!("{e:?}")))?;
            for (r, &i) in chunk.iter().enumerate().take(n) {
                out[i] = v[r * h..(r + 1) * h].to_vec();
            }
        }
        Ok(out)
    }

    /// Cosine similarities of `docs` to `query`, in input order.
    pub fn score(
        &self,
        query: &str,
        docs: &[&str],
        tokenizer: &PairEncoder,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Vec<f32>, RankError> {
        let q = self.embed_texts(&[query], tokenizer, 1, device)?;
        let d = self.embed_texts(docs, tokenizer, batch_size, device)?;
        Ok(d.iter()
            .map(|d| d.iter().zip(&q[0]).map(|(a, b)| a * b).sum())
            .collect())
    }

    /// Reranks the top `depth` documents of every query of `run` that has a text in
    /// `queries` by cosine similarity, as [`crate::Reranker::rerank_run`] does with a
    /// cross-encoder's scores.
    #[allow(clippy::too_many_arguments)]
    pub fn rerank_run(
        &self,
        tokenizer: &PairEncoder,
        batch_size: usize,
        device: &B::Device,
        run: &Run,
        queries: &HashMap<String, String>,
        doc_text: &dyn Fn(&str) -> Option<String>,
        depth: usize,
        name: &str,
        progress: impl FnMut(usize, usize),
    ) -> Result<Run, RankError> {
        rerank_run_with(
            |q, docs| self.score(q, docs, tokenizer, batch_size, device),
            run,
            queries,
            doc_text,
            depth,
            name,
            progress,
        )
    }
}
