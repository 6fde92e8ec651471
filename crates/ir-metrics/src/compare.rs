//! Several runs compared: means, paired significance tests (t-test, randomization, bootstrap,
//! Wilcoxon) against a baseline or between every pair of runs, with a multiple-testing
//! correction across the comparisons of each measure. Tables: [`Comparison::table`],
//! [`Comparison::to_markdown`], [`Comparison::to_latex`] (in `compare_report`); JSON through
//! serde.

use crate::error::{Error, Result};
use crate::eval::{EvalOptions, Evaluation, evaluate};
use crate::measure::Measure;
use crate::qrels::Qrels;
use crate::run::Run;
use crate::stats::{
    Correction, TestResult, paired_bootstrap_test, paired_t_test, permutation_test,
    wilcoxon_signed_rank,
};
use serde::Serialize;

/// The paired, two-sided test used by [`compare`] (see [`crate::stats`] for the definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum SignificanceTest {
    /// Paired Student t-test (`scipy.stats.ttest_rel`).
    TTest,
    /// Paired randomization test with `samples` sign flips from `seed`.
    Permutation {
        /// Number of random sign assignments (exact enumeration when >= 2^n).
        samples: usize,
        /// Seed of the ChaCha8 stream.
        seed: u64,
    },
    /// Paired bootstrap test (Sakai's studentized shift test) with `samples` resamples.
    Bootstrap {
        /// Number of bootstrap samples of the queries.
        samples: usize,
        /// Seed of the ChaCha8 stream.
        seed: u64,
    },
    /// Wilcoxon signed-rank test (`scipy.stats.wilcoxon` defaults).
    Wilcoxon,
}

impl SignificanceTest {
    /// Run the test of `a` against `b` (paired by position).
    pub fn run(&self, a: &[f64], b: &[f64]) -> Result<TestResult> {
        match *self {
            SignificanceTest::TTest => paired_t_test(a, b),
            SignificanceTest::Permutation { samples, seed } => {
                permutation_test(a, b, samples, seed)
            }
            SignificanceTest::Bootstrap { samples, seed } => {
                paired_bootstrap_test(a, b, samples, seed)
            }
            SignificanceTest::Wilcoxon => wilcoxon_signed_rank(a, b),
        }
    }

    /// How the test is named in tables ("paired t-test", ...).
    pub fn label(&self) -> &'static str {
        match self {
            SignificanceTest::TTest => "paired t-test",
            SignificanceTest::Permutation { .. } => "paired randomization test",
            SignificanceTest::Bootstrap { .. } => "paired bootstrap test",
            SignificanceTest::Wilcoxon => "Wilcoxon signed-rank test",
        }
    }
}

/// Which pairs of runs are tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareMode {
    /// Every run against the first (the baseline): `k - 1` tests per measure.
    #[default]
    Baseline,
    /// Every run against every other, as ranx's `compare`: `k (k - 1) / 2` tests per measure.
    AllPairs,
}

impl std::fmt::Display for CompareMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompareMode::Baseline => "baseline",
            CompareMode::AllPairs => "all-pairs",
        })
    }
}

impl std::str::FromStr for CompareMode {
    type Err = Error;
    /// `baseline` or `all-pairs` (also `all_pairs`, `pairs`, `all`).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "baseline" => Ok(CompareMode::Baseline),
            "all-pairs" | "all_pairs" | "pairs" | "all" => Ok(CompareMode::AllPairs),
            _ => Err(Error::Invalid(format!(
                "comparison mode must be baseline or all-pairs, found {s:?}"
            ))),
        }
    }
}

/// What [`compare_with`] tests and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// The paired test.
    pub test: SignificanceTest,
    /// The correction over the family of tests of one measure.
    pub correction: Correction,
    /// Which pairs are tested.
    pub mode: CompareMode,
    /// Significance level: a comparison is significant when its adjusted p-value is `<= alpha`.
    pub alpha: f64,
}

impl Default for CompareOptions {
    /// Paired t-test, Holm, against the baseline, alpha 0.05.
    fn default() -> Self {
        CompareOptions {
            test: SignificanceTest::TTest,
            correction: Correction::Holm,
            mode: CompareMode::Baseline,
            alpha: 0.05,
        }
    }
}

/// One system's result on one measure.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Mean over the compared queries.
    pub mean: f64,
    /// Raw two-sided p-value against the first system (None for the first system).
    pub p_value: Option<f64>,
    /// That p-value adjusted over the measure's family (see [`Comparison::correction`]).
    pub p_adjusted: Option<f64>,
    /// Significantly different from the first system (`p_adjusted <= alpha`).
    pub significant: bool,
    /// The systems (indices) this one is significantly better than: a higher mean and a
    /// significant test. These are the superscript letters of the tables.
    pub better_than: Vec<usize>,
}

/// One tested pair on one measure: system `a` against system `b` (`b < a`; in baseline mode
/// `b` is 0, the baseline).
#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    /// Index into [`Comparison::measures`].
    pub measure: usize,
    /// Index into [`Comparison::systems`].
    pub a: usize,
    /// Index into [`Comparison::systems`].
    pub b: usize,
    /// `mean(a) - mean(b)` over the compared queries.
    pub mean_difference: f64,
    /// The test's statistic for `a` against `b`.
    pub statistic: f64,
    /// Raw two-sided p-value.
    pub p_value: f64,
    /// p-value adjusted over the measure's family.
    pub p_adjusted: f64,
    /// `p_adjusted <= alpha`.
    pub significant: bool,
    /// Queries where `a` scores higher than `b`.
    pub wins: usize,
    /// Queries where they score the same.
    pub ties: usize,
    /// Queries where `a` scores lower.
    pub losses: usize,
}

/// The result of [`compare`]: `cells[system][measure]`; system 0 is the first run (the
/// baseline in [`CompareMode::Baseline`]).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Run names (their tags, or what the caller gave).
    pub systems: Vec<String>,
    /// Measure names (ir_measures spelling).
    pub measures: Vec<String>,
    /// Significance level.
    pub alpha: f64,
    /// The paired test.
    pub test: SignificanceTest,
    /// The correction, applied per measure over the tested pairs (the family).
    pub correction: Correction,
    /// Which pairs were tested.
    pub mode: CompareMode,
    /// `cells[system][measure]`.
    pub cells: Vec<Vec<Cell>>,
    /// Every tested pair, measure by measure, in order `(1, 0), (2, 0), (2, 1), (3, 0), ...`
    /// (`(1, 0), (2, 0), ...` in baseline mode).
    pub pairs: Vec<PairResult>,
    /// Queries every run was evaluated on: the means and the tests are over these.
    pub queries: usize,
    /// Per system, how many of its own evaluated queries were left out because another run
    /// lacks them (all zero when every run covers the same queries).
    pub excluded: Vec<usize>,
    /// Every evaluation, in system order (empty from [`compare_scores`]).
    #[serde(skip)]
    pub evaluations: Vec<Evaluation>,
}

/// Evaluate `runs` (the first is the baseline) and test each other run against it with `test`,
/// Holm-corrected: [`compare_with`] in [`CompareMode::Baseline`] with [`Correction::Holm`].
pub fn compare(
    qrels: &Qrels,
    runs: &[(&str, &Run)],
    measures: &[Measure],
    opts: &EvalOptions,
    test: SignificanceTest,
    alpha: f64,
) -> Result<Comparison> {
    compare_with(
        qrels,
        runs,
        measures,
        opts,
        &CompareOptions {
            test,
            alpha,
            ..CompareOptions::default()
        },
    )
}

/// Evaluate `runs` and test them as `options` says. Every mean and every paired test is over
/// the queries all runs were evaluated on, so that the systems are compared on one query set;
/// [`Comparison::excluded`] says how many queries of each run that left out (with `complete`,
/// every run covers the qrels' queries and none is). P-values are adjusted per measure over
/// the tested pairs: `k - 1` against the baseline, `k (k - 1) / 2` for all pairs.
pub fn compare_with(
    qrels: &Qrels,
    runs: &[(&str, &Run)],
    measures: &[Measure],
    opts: &EvalOptions,
    options: &CompareOptions,
) -> Result<Comparison> {
    check_setup(runs.len(), options)?;
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
    let scores: Vec<Vec<Vec<f64>>> = evaluations
        .iter()
        .map(|e| {
            (0..measures.len())
                .map(|mi| shared.iter().map(|q| e.per_query[*q][mi]).collect())
                .collect()
        })
        .collect();
    let names: Vec<&str> = runs.iter().map(|(n, _)| *n).collect();
    let measure_names: Vec<String> = measures.iter().map(|m| m.to_string()).collect();
    let measure_refs: Vec<&str> = measure_names.iter().map(String::as_str).collect();
    let mut c = compare_scores(&names, &measure_refs, &scores, options)?;
    // with every run on the same queries, the means are the evaluations' own (same sum order)
    if excluded.iter().all(|&x| x == 0) {
        for (row, e) in c.cells.iter_mut().zip(&evaluations) {
            for (cell, m) in row.iter_mut().zip(&e.means) {
                cell.mean = *m;
            }
        }
        for p in &mut c.pairs {
            p.mean_difference = c.cells[p.a][p.measure].mean - c.cells[p.b][p.measure].mean;
        }
    }
    c.excluded = excluded;
    c.evaluations = evaluations;
    Ok(c)
}

fn check_setup(systems: usize, options: &CompareOptions) -> Result<()> {
    if systems < 2 {
        return Err(Error::Invalid(
            "compare needs a baseline and at least one other run".into(),
        ));
    }
    let alpha = options.alpha;
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::Invalid(format!(
            "alpha must be in (0, 1), got {alpha}"
        )));
    }
    Ok(())
}

/// [`compare_with`] on per-query scores already computed: `scores[system][measure][query]`,
/// the queries paired by position (every vector of the same length, 2 or more, finite).
/// [`Comparison::excluded`] is all zero and [`Comparison::evaluations`] empty.
pub fn compare_scores(
    systems: &[&str],
    measures: &[&str],
    scores: &[Vec<Vec<f64>>],
    options: &CompareOptions,
) -> Result<Comparison> {
    check_setup(systems.len(), options)?;
    if scores.len() != systems.len() {
        return Err(Error::Invalid(format!(
            "{} systems but scores for {}",
            systems.len(),
            scores.len()
        )));
    }
    let queries = scores
        .first()
        .and_then(|s| s.first())
        .map_or(0, |v| v.len());
    for (name, per_measure) in systems.iter().zip(scores) {
        if per_measure.len() != measures.len() {
            return Err(Error::Invalid(format!(
                "{name}: scores for {} measures, expected {}",
                per_measure.len(),
                measures.len()
            )));
        }
        for (m, v) in measures.iter().zip(per_measure) {
            if v.len() != queries {
                return Err(Error::Invalid(format!(
                    "{name} on {m}: {} per-query scores, expected {queries}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Invalid(format!(
                    "{name} on {m}: scores must be finite"
                )));
            }
        }
    }
    if !measures.is_empty() && queries < 2 {
        return Err(Error::Invalid(format!(
            "{queries} quer{} to compare on (a paired test needs 2 or more)",
            if queries == 1 { "y" } else { "ies" }
        )));
    }
    let k = systems.len();
    let tested: Vec<(usize, usize)> = match options.mode {
        CompareMode::Baseline => (1..k).map(|a| (a, 0)).collect(),
        CompareMode::AllPairs => (1..k).flat_map(|a| (0..a).map(move |b| (a, b))).collect(),
    };
    let mut cells: Vec<Vec<Cell>> = scores
        .iter()
        .map(|per_measure| {
            per_measure
                .iter()
                .map(|v| Cell {
                    mean: v.iter().sum::<f64>() / v.len() as f64,
                    p_value: None,
                    p_adjusted: None,
                    significant: false,
                    better_than: Vec::new(),
                })
                .collect()
        })
        .collect();
    let mut pairs = Vec::with_capacity(tested.len() * measures.len());
    for (mi, m) in measures.iter().enumerate() {
        let mut tests = Vec::with_capacity(tested.len());
        for &(a, b) in &tested {
            let (x, y) = (&scores[a][mi], &scores[b][mi]);
            let r = options.test.run(x, y).map_err(|err| {
                Error::Invalid(format!("{} vs {} on {m}: {err}", systems[a], systems[b]))
            })?;
            tests.push(r);
        }
        let raw: Vec<f64> = tests.iter().map(|r| r.p_value).collect();
        let adjusted = options.correction.adjust(&raw)?;
        for ((&(a, b), r), adj) in tested.iter().zip(&tests).zip(adjusted) {
            let (x, y) = (&scores[a][mi], &scores[b][mi]);
            let wins = x.iter().zip(y).filter(|(p, q)| p > q).count();
            let ties = x.iter().zip(y).filter(|(p, q)| p == q).count();
            let (ma, mb) = (cells[a][mi].mean, cells[b][mi].mean);
            let significant = adj <= options.alpha;
            if significant && ma > mb {
                cells[a][mi].better_than.push(b);
            } else if significant && mb > ma {
                cells[b][mi].better_than.push(a);
            }
            if b == 0 {
                let c = &mut cells[a][mi];
                c.p_value = Some(r.p_value);
                c.p_adjusted = Some(adj);
                c.significant = significant;
            }
            pairs.push(PairResult {
                measure: mi,
                a,
                b,
                mean_difference: ma - mb,
                statistic: r.statistic,
                p_value: r.p_value,
                p_adjusted: adj,
                significant,
                wins,
                ties,
                losses: x.len() - wins - ties,
            });
        }
    }
    for row in &mut cells {
        for c in row {
            c.better_than.sort_unstable();
        }
    }
    Ok(Comparison {
        systems: systems.iter().map(|n| n.to_string()).collect(),
        measures: measures.iter().map(|m| m.to_string()).collect(),
        alpha: options.alpha,
        test: options.test,
        correction: options.correction,
        mode: options.mode,
        cells,
        pairs,
        queries,
        excluded: vec![0; k],
        evaluations: Vec::new(),
    })
}

impl Comparison {
    /// The result of the test of `a` against `b` on measure `measure` (in either order; the
    /// returned pair may be `(b, a)`), if that pair was tested.
    pub fn pair(&self, measure: usize, a: usize, b: usize) -> Option<&PairResult> {
        self.pairs
            .iter()
            .find(|p| p.measure == measure && ((p.a, p.b) == (a, b) || (p.a, p.b) == (b, a)))
    }
}
