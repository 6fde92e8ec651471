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
    /// Every evaluation, in system order.
    #[serde(skip)]
    pub evaluations: Vec<Evaluation>,
}

/// Evaluate `runs` (the first is the baseline) and test each other run against it, paired
/// over the queries both evaluated. P-values are corrected with Holm-Bonferroni over the
/// `runs.len() - 1` comparisons of each measure.
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
    let mut cells: Vec<Vec<Cell>> = evaluations
        .iter()
        .map(|e| {
            e.means
                .iter()
                .map(|&mean| Cell {
                    mean,
                    p_value: None,
                    p_holm: None,
                    significant: false,
                })
                .collect()
        })
        .collect();
    for (mi, _) in measures.iter().enumerate() {
        let mut raw = Vec::new();
        for (si, e) in evaluations.iter().enumerate().skip(1) {
            let (x, y): (Vec<f64>, Vec<f64>) = e
                .per_query
                .iter()
                .filter_map(|(q, v)| base.per_query.get(q).map(|b| (v[mi], b[mi])))
                .unzip();
            let p = match test {
                SignificanceTest::TTest => paired_t_test(&x, &y)?.p_value,
                SignificanceTest::Permutation { samples, seed } => {
                    permutation_test(&x, &y, samples, seed)?.p_value
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
            "* : Holm-Bonferroni adjusted p < {} against the first system (paired, over shared queries)",
            self.alpha
        );
        out
    }
}
