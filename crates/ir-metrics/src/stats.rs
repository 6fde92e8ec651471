//! Significance tests on per-query values: paired t-test, paired randomization (permutation)
//! test, paired bootstrap test, Wilcoxon signed-rank test, bootstrap confidence intervals,
//! Holm-Bonferroni and Bonferroni corrections.
//!
//! Conventions follow SciPy so that results can be checked against it: `ttest_rel`,
//! `permutation_test(permutation_type="samples")` with the mean difference as statistic,
//! `wilcoxon` with its defaults, `bootstrap(method="percentile" | "BCa")`, and statsmodels'
//! `multipletests(method="holm" | "bonferroni")`. The paired bootstrap test is Sakai's (2006)
//! studentized shift test, see [`paired_bootstrap_test`].

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Result of a two-sided test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TestResult {
    /// The statistic: t for the t-test and the bootstrap test, the mean difference for the
    /// randomization test, `min(R+, R-)` for the Wilcoxon test.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

fn paired_diffs(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    if a.len() != b.len() {
        return Err(Error::Invalid(format!(
            "paired samples differ in length ({} vs {})",
            a.len(),
            b.len()
        )));
    }
    if a.len() < 2 {
        return Err(Error::Invalid("need at least 2 paired values".into()));
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(Error::Invalid("values must be finite".into()));
    }
    Ok(a.iter().zip(b).map(|(x, y)| x - y).collect())
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Paired two-sided Student t-test of `a` against `b` (SciPy's `ttest_rel`).
///
/// When every difference is equal the variance is 0: identical samples give t = 0, p = 1
/// (SciPy returns NaN); a constant non-zero shift gives t = ±inf, p = 0.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TestResult> {
    let d = paired_diffs(a, b)?;
    let n = d.len() as f64;
    let m = mean(&d);
    let var = d.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    if var == 0.0 {
        return Ok(if m == 0.0 {
            TestResult {
                statistic: 0.0,
                p_value: 1.0,
            }
        } else {
            TestResult {
                statistic: m.signum() * f64::INFINITY,
                p_value: 0.0,
            }
        });
    }
    let t = m / (var / n).sqrt();
    let dist = StudentsT::new(0.0, 1.0, n - 1.0).map_err(|e| Error::Invalid(e.to_string()))?;
    let p = (2.0 * dist.sf(t.abs())).min(1.0);
    Ok(TestResult {
        statistic: t,
        p_value: p,
    })
}

/// Paired randomization test (Fisher's sign-flipping permutation test), two-sided, statistic
/// the mean of `a - b`.
///
/// With `samples >= 2^n` every sign assignment is enumerated (exact, as SciPy does);
/// otherwise `samples` random assignments are drawn from a ChaCha8 stream seeded by `seed`
/// and p = (hits + 1) / (samples + 1). Two-sided p = 2 min(P(T <= t), P(T >= t)), clipped
/// to 1, with SciPy's relative tolerance of 100 machine epsilons for ties. The result does
/// not depend on the number of threads.
pub fn permutation_test(a: &[f64], b: &[f64], samples: usize, seed: u64) -> Result<TestResult> {
    let d = paired_diffs(a, b)?;
    if samples == 0 {
        return Err(Error::Invalid("samples must be positive".into()));
    }
    let n = d.len();
    let observed = mean(&d);
    let gamma = (f64::EPSILON * 100.0 * observed).abs();
    let count = |stat: f64| -> (u64, u64) {
        (
            u64::from(stat <= observed + gamma),
            u64::from(stat >= observed - gamma),
        )
    };
    let signed_mean = |signs: &mut dyn FnMut(usize) -> bool| -> f64 {
        let mut s = 0.0;
        for (i, x) in d.iter().enumerate() {
            s += if signs(i) { -x } else { *x };
        }
        s / n as f64
    };
    let exact = n < 63 && (samples as u128) >= (1u128 << n);
    let (less, greater, total, adjust) = if exact {
        let total = 1u64 << n;
        let (l, g) = (0..total)
            .into_par_iter()
            .map(|mask| count(signed_mean(&mut |i| (mask >> i) & 1 == 1)))
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (l, g, total, 0)
    } else {
        const CHUNK: usize = 4096;
        let chunks = samples.div_ceil(CHUNK);
        let (l, g) = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(c as u64);
                let todo = CHUNK.min(samples - c * CHUNK);
                let mut words = vec![0u64; n.div_ceil(64)];
                let (mut l, mut g) = (0, 0);
                for _ in 0..todo {
                    for w in words.iter_mut() {
                        *w = rng.random();
                    }
                    let (a, b) = count(signed_mean(&mut |i| (words[i / 64] >> (i % 64)) & 1 == 1));
                    l += a;
                    g += b;
                }
                (l, g)
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (l, g, samples as u64, 1)
    };
    let p = |c: u64| (c + adjust) as f64 / (total + adjust) as f64;
    let p_value = (2.0 * p(less).min(p(greater))).clamp(0.0, 1.0);
    Ok(TestResult {
        statistic: observed,
        p_value,
    })
}

/// How a bootstrap interval is read off the resampled means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapMethod {
    /// Percentiles of the bootstrap distribution.
    Percentile,
    /// Bias-corrected and accelerated (Efron 1987), SciPy's default.
    BCa,
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The statistic on the sample (the mean).
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// Bootstrap confidence interval of the mean of `x` (for a paired comparison pass the
/// per-query differences). `confidence` in (0, 1), e.g. 0.95; `samples` resamples drawn
/// from a ChaCha8 stream seeded by `seed` (independent of the number of threads).
pub fn bootstrap_ci(
    x: &[f64],
    confidence: f64,
    samples: usize,
    seed: u64,
    method: BootstrapMethod,
) -> Result<Interval> {
    if x.len() < 2 {
        return Err(Error::Invalid("need at least 2 values".into()));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::Invalid(format!(
            "confidence must be in (0, 1), got {confidence}"
        )));
    }
    if samples < 2 {
        return Err(Error::Invalid("samples must be at least 2".into()));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid("values must be finite".into()));
    }
    let n = x.len();
    let estimate = mean(x);
    const CHUNK: usize = 1024;
    let mut means: Vec<f64> = (0..samples.div_ceil(CHUNK))
        .into_par_iter()
        .flat_map_iter(|c| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(c as u64);
            let todo = CHUNK.min(samples - c * CHUNK);
            (0..todo)
                .map(|_| (0..n).map(|_| x[rng.random_range(0..n)]).sum::<f64>() / n as f64)
                .collect::<Vec<_>>()
        })
        .collect();
    means.sort_unstable_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    let (q_lo, q_hi) = match method {
        BootstrapMethod::Percentile => (alpha, 1.0 - alpha),
        BootstrapMethod::BCa => {
            let normal = Normal::standard();
            let below = means.iter().filter(|&&m| m < estimate).count() as f64 / samples as f64;
            let z0 = normal.inverse_cdf(below);
            // jackknife acceleration
            let total: f64 = x.iter().sum();
            let jack: Vec<f64> = x.iter().map(|v| (total - v) / (n - 1) as f64).collect();
            let jm = mean(&jack);
            let num: f64 = jack.iter().map(|j| (jm - j).powi(3)).sum();
            let den: f64 = jack.iter().map(|j| (jm - j).powi(2)).sum::<f64>().powf(1.5);
            let a = if den > 0.0 { num / (6.0 * den) } else { 0.0 };
            let adj = |z: f64| normal.cdf(z0 + (z0 + z) / (1.0 - a * (z0 + z)));
            let (za, zb) = (normal.inverse_cdf(alpha), normal.inverse_cdf(1.0 - alpha));
            if z0.is_finite() {
                (adj(za), adj(zb))
            } else {
                (alpha, 1.0 - alpha)
            }
        }
    };
    Ok(Interval {
        estimate,
        low: percentile_linear(&means, q_lo),
        high: percentile_linear(&means, q_hi),
    })
}

/// NumPy's default ("linear") percentile of sorted data, q in [0, 1].
fn percentile_linear(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order.
/// Reject hypothesis i at level alpha when `adjusted[i] <= alpha`.
pub fn holm_bonferroni(p_values: &[f64]) -> Result<Vec<f64>> {
    check_p_values(p_values)?;
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    Ok(adjusted)
}

/// Bonferroni adjusted p-values (`min(1, m p)`), in input order.
pub fn bonferroni(p_values: &[f64]) -> Result<Vec<f64>> {
    check_p_values(p_values)?;
    let m = p_values.len() as f64;
    Ok(p_values.iter().map(|p| (m * p).min(1.0)).collect())
}

fn check_p_values(p_values: &[f64]) -> Result<()> {
    if p_values.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::Invalid("p-values must be in [0, 1]".into()));
    }
    Ok(())
}

/// A multiple-testing correction over a family of p-values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// No correction: the adjusted p-values are the raw ones.
    None,
    /// Bonferroni: `min(1, m p)` for a family of `m`.
    Bonferroni,
    /// Holm-Bonferroni step-down (uniformly more powerful than Bonferroni, same guarantee).
    #[default]
    Holm,
}

impl Correction {
    /// Adjusted p-values, in input order (statsmodels' `multipletests(...)[1]`); reject
    /// hypothesis i at level alpha when `adjusted[i] <= alpha`.
    pub fn adjust(self, p_values: &[f64]) -> Result<Vec<f64>> {
        match self {
            Correction::None => {
                check_p_values(p_values)?;
                Ok(p_values.to_vec())
            }
            Correction::Bonferroni => bonferroni(p_values),
            Correction::Holm => holm_bonferroni(p_values),
        }
    }

    /// How the correction is named in tables.
    pub fn label(self) -> &'static str {
        match self {
            Correction::None => "uncorrected",
            Correction::Bonferroni => "Bonferroni-corrected",
            Correction::Holm => "Holm-Bonferroni-corrected",
        }
    }
}

impl std::fmt::Display for Correction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Correction::None => "none",
            Correction::Bonferroni => "bonferroni",
            Correction::Holm => "holm",
        })
    }
}

impl std::str::FromStr for Correction {
    type Err = Error;
    /// `none`, `bonferroni` or `holm` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Correction::None),
            "bonferroni" => Ok(Correction::Bonferroni),
            "holm" | "holm-bonferroni" => Ok(Correction::Holm),
            _ => Err(Error::Invalid(format!(
                "correction must be none, bonferroni or holm, found {s:?}"
            ))),
        }
    }
}

/// Wilcoxon signed-rank test of `a` against `b`, two-sided, as `scipy.stats.wilcoxon(a, b)`
/// with its defaults (SciPy 1.17: `zero_method="wilcox"`, `correction=False`,
/// `method="auto"`).
///
/// Zero differences are dropped; the others are ranked by absolute value (average ranks for
/// ties) and `R+` is the sum of the ranks of the positive differences. The statistic is
/// `min(R+, R-)`, as SciPy's. The p-value, for `n` pairs (zeros included):
/// - `n <= 50`, no ties and no zeros: the exact distribution of `R+`,
///   `p = 2 min(P(R+ <= r), P(R+ >= r))`, capped at 1;
/// - `n <= 13` with ties or zeros: the same over the `2^n` sign flips of the differences with
///   their tied ranks (SciPy's exact permutation test);
/// - otherwise (ties or zeros and `n > 13`, or `n > 50`) the normal approximation with the tie
///   correction and no continuity correction, `p = 2 sf(|R+ - mean| / sd)`.
///
/// When every difference is zero SciPy returns NaN; here the statistic is 0 and p = 1.
pub fn wilcoxon_signed_rank(a: &[f64], b: &[f64]) -> Result<TestResult> {
    let d = paired_diffs(a, b)?;
    let n = d.len();
    let nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let zeros = n - nz.len();
    let count = nz.len();
    if count == 0 {
        return Ok(TestResult {
            statistic: 0.0,
            p_value: 1.0,
        });
    }
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&i, &j| nz[i].abs().total_cmp(&nz[j].abs()));
    // doubled average ranks: a tie group at sorted positions i..j (0-based) has rank (i+1+j)/2
    let mut rank2 = vec![0u64; count];
    let mut tie_term = 0.0;
    let mut has_ties = false;
    let mut i = 0;
    while i < count {
        let mut j = i + 1;
        while j < count && nz[order[j]].abs() == nz[order[i]].abs() {
            j += 1;
        }
        for &k in &order[i..j] {
            rank2[k] = (i + 1 + j) as u64;
        }
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        has_ties |= j - i > 1;
        i = j;
    }
    let r_plus2: u64 = (0..count).filter(|&k| nz[k] > 0.0).map(|k| rank2[k]).sum();
    let total2: u64 = rank2.iter().sum();
    let r_plus = r_plus2 as f64 / 2.0;
    let r_minus = (total2 - r_plus2) as f64 / 2.0;
    let statistic = r_plus.min(r_minus);
    let exact = n <= 50 && (!(has_ties || zeros > 0) || n <= 13);
    let p_value = if exact {
        // distribution of the doubled R+ over the 2^count sign assignments (the zeros, which
        // SciPy's permutation test also flips, multiply every count alike)
        let mut counts = vec![0u64; total2 as usize + 1];
        counts[0] = 1;
        let mut reach = 0usize;
        for &r in &rank2 {
            let r = r as usize;
            for s in (0..=reach).rev() {
                counts[s + r] += counts[s];
            }
            reach += r;
        }
        let all = (1u64 << count) as f64;
        let le: u64 = counts[..=r_plus2 as usize].iter().sum();
        let ge: u64 = counts[r_plus2 as usize..].iter().sum();
        (2.0 * (le.min(ge) as f64 / all)).min(1.0)
    } else {
        let c = count as f64;
        let mean = c * (c + 1.0) * 0.25;
        let se = ((c * (c + 1.0) * (2.0 * c + 1.0) - tie_term / 2.0) / 24.0).sqrt();
        let z = (r_plus - mean) / se;
        2.0 * Normal::standard().sf(z.abs())
    };
    Ok(TestResult { statistic, p_value })
}

/// Studentized mean `mean / (sd / sqrt(n))` (sd with n - 1); a zero sd gives 0 for a zero
/// mean, else ±inf.
fn t_statistic(x: &mut dyn Iterator<Item = f64>, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend(x);
    let n = buf.len() as f64;
    let m = mean(buf);
    let var = buf.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    let sd = var.sqrt();
    if sd > 0.0 {
        m / (sd / n.sqrt())
    } else if m == 0.0 {
        0.0
    } else {
        m.signum() * f64::INFINITY
    }
}

/// Paired bootstrap test of `a` against `b`, two-sided: Sakai's (SIGIR 2006) studentized
/// shift test on the per-query differences `d = a - b`.
///
/// The statistic is `t = mean(d) / (sd(d) / sqrt(n))`. Under the null hypothesis the
/// differences are centred, `w = d - mean(d)`; each of `samples` bootstrap samples draws n
/// queries of `w` with replacement, and `p = (1 + #{|t(w*)| >= |t|}) / (1 + samples)` (the
/// `+ 1` of Davison & Hinkley's Monte Carlo p-value; Sakai's count / samples differs by at most
/// 1 / samples). The resamples come from ChaCha8 streams seeded by `seed`, 1024 per stream, so
/// the result does not depend on the number of threads.
pub fn paired_bootstrap_test(
    a: &[f64],
    b: &[f64],
    samples: usize,
    seed: u64,
) -> Result<TestResult> {
    let d = paired_diffs(a, b)?;
    if samples == 0 {
        return Err(Error::Invalid("samples must be positive".into()));
    }
    let n = d.len();
    let mut buf = Vec::with_capacity(n);
    let t0 = t_statistic(&mut d.iter().copied(), &mut buf);
    let m = mean(&d);
    let w: Vec<f64> = d.iter().map(|x| x - m).collect();
    const CHUNK: usize = 1024;
    let hits: u64 = (0..samples.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(c as u64);
            let mut buf = Vec::with_capacity(n);
            let todo = CHUNK.min(samples - c * CHUNK);
            let mut hits = 0u64;
            for _ in 0..todo {
                let t = t_statistic(&mut (0..n).map(|_| w[rng.random_range(0..n)]), &mut buf);
                hits += u64::from(t.abs() >= t0.abs());
            }
            hits
        })
        .sum();
    Ok(TestResult {
        statistic: t0,
        p_value: (hits + 1) as f64 / (samples + 1) as f64,
    })
}

/// [`paired_bootstrap_test`] on given resamples: each row of `resamples` lists the n query
/// positions of one bootstrap sample (for checking the definition against another
/// implementation with the same resamples).
pub fn paired_bootstrap_test_with_resamples(
    a: &[f64],
    b: &[f64],
    resamples: &[Vec<usize>],
) -> Result<TestResult> {
    let d = paired_diffs(a, b)?;
    let n = d.len();
    if resamples.is_empty() {
        return Err(Error::Invalid("no resamples".into()));
    }
    if let Some(r) = resamples
        .iter()
        .find(|r| r.len() != n || r.iter().any(|&i| i >= n))
    {
        return Err(Error::Invalid(format!(
            "a resample must list {n} positions below {n}, found {} positions{}",
            r.len(),
            if r.iter().any(|&i| i >= n) {
                " with one out of range"
            } else {
                ""
            }
        )));
    }
    let mut buf = Vec::with_capacity(n);
    let t0 = t_statistic(&mut d.iter().copied(), &mut buf);
    let m = mean(&d);
    let w: Vec<f64> = d.iter().map(|x| x - m).collect();
    let hits = resamples
        .iter()
        .filter(|r| t_statistic(&mut r.iter().map(|&i| w[i]), &mut buf).abs() >= t0.abs())
        .count();
    Ok(TestResult {
        statistic: t0,
        p_value: (hits + 1) as f64 / (resamples.len() + 1) as f64,
    })
}
