//! `Reranker`: tokenizer + cross-encoder + batching. Scores (query, document) pairs, sorts
//! candidates, and reranks a whole first-stage run into a new TREC run.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use ir_metrics::Run;

use crate::{EncodedPair, PairEncoder, RankError, Scorer};

/// A scorer with its tokenizer, scoring in batches of `batch_size` pairs.
pub struct Reranker<'a, B: Backend, M: Scorer<B>> {
    /// The model.
    pub model: &'a M,
    /// Tokenizer + template.
    pub encoder: &'a PairEncoder,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Where tensors go.
    pub device: B::Device,
}

impl<B: Backend, M: Scorer<B>> Reranker<'_, B, M> {
    /// Relevance scores (logits) of `docs` for `query`, in input order.
    pub fn score(&self, query: &str, docs: &[&str]) -> Result<Vec<f32>, RankError> {
        let pairs: Vec<(&str, &str)> = docs.iter().map(|d| (query, *d)).collect();
        self.score_pairs(&pairs)
    }

    /// Scores arbitrary pairs, batch by batch. Pairs are grouped by length inside each
    /// call (sorted by token count) so that batches carry little padding; the output is in
    /// input order.
    pub fn score_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>, RankError> {
        let encoded = pairs
            .iter()
            .map(|(q, d)| self.encoder.encode_pair(q, d))
            .collect::<Result<Vec<_>, _>>()?;
        self.score_encoded(&encoded, usize::MAX)
    }

    /// Scores pairs already tokenized by [`PairEncoder::encode_pair`] (a server tokenizes
    /// while the model runs). Pairs are sorted by length and scored longest first, at most
    /// `batch_size` rows per forward pass and at most `max_batch_tokens` padded tokens (rows
    /// times the longest row) per pass, but always at least one row; the output is in input
    /// order.
    pub fn score_encoded(
        &self,
        encoded: &[EncodedPair],
        max_batch_tokens: usize,
    ) -> Result<Vec<f32>, RankError> {
        if self.batch_size == 0 || max_batch_tokens == 0 {
            return Err(RankError::Config(
                "batch_size and max_batch_tokens must be positive".into(),
            ));
        }
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
        let mut scores = vec![0f32; encoded.len()];
        let mut start = 0;
        while start < order.len() {
            // sorted longest first: the first row of a pass is its longest
            let longest = encoded[order[start]].ids.len().max(1);
            let rows = (max_batch_tokens / longest).clamp(1, self.batch_size);
            let chunk = &order[start..(start + rows).min(order.len())];
            start += chunk.len();
            let rows: Vec<_> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            let batch = self.encoder.pad(&rows).to_tensors::<B>(&self.device);
            let s: Vec<f32> = self
                .model
                .score(&batch)?
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| RankError::Input(format!("{e:?}")))?;
            for (&i, v) in chunk.iter().zip(s) {
                scores[i] = v;
            }
        }
        Ok(scores)
    }

    /// `(index, score)` sorted by decreasing score (ties by index).
    pub fn rerank(&self, query: &str, docs: &[&str]) -> Result<Vec<(usize, f32)>, RankError> {
        let s = self.score(query, docs)?;
        let mut ranked: Vec<(usize, f32)> = s.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(ranked)
    }

    /// Reranks the top `depth` documents of every query of `run` that has a text in
    /// `queries`; `doc_text` gives a document's text (a missing document is an error naming
    /// it). Returns a run named `name` with the model's scores.
    ///
    /// ```
    /// # #[cfg(all(feature = "transformers", feature = "mamba"))] {
    /// use std::collections::HashMap;
    /// use burn::backend::NdArray;
    /// use ir_metrics::Run;
    /// use rank_heads::{AutoCrossEncoder, Reranker};
    ///
    /// # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf/bert1");
    /// let ce = AutoCrossEncoder::<NdArray>::from_pretrained(dir, &Default::default(), &Default::default())?;
    /// let reranker = Reranker::<NdArray, _> {
    ///     model: &ce.model,
    ///     encoder: &ce.pair_encoder,
    ///     batch_size: 16,
    ///     device: Default::default(),
    /// };
    /// let first_stage = Run::from_str_named("q1 Q0 d1 1 9.5 bm25\nq1 Q0 d2 2 9.1 bm25\n", "bm25")
    ///     .map_err(|e| rank_heads::RankError::Input(e.to_string()))?;
    /// let queries = HashMap::from([("q1".to_string(), "capital of france".to_string())]);
    /// let docs = HashMap::from([
    ///     ("d1", "Water boils at one hundred degrees."),
    ///     ("d2", "Paris is the capital of France."),
    /// ]);
    /// let text = |id: &str| docs.get(id).map(|t| t.to_string());
    /// let run = reranker.rerank_run(&first_stage, &queries, &text, 100, "bert1", |_, _| {})?;
    /// assert_eq!(run.queries()[0].ranked().len(), 2);
    /// # }
    /// # Ok::<(), rank_heads::RankError>(())
    /// ```
    pub fn rerank_run(
        &self,
        run: &Run,
        queries: &HashMap<String, String>,
        doc_text: &dyn Fn(&str) -> Option<String>,
        depth: usize,
        name: &str,
        progress: impl FnMut(usize, usize),
    ) -> Result<Run, RankError> {
        rerank_run_with(
            |q, docs| self.score(q, docs),
            run,
            queries,
            doc_text,
            depth,
            name,
            progress,
        )
    }
}

/// The reranking loop shared by the cross-encoder and the bi-encoder: `score(query, docs)`
/// scores each query's top `depth` documents of `run` (queries without a text in `queries`
/// are skipped; a document without a text is an error naming it).
pub(crate) fn rerank_run_with(
    mut score: impl FnMut(&str, &[&str]) -> Result<Vec<f32>, RankError>,
    run: &Run,
    queries: &HashMap<String, String>,
    doc_text: &dyn Fn(&str) -> Option<String>,
    depth: usize,
    name: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<Run, RankError> {
    let mut out = Run::new(name);
    let total = run.queries().len();
    for (qi, qrun) in run.queries().iter().enumerate() {
        let Some(query) = queries.get(qrun.qid()) else {
            continue;
        };
        let ranked = qrun.ranked();
        let top: Vec<&str> = ranked.iter().take(depth).map(|(d, _)| *d).collect();
        let texts = top
            .iter()
            .map(|d| {
                doc_text(d).ok_or_else(|| {
                    RankError::Input(format!(
                        "run {}: document `{d}` (query {}) has no text in the collection",
                        run.name(),
                        qrun.qid()
                    ))
                })
            })
            .collect::<Result<Vec<String>, _>>()?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let scores = score(query, &refs)?;
        for (d, s) in top.iter().zip(scores) {
            out.push(qrun.qid(), d, s as f64)
                .map_err(|e| RankError::Input(e.to_string()))?;
        }
        progress(qi + 1, total);
    }
    Ok(out)
}
