//! Several runs against a baseline: means, paired significance tests, Holm-Bonferroni
//! correction across the compared systems (per measure).

use crate::error::{Error, Result};
use crate::eval::{EvalOptions, Evaluation, evaluate};
use crate::measure::Measure;
use crate::qrels::Qrels;
use crate::run::Run;
use crate::stats::{holm_bonferroni, paired_t_test, permutation_test};
use serde::Serialize;

/// The paired test used by [`compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignificanceTest {
    /// Paired Student t-test.
    TTest,
    /// Paired randomization test with `samples` sign flips from `seed`.
    Permutation {
        /// Number of random sign assignments (exact enumeration when >= 2^n).
        samples: usize,
        /// Seed of the ChaCha8 stream.
        seed: u64,
    },
}

/// One system's result on one measure.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Mean over the evaluated queries.
    pub mean: f64,
    /// Raw two-sided p-value against the baseline (None for the baseline).
    pub p_value: Option<f64>,
    /// Holm-Bonferroni adjusted p-value across the non-baseline systems.
    pub p_holm: Option<f64>,
    /// Adjusted p-value below alpha.
    pub significant: bool,
}

/// The result of [`compare`]: `cells[system][measure]`; system 0 is the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Run names (their tags, or what the caller gave).
    pub systems: Vec<String>,
    /// Measure names (ir_measures spelling).
    pub measures: Vec<String>,
    /// Significance level.
    pub alpha: f64,
    /// `cells[system][measure]`.
    pub cells: Vec<Vec<Cell>>,
    /// Queries every run was evaluated on: the means and the tests are over these.
    pub queries: usize,
    /// Per system, how many of its own evaluated queries were left out because another run
    /// lacks them (all zero when every run covers the same queries).
    pub excluded: Vec<usize>,
    /// Every evaluation, in system order.
    #[serde(skip)]
    pub evaluations: Vec<Evaluation>,
}

/// Evaluate `runs` (the first is the baseline) and test each other run against it. Every mean
/// and every paired test is over the queries all runs were evaluated on, so that the systems
/// are compared on one query set; [`Comparison::excluded`] says how many queries of each run
/// that left out (with `complete`, every run covers the qrels' queries and none is). P-values
/// are corrected with Holm-Bonferroni over the `runs.len() - 1` comparisons of each measure.
pub fn compare(
    qrels: &Qrels,
    runs: &[(&str, &Run)],
    measures: &[Measure],
    opts: &EvalOptions,
    test: SignificanceTest,
    alpha: f64,
) -> Result<Comparison> {
    if runs.len() < 2 {
        return Err(Error::Invalid(
            "compare needs a baseline and at least one other run".into(),
        ));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::Invalid(format!(
            "alpha must be in (0, 1), got {alpha}"
        )));
    }
    let evaluations: Vec<Evaluation> = runs
        .iter()
        .map(|(_, r)| evaluate(qrels, r, measures, opts))
        .collect::<Result<_>>()?;
    let base = &evaluations[0];
    // the queries every run was evaluated on
    let shared: Vec<&String> = base
        .per_query
        .keys()
        .filter(|q| evaluations.iter().all(|e| e.per_query.contains_key(*q)))
        .collect();
    let excluded: Vec<usize> = evaluations
        .iter()
        .map(|e| e.per_query.len() - shared.len())
        .collect();
    if shared.len() < 2 {
        let lacking: Vec<&str> = runs
            .iter()
            .zip(&excluded)
            .filter(|(_, x)| **x > 0)
            .map(|((n, _), _)| *n)
            .collect();
        return Err(Error::Invalid(format!(
            "the runs share {} evaluated quer{} (a paired test needs 2 or more); runs with queries the others lack: {}",
            shared.len(),
            if shared.len() == 1 { "y" } else { "ies" },
            if lacking.is_empty() {
                "none".to_string()
            } else {
                lacking.join(", ")
            }
        )));
    }
    let mean_over_shared = |e: &Evaluation, mi: usize| -> f64 {
        if excluded.iter().all(|&x| x == 0) {
            e.means[mi]
        } else {
            shared.iter().map(|q| e.per_query[*q][mi]).sum::<f64>() / shared.len() as f64
        }
    };
    let mut cells: Vec<Vec<Cell>> = evaluations
        .iter()
        .map(|e| {
            (0..measures.len())
                .map(|mi| Cell {
                    mean: mean_over_shared(e, mi),
                    p_value: None,
                    p_holm: None,
                    significant: false,
                })
                .collect()
        })
        .collect();
    for (mi, m) in measures.iter().enumerate() {
        let mut raw = Vec::new();
        for (si, e) in evaluations.iter().enumerate().skip(1) {
            let (x, y): (Vec<f64>, Vec<f64>) = shared
                .iter()
                .map(|q| (e.per_query[*q][mi], base.per_query[*q][mi]))
                .unzip();
            let what = |err: Error| {
                Error::Invalid(format!("{} vs {} on {m}: {err}", runs[si].0, runs[0].0))
            };
            let p = match test {
                SignificanceTest::TTest => paired_t_test(&x, &y).map_err(what)?.p_value,
                SignificanceTest::Permutation { samples, seed } => {
                    permutation_test(&x, &y, samples, seed)
                        .map_err(what)?
                        .p_value
                }
            };
            cells[si][mi].p_value = Some(p);
            raw.push(p);
        }
        for (k, adj) in holm_bonferroni(&raw)?.into_iter().enumerate() {
            let c = &mut cells[k + 1][mi];
            c.p_holm = Some(adj);
            c.significant = adj < alpha;
        }
    }
    Ok(Comparison {
        systems: runs.iter().map(|(n, _)| n.to_string()).collect(),
        measures: measures.iter().map(|m| m.to_string()).collect(),
        alpha,
        cells,
        queries: shared.len(),
        excluded,
        evaluations,
    })
}

impl Comparison {
    /// A plain-text table: one row per system, means with `*` where the Holm-adjusted
    /// p-value against the baseline (first row) is below alpha, and the adjusted p-values.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let w = self
            .systems
            .iter()
            .map(|s| s.len())
            .max()
            .unwrap_or(4)
            .max(6)
            + 2;
        let mut out = String::new();
        let _ = write!(out, "{:<w$}", "system");
        for m in &self.measures {
            let _ = write!(out, "{m:>18}");
        }
        out.push('\n');
        for (s, row) in self.systems.iter().zip(&self.cells) {
            let _ = write!(out, "{s:<w$}");
            for c in row {
                let cell = match c.p_holm {
                    None => format!("{:.4} (base)", c.mean),
                    Some(p) => {
                        let star = if c.significant { "*" } else { " " };
                        if p < 0.001 {
                            format!("{:.4}{star} p<.001", c.mean)
                        } else {
                            format!("{:.4}{star} p={p:.3}", c.mean)
                        }
                    }
                };
                let _ = write!(out, "{cell:>18}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "* : Holm-Bonferroni adjusted p < {} against the first system (paired, over the {} queries every run was evaluated on)",
            self.alpha, self.queries
        );
        for (name, &x) in self.systems.iter().zip(&self.excluded) {
            if x > 0 {
                let _ = writeln!(
                    out,
                    "note: {x} quer{} of {name} left out: another run was not evaluated on {}",
                    if x == 1 { "y" } else { "ies" },
                    if x == 1 { "it" } else { "them" }
                );
            }
        }
        out
    }
}
