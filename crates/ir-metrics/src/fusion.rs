//! Run fusion: reciprocal rank fusion, CombSUM and CombMNZ.
//!
//! Ranks inside each run follow trec_eval's order (score descending, docid descending).
//! Normalisations follow ranx: min-max `(s - min) / max(max - min, 1e-9)` and z-score
//! `(s - mean) / max(std, 1e-9)` with the population standard deviation, per query.
//! Queries are the union of the runs' queries; a document missing from a run contributes
//! nothing from it.

use crate::error::{Error, Result};
use crate::run::Run;
use rustc_hash::FxHashMap;

/// Per-query score normalisation applied before CombSUM / CombMNZ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Raw scores.
    None,
    /// Min-max to [0, 1].
    MinMax,
    /// Zero mean, unit variance.
    ZScore,
}

impl std::str::FromStr for Normalization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Normalization::None),
            "min-max" | "minmax" => Ok(Normalization::MinMax),
            "z-score" | "zscore" | "zmuv" => Ok(Normalization::ZScore),
            _ => Err(Error::Invalid(format!(
                "normalisation must be none, min-max or z-score, found {s:?}"
            ))),
        }
    }
}

fn normalized(scores: &[f64], norm: Normalization) -> Vec<f64> {
    match norm {
        Normalization::None => scores.to_vec(),
        Normalization::MinMax => {
            let min = scores.iter().copied().fold(f64::INFINITY, f64::min);
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let den = (max - min).max(1e-9);
            scores.iter().map(|s| (s - min) / den).collect()
        }
        Normalization::ZScore => {
            let n = scores.len() as f64;
            let mean = scores.iter().sum::<f64>() / n;
            let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / n;
            let den = var.sqrt().max(1e-9);
            scores.iter().map(|s| (s - mean) / den).collect()
        }
    }
}

/// Fuse by accumulating, per query, a contribution of each (run, document) computed from the
/// document's 0-based rank and its (normalised) score; `finish(sum, hits)` gives the score.
fn fuse(
    runs: &[&Run],
    name: &str,
    norm: Normalization,
    contrib: impl Fn(usize, f64) -> f64,
    finish: impl Fn(f64, usize) -> f64,
) -> Result<Run> {
    if runs.is_empty() {
        return Err(Error::Invalid("fusion needs at least one run".into()));
    }
    let mut qids: Vec<&str> = Vec::new();
    let mut seen: FxHashMap<&str, ()> = FxHashMap::default();
    for r in runs {
        for q in r.queries() {
            if seen.insert(q.qid(), ()).is_none() {
                qids.push(q.qid());
            }
        }
    }
    let mut out = Vec::with_capacity(qids.len());
    for qid in qids {
        let mut acc: FxHashMap<&str, (f64, usize)> = FxHashMap::default();
        let mut order: Vec<&str> = Vec::new();
        for r in runs {
            let Some(q) = r.get(qid) else { continue };
            let ranked = q.ranked();
            let scores: Vec<f64> = ranked.iter().map(|x| x.1).collect();
            let scores = normalized(&scores, norm);
            for (rank, ((doc, _), s)) in ranked.iter().zip(scores).enumerate() {
                let e = acc.entry(doc).or_insert_with(|| {
                    order.push(doc);
                    (0.0, 0)
                });
                e.0 += contrib(rank, s);
                e.1 += 1;
            }
        }
        let mut docs = Vec::with_capacity(order.len());
        for d in order {
            let (sum, hits) = acc[d];
            let score = finish(sum, hits);
            if !score.is_finite() {
                // the inputs are finite (the run readers refuse others): the arithmetic overflowed
                return Err(Error::Invalid(format!(
                    "{name}: the fused score of query {qid:?}, document {d:?} overflows f64 \
                     (input scores near the f64 limit{}): rescale the runs' scores{}",
                    match norm {
                        Normalization::None => "",
                        _ => ", or a range that overflows the normalisation",
                    },
                    match norm {
                        Normalization::None if name != "rrf" =>
                            " or normalise them (min-max, z-score)",
                        _ => "",
                    }
                )));
            }
            docs.push((d.to_string(), score));
        }
        out.push((qid.to_string(), docs));
    }
    Run::from_queries(name, out)
}

/// Reciprocal rank fusion (Cormack et al. 2009): score = sum over runs of 1 / (k + rank),
/// rank starting at 1. The usual k is 60.
pub fn rrf(runs: &[&Run], k: f64) -> Result<Run> {
    if !(k >= 0.0 && k.is_finite()) {
        return Err(Error::Invalid(format!("RRF k must be >= 0, got {k}")));
    }
    fuse(
        runs,
        "rrf",
        Normalization::None,
        |rank, _| 1.0 / (k + rank as f64 + 1.0),
        |s, _| s,
    )
}

/// CombSUM (Fox and Shaw 1994): the sum of the normalised scores.
pub fn comb_sum(runs: &[&Run], norm: Normalization) -> Result<Run> {
    fuse(runs, "combsum", norm, |_, s| s, |s, _| s)
}

/// CombMNZ: CombSUM times the number of runs that retrieved the document.
pub fn comb_mnz(runs: &[&Run], norm: Normalization) -> Result<Run> {
    fuse(runs, "combmnz", norm, |_, s| s, |s, hits| s * hits as f64)
}
