//! The chance baseline of a reranker: what a reranker that orders the candidates at random
//! scores. Each sample shuffles the first stage's top `depth` documents of every query (the rest
//! keep the first stage's order, as a reranker leaves them) and evaluates the result; the
//! baseline is the mean over the samples with the 2.5th and 97.5th percentiles of the samples'
//! means as its 95% band. A reranker inside that band does no better than a shuffle.

use crate::error::{Error, Result};
use crate::eval::{EvalOptions, evaluate};
use crate::measure::Measure;
use crate::qrels::Qrels;
use crate::run::Run;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The chance baseline on one measure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChanceBand {
    /// The measure (ir_measures spelling).
    pub measure: String,
    /// Mean over the samples of each sample's mean over the queries.
    pub mean: f64,
    /// 2.5th percentile of the samples' means.
    pub lo: f64,
    /// 97.5th percentile of the samples' means.
    pub hi: f64,
    /// Shuffles drawn.
    pub samples: usize,
}

/// The chance baseline of reranking the top `depth` of `run`: `samples` seeded shuffles (at
/// least 100), each evaluated with `measures` and `opts`. Queries that `run` lacks or the qrels
/// do not judge are treated as [`evaluate`] treats them.
pub fn shuffled_baseline(
    qrels: &Qrels,
    run: &Run,
    depth: usize,
    measures: &[Measure],
    opts: &EvalOptions,
    samples: usize,
    seed: u64,
) -> Result<Vec<ChanceBand>> {
    if samples < 100 {
        return Err(Error::Invalid(format!(
            "a chance band needs at least 100 shuffles, got {samples}"
        )));
    }
    if depth == 0 {
        return Err(Error::Invalid("the shuffled depth must be positive".into()));
    }
    let ranked: Vec<(&str, Vec<&str>)> = run
        .queries()
        .iter()
        .map(|q| (q.qid(), q.ranked().into_iter().map(|(d, _)| d).collect()))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); measures.len()];
    for _ in 0..samples {
        let mut shuffled = Run::new(run.name());
        for (qid, docs) in &ranked {
            let mut order = docs.clone();
            let k = depth.min(order.len());
            order[..k].shuffle(&mut rng);
            // Distinct integer scores (exact in float32) fix the new order.
            let n = order.len();
            for (i, d) in order.into_iter().enumerate() {
                shuffled.push(qid, d, (n - i) as f64)?;
            }
        }
        let e = evaluate(qrels, &shuffled, measures, opts)?;
        for (m, out) in measures.iter().zip(&mut means) {
            out.push(e.mean(m).unwrap_or(0.0));
        }
    }
    Ok(measures
        .iter()
        .zip(means)
        .map(|(m, mut v)| {
            v.sort_unstable_by(f64::total_cmp);
            let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            ChanceBand {
                measure: m.to_string(),
                mean: v.iter().sum::<f64>() / v.len() as f64,
                lo: at(0.025),
                hi: at(0.975),
                samples,
            }
        })
        .collect())
}
