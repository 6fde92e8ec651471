//! Evaluation with trec_eval's exact semantics (trec_eval 10.0; 9.0.x, as in pytrec_eval,
//! where the two agree: see docs/metrics.md for where they do not).

use crate::error::{Error, Result};
use crate::measure::{Kind, Measure};
use crate::qrels::{Qrels, QueryQrels};
use crate::run::{QueryRun, Run, trec_order};
use crate::trec_measures::{self, MIN_GEO_MEAN, Stats};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// A retrieved document that is not in the qrels (trec_eval's `RELVALUE_NONPOOL`).
pub const NONPOOL: i64 = -1;
/// A retrieved document in the qrels with a negative grade: pooled but unjudged
/// (trec_eval's `RELVALUE_UNJUDGED`).
pub const UNJUDGED: i64 = -2;

/// The strings of string-valued measures of one query: (measure index, string).
type QueryStrings = Vec<(usize, String)>;

/// Options of an evaluation (trec_eval's command-line flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// `-l`: minimum grade that counts as relevant for binary measures (default 1).
    /// nDCG always uses the grades themselves.
    pub relevance_level: i64,
    /// `-J`: drop unjudged documents from the ranking before measuring.
    pub judged_only: bool,
    /// `-c`: average over every query of the qrels; a query missing from the run scores 0.
    pub complete: bool,
    /// `-M`: look only at the first `max_docs` documents of each query (after ranking).
    pub max_docs: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            relevance_level: 1,
            judged_only: false,
            complete: false,
            max_docs: None,
        }
    }
}

/// Per-query values and their means.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The measures, in the order values are stored.
    #[serde(serialize_with = "ser_measures")]
    pub measures: Vec<Measure>,
    /// Query id -> one value per measure. Queries in byte order of their ids.
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// The summary of each measure over the evaluated queries (or over all qrels queries with
    /// `complete`), as trec_eval's `all` line: the mean, except for the counts `num_ret`,
    /// `num_rel`, `num_rel_ret`, `num_nonrel_judged_ret` (summed), `num_q` (the number of
    /// queries), `gm_map` and `gm_bpref` (geometric mean of the values floored at 0.00001).
    pub means: Vec<f64>,
    /// trec_eval's `runid`: the tag of the run's last line.
    pub run_id: String,
    /// String-valued measures (`relstring`): (measure index, query id) -> string. Their
    /// numeric values are 0.
    #[serde(skip)]
    pub strings: BTreeMap<(usize, String), String>,
}

fn ser_measures<S: serde::Serializer>(m: &[Measure], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(m.iter().map(|m| m.to_string()))
}

impl Evaluation {
    /// Value of `measure` for `qid`.
    pub fn get(&self, qid: &str, measure: &Measure) -> Option<f64> {
        let i = self.measures.iter().position(|m| m == measure)?;
        self.per_query.get(qid).map(|v| v[i])
    }

    /// Mean of `measure`.
    pub fn mean(&self, measure: &Measure) -> Option<f64> {
        let i = self.measures.iter().position(|m| m == measure)?;
        Some(self.means[i])
    }

    /// The per-query values of `measure`, in query order.
    pub fn column(&self, measure: &Measure) -> Option<Vec<(&str, f64)>> {
        let i = self.measures.iter().position(|m| m == measure)?;
        Some(
            self.per_query
                .iter()
                .map(|(q, v)| (q.as_str(), v[i]))
                .collect(),
        )
    }

    /// Number of queries averaged over.
    pub fn num_queries(&self) -> usize {
        self.per_query.len()
    }
}

/// Evaluate `run` against `qrels` on `measures`.
///
/// Queries in the run but not in the qrels are ignored; queries in the qrels but not in the
/// run are ignored too, unless `opts.complete`, where they score 0 on every measure and count
/// in the mean (trec_eval `-c`).
///
/// ```
/// use ir_metrics::{EvalOptions, Qrels, Run, evaluate, parse_measures};
///
/// let qrels = Qrels::from_str_named("q1 0 d1 2\nq1 0 d2 0\nq2 0 d4 1\n", "qrels")?;
/// let run = Run::from_str_named(
///     "q1 Q0 d2 1 9.0 bm25\nq1 Q0 d1 2 8.0 bm25\nq2 Q0 d4 1 3.0 bm25\n",
///     "run",
/// )?;
/// let mut measures = parse_measures("RR")?;
/// measures.extend(parse_measures("P@1")?);
/// let e = evaluate(&qrels, &run, &measures, &EvalOptions::default())?;
/// assert_eq!(e.per_query["q1"], vec![0.5, 0.0]); // first relevant at rank 2
/// assert_eq!(e.per_query["q2"], vec![1.0, 1.0]);
/// assert_eq!(e.means, vec![0.75, 0.5]);
/// # Ok::<(), ir_metrics::Error>(())
/// ```
pub fn evaluate(
    qrels: &Qrels,
    run: &Run,
    measures: &[Measure],
    opts: &EvalOptions,
) -> Result<Evaluation> {
    validate(measures, opts)?;
    let qids: Vec<&str> = if opts.complete {
        qrels.qids().collect()
    } else {
        let mut v: Vec<&str> = run
            .queries()
            .iter()
            .map(QueryRun::qid)
            .filter(|q| qrels.get(q).is_some())
            .collect();
        v.sort_unstable();
        v
    };
    let rows: Vec<(String, Vec<f64>, QueryStrings)> = qids
        .par_iter()
        .map(|&qid| {
            let (values, strings) = match (qrels.get(qid), run.get(qid)) {
                (Some(j), Some(r)) => evaluate_query_full(j, r, measures, opts),
                (Some(j), None) => missing_query(qid, j, measures, opts),
                _ => (vec![0.0; measures.len()], Vec::new()),
            };
            (qid.to_string(), values, strings)
        })
        .collect();
    let n = rows.len();
    let means = measures
        .iter()
        .enumerate()
        .map(|(i, m)| summarize(m, rows.iter().map(|r| r.1[i]), n, qrels, opts))
        .collect();
    let mut strings = BTreeMap::new();
    let mut per_query = BTreeMap::new();
    for (q, v, st) in rows {
        for (i, text) in st {
            strings.insert((i, q.clone()), text);
        }
        per_query.insert(q, v);
    }
    Ok(Evaluation {
        measures: measures.to_vec(),
        per_query,
        means,
        run_id: run.run_id().to_string(),
        strings,
    })
}

/// trec_eval's `all` value of `m` from the per-query values.
pub(crate) fn summarize(
    m: &Measure,
    values: impl Iterator<Item = f64>,
    n: usize,
    qrels: &Qrels,
    opts: &EvalOptions,
) -> f64 {
    if m.family().is_none() {
        return if n > 0 {
            values.fold(0.0, |a, b| a + b) / n as f64
        } else {
            0.0
        };
    }
    match m.kind {
        Kind::RunId | Kind::RelString => 0.0,
        Kind::NumQ => n as f64,
        // with -c, trec_eval counts the grades > 0 of the whole qrels, whatever the level
        Kind::NumRel if opts.complete => qrels
            .iter()
            .flat_map(|(_, q)| q.levels())
            .filter(|(g, _)| *g > 0)
            .map(|(_, c)| *c as f64)
            .fold(0.0, |a, b| a + b),
        Kind::NumRet | Kind::NumRel | Kind::NumRelRet | Kind::NumNonrelJudgedRet => {
            values.fold(0.0, |a, b| a + b)
        }
        Kind::GmMap | Kind::GmBpref => {
            if n == 0 {
                return 0.0;
            }
            let sum = values.fold(0.0, |a, v| a + v.max(MIN_GEO_MEAN).ln());
            (sum / n as f64).exp()
        }
        _ => {
            if n > 0 {
                values.fold(0.0, |a, b| a + b) / n as f64
            } else {
                0.0
            }
        }
    }
}

/// trec_eval -c: a qrels query missing from the run is evaluated on a ranking of one unjudged
/// document (`ceci_nest_pas_un_docno`), then `num_ret`, `utility`, `unj`, `rbp_resid` are reset
/// to 0 and `relstring` to the empty string, as trec_eval 10.0 does.
fn missing_query(
    qid: &str,
    qrels: &QueryQrels,
    measures: &[Measure],
    opts: &EvalOptions,
) -> (Vec<f64>, QueryStrings) {
    let mut bogus = QueryRun::new(qid);
    bogus.push_entry("ceci_nest_pas_un_docno", 1.0, 1);
    let (mut values, mut strings) = evaluate_query_full(qrels, &bogus, measures, opts);
    for (m, v) in measures.iter().zip(&mut values) {
        if m.family().is_some()
            && matches!(
                m.kind,
                Kind::NumRet | Kind::Utility | Kind::Unj | Kind::RbpResid
            )
        {
            *v = 0.0;
        }
    }
    for (_, s) in &mut strings {
        s.clear();
    }
    (values, strings)
}

fn validate(measures: &[Measure], opts: &EvalOptions) -> Result<()> {
    if measures.is_empty() {
        return Err(Error::Invalid("no measure requested".into()));
    }
    let levels = std::iter::once(opts.relevance_level).chain(measures.iter().filter_map(|m| m.rel));
    for l in levels {
        if l < 0 {
            return Err(Error::Invalid(format!(
                "relevance level must be >= 0, got {l}"
            )));
        }
    }
    if let Some(m) = measures.iter().find(|m| {
        m.cutoff.is_none()
            && matches!(
                m.kind,
                Kind::P | Kind::Recall | Kind::Success | Kind::Judged | Kind::RelativeP | Kind::Unj
            )
    }) {
        return Err(Error::Invalid(format!("{m:?} needs a cutoff")));
    }
    if let Some(m) = measures.iter().find(|m| {
        m.level.is_none_or(|l| !l.get().is_finite())
            && matches!(m.kind, Kind::IprecAtRecall | Kind::RprecMult)
    }) {
        return Err(Error::Invalid(format!("{m:?} needs a finite level")));
    }
    if measures.iter().any(|m| m.cutoff == Some(0)) {
        return Err(Error::Invalid("cutoffs must be positive".into()));
    }
    if opts.max_docs == Some(0) {
        return Err(Error::Invalid("max_docs must be positive".into()));
    }
    Ok(())
}

/// The grades of the ranked documents of one query, as trec_eval's `results_rel_list`:
/// a judged grade (>= 0), [`NONPOOL`] or [`UNJUDGED`]. Sorted by score then docid
/// (descending), cut at `max_docs`, then, if `judged_only`, stripped of unjudged documents.
pub fn ranked_grades(
    qrels: &QueryQrels,
    run: &QueryRun,
    max_docs: Option<usize>,
    judged_only: bool,
) -> Vec<i64> {
    let mut docs: Vec<(&str, f64)> = run.iter().collect();
    let depth = max_docs.unwrap_or(usize::MAX).min(docs.len());
    let cmp = |a: &(&str, f64), b: &(&str, f64)| trec_order(a.1, a.0, b.1, b.0);
    if depth < docs.len() {
        docs.select_nth_unstable_by(depth, cmp);
        docs.truncate(depth);
    }
    docs.sort_unstable_by(cmp);
    let grade = |d: &str| match qrels.get(d) {
        None => NONPOOL,
        Some(g) if g < 0 => UNJUDGED,
        Some(g) => g,
    };
    let it = docs.iter().map(|(d, _)| grade(d));
    if judged_only {
        it.filter(|&g| g >= 0).collect()
    } else {
        it.collect()
    }
}

/// All requested measures for one query (string-valued measures, `relstring`, give 0).
pub fn evaluate_query(
    qrels: &QueryQrels,
    run: &QueryRun,
    measures: &[Measure],
    opts: &EvalOptions,
) -> Vec<f64> {
    evaluate_query_full(qrels, run, measures, opts).0
}

/// All requested measures for one query, with the strings of string-valued measures
/// (measure index, string).
fn evaluate_query_full(
    qrels: &QueryQrels,
    run: &QueryRun,
    measures: &[Measure],
    opts: &EvalOptions,
) -> (Vec<f64>, QueryStrings) {
    let needs = |j: bool| {
        measures
            .iter()
            .any(|m| m.judged_only.unwrap_or(opts.judged_only) == j)
    };
    let all = needs(false).then(|| ranked_grades(qrels, run, opts.max_docs, false));
    let judged = needs(true).then(|| ranked_grades(qrels, run, opts.max_docs, true));
    let mut strings = Vec::new();
    let values = measures
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let ranked = if m.judged_only.unwrap_or(opts.judged_only) {
                judged.as_deref()
            } else {
                all.as_deref()
            };
            let level = m.rel.unwrap_or(opts.relevance_level);
            let ranked = ranked.unwrap_or(&[]);
            if m.kind == Kind::RelString {
                let (v, text) = trec_measures::value(m, &Stats::new(ranked, qrels, level));
                strings.push((i, text.unwrap_or_default()));
                v
            } else {
                measure_value(m, ranked, qrels, level)
            }
        })
        .collect();
    (values, strings)
}

/// One measure from the ranked grades of a query.
pub fn measure_value(m: &Measure, ranked: &[i64], qrels: &QueryQrels, level: i64) -> f64 {
    if !matches!(
        m.kind,
        Kind::RR
            | Kind::Ndcg
            | Kind::AP
            | Kind::P
            | Kind::Recall
            | Kind::RPrec
            | Kind::Success
            | Kind::Judged
            | Kind::Bpref
    ) || (m.kind == Kind::Ndcg && m.cutoff.is_none())
    {
        return trec_measures::value(m, &Stats::new(ranked, qrels, level)).0;
    }
    let num_ret = ranked.len();
    let num_rel = qrels.num_relevant(level);
    let is_rel = |g: &i64| *g >= level;
    let rel_in = |k: usize| {
        ranked[..k.min(num_ret)]
            .iter()
            .filter(|g| is_rel(g))
            .count()
    };
    match (m.kind, m.cutoff) {
        (Kind::RR, k) => {
            let k = k.unwrap_or(usize::MAX).min(num_ret);
            ranked[..k]
                .iter()
                .position(is_rel)
                .map_or(0.0, |i| 1.0 / (i + 1) as f64)
        }
        (Kind::P, Some(k)) => rel_in(k) as f64 / k as f64,
        (Kind::Recall, Some(k)) => {
            if num_rel == 0 {
                0.0
            } else {
                rel_in(k) as f64 / num_rel as f64
            }
        }
        (Kind::Success, Some(k)) => f64::from(u8::from(rel_in(k) > 0)),
        (Kind::RPrec, _) => {
            let n = (num_rel as usize).min(num_ret);
            if n == 0 {
                0.0
            } else {
                rel_in(n) as f64 / num_rel as f64
            }
        }
        (Kind::AP, k) => {
            if num_rel == 0 {
                return 0.0;
            }
            let k = k.unwrap_or(usize::MAX).min(num_ret);
            let (mut found, mut sum) = (0u64, 0.0f64);
            for (i, g) in ranked[..k].iter().enumerate() {
                if is_rel(g) {
                    found += 1;
                    sum += found as f64 / (i + 1) as f64;
                }
            }
            sum / num_rel as f64
        }
        (Kind::Ndcg, k) => {
            let k = k.unwrap_or(usize::MAX);
            let dcg: f64 = ranked[..k.min(num_ret)]
                .iter()
                .enumerate()
                .filter(|(_, g)| **g > 0)
                .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
                // fold from +0.0: an empty f64 sum() is -0.0, which would print as "-0.0000"
                .fold(0.0, |a, b| a + b);
            // ideal: grades > 0, highest first, over all judged documents (cut at k)
            let mut idcg = 0.0;
            let mut i = 0usize;
            'outer: for &(grade, count) in qrels.levels().iter().rev() {
                if grade <= 0 {
                    break;
                }
                for _ in 0..count {
                    if i >= k {
                        break 'outer;
                    }
                    idcg += grade as f64 / ((i + 2) as f64).log2();
                    i += 1;
                }
            }
            if idcg > 0.0 { dcg / idcg } else { 0.0 }
        }
        (Kind::Bpref, _) => {
            let num_nonrel: u64 = qrels
                .levels()
                .iter()
                .filter(|(g, _)| *g < level)
                .map(|(_, c)| c)
                .sum();
            let denom = num_nonrel.min(num_rel) as f64;
            let (mut nonrel_so_far, mut bpref) = (0u64, 0.0f64);
            for &g in ranked {
                if g < 0 {
                    continue; // not in the pool, or pooled but unjudged
                }
                if g < level {
                    nonrel_so_far += 1;
                } else if nonrel_so_far > 0 {
                    bpref += 1.0 - nonrel_so_far.min(num_rel) as f64 / denom;
                } else {
                    bpref += 1.0;
                }
            }
            if num_rel > 0 {
                bpref / num_rel as f64
            } else {
                bpref
            }
        }
        (Kind::Judged, Some(k)) => {
            let n = k.min(num_ret);
            if n == 0 {
                0.0
            } else {
                ranked[..n].iter().filter(|&&g| g != NONPOOL).count() as f64 / n as f64
            }
        }
        // rejected by `evaluate`; a direct caller gets NaN rather than a panic
        (Kind::P | Kind::Recall | Kind::Success | Kind::Judged, None) => f64::NAN,
        // handled by trec_measures above
        _ => f64::NAN,
    }
}
