//! Significance tests against SciPy / statsmodels (`tests/fixtures/significance.json`).

mod common;
use common::fixture;
use ir_metrics::stats::{
    BootstrapMethod, bootstrap_ci, holm_bonferroni, paired_t_test, permutation_test,
};

fn vec(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn paired_t_test_matches_scipy() {
    let fx = fixture("significance.json");
    for p in fx["pairs"].as_array().unwrap() {
        let r = paired_t_test(&vec(&p["x"]), &vec(&p["y"])).unwrap();
        let (t, tp) = (p["t"].as_f64().unwrap(), p["t_p"].as_f64().unwrap());
        assert!(
            (r.statistic - t).abs() < 1e-9 * t.abs().max(1.0),
            "t {} vs {t}",
            r.statistic
        );
        assert!(
            (r.p_value - tp).abs() < 1e-9 * tp.max(1e-12) + 1e-15,
            "p {} vs {tp}",
            r.p_value
        );
    }
}

#[test]
fn exact_permutation_test_matches_scipy() {
    let fx = fixture("significance.json");
    for p in fx["pairs"].as_array().unwrap() {
        let (x, y) = (vec(&p["x"]), vec(&p["y"]));
        let r = permutation_test(&x[..14], &y[..14], 1 << 14, 0).unwrap();
        let want = p["perm_exact14_p"].as_f64().unwrap();
        assert!((r.statistic - p["perm_exact14_stat"].as_f64().unwrap()).abs() < 1e-12);
        assert!((r.p_value - want).abs() < 1e-12, "{} vs {want}", r.p_value);
    }
}

#[test]
fn randomized_permutation_test_agrees_with_scipy_within_monte_carlo_error() {
    let fx = fixture("significance.json");
    for p in fx["pairs"].as_array().unwrap() {
        let (x, y) = (vec(&p["x"]), vec(&p["y"]));
        let want = p["perm_mc_p"].as_f64().unwrap();
        let samples = 100_000;
        let r = permutation_test(&x, &y, samples, 42).unwrap();
        // both estimates have std error sqrt(p(1-p)/n); allow 5 combined standard errors
        let se = (want * (1.0 - want) * (1.0 / samples as f64 + 1.0 / 200_000.0)).sqrt();
        assert!(
            (r.p_value - want).abs() <= 5.0 * se + 2e-5,
            "{} vs {want}",
            r.p_value
        );
        // reproducible for a seed
        assert_eq!(r, permutation_test(&x, &y, samples, 42).unwrap());
    }
}

#[test]
fn bootstrap_intervals_agree_with_scipy() {
    let fx = fixture("significance.json");
    for p in fx["pairs"].as_array().unwrap() {
        let d: Vec<f64> = vec(&p["x"])
            .iter()
            .zip(vec(&p["y"]))
            .map(|(a, b)| a - b)
            .collect();
        let spread = d.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for (key, method) in [
            ("percentile", BootstrapMethod::Percentile),
            ("BCa", BootstrapMethod::BCa),
        ] {
            let want = vec(&p["bootstrap95"][key]);
            let r = bootstrap_ci(&d, 0.95, 200_000, 11, method).unwrap();
            // Monte Carlo error of a 2.5% quantile over 2e5 resamples is far below 1% of the spread
            for (have, want) in [(r.low, want[0]), (r.high, want[1])] {
                assert!(
                    (have - want).abs() < 0.01 * spread,
                    "{key}: {have} vs {want}"
                );
            }
        }
    }
}

#[test]
fn holm_matches_statsmodels() {
    let fx = fixture("significance.json");
    let got = holm_bonferroni(&vec(&fx["holm_in"])).unwrap();
    for (g, w) in got.iter().zip(vec(&fx["holm_out"])) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
}

#[test]
fn degenerate_inputs_are_errors_or_defined() {
    assert!(paired_t_test(&[1.0], &[2.0]).is_err());
    assert!(paired_t_test(&[1.0, 2.0], &[2.0]).is_err());
    assert!(paired_t_test(&[1.0, f64::NAN], &[2.0, 1.0]).is_err());
    assert_eq!(
        paired_t_test(&[0.3, 0.5], &[0.3, 0.5]).unwrap().p_value,
        1.0
    );
    assert_eq!(
        paired_t_test(&[1.5, 2.5], &[1.0, 2.0]).unwrap().p_value,
        0.0
    );
    assert!(permutation_test(&[1.0, 2.0], &[1.0, 2.0], 0, 1).is_err());
    assert!(bootstrap_ci(&[1.0, 2.0], 1.5, 100, 1, BootstrapMethod::Percentile).is_err());
    assert!(holm_bonferroni(&[0.5, 1.5]).is_err());
}

/// Runs evaluated on different queries are compared on the queries all of them have: a run
/// that covers only part of the baseline's queries is not averaged over its own (easier)
/// subset, and the table says what was left out.
#[test]
fn compare_uses_the_queries_every_run_was_evaluated_on() {
    use ir_metrics::{EvalOptions, Measure, Qrels, Run, SignificanceTest, compare};
    let qrels =
        Qrels::from_str_named("q1 0 d1 1\nq2 0 d3 1\nq3 0 d5 1\nq4 0 d7 1\n", "qrels").unwrap();
    // baseline: RR 1/2, 1/2, 1, 1 on q1..q4
    let base = Run::from_str_named(
        "q1 Q0 d2 1 2 a\nq1 Q0 d1 2 1 a\nq2 Q0 d4 1 2 a\nq2 Q0 d3 2 1 a\n\
                     q3 Q0 d5 1 1 a\nq4 Q0 d7 1 1 a\n",
        "base",
    )
    .unwrap();
    // the other run has q1..q3 only: RR 1, 1, 1/2
    let other = Run::from_str_named(
        "q1 Q0 d1 1 2 b\nq2 Q0 d3 1 2 b\nq3 Q0 d6 1 2 b\nq3 Q0 d5 2 1 b\n",
        "other",
    )
    .unwrap();
    let m: Vec<Measure> = vec!["RR".parse().unwrap()];
    let c = compare(
        &qrels,
        &[("a", &base), ("b", &other)],
        &m,
        &EvalOptions::default(),
        SignificanceTest::TTest,
        0.05,
    )
    .unwrap();
    assert_eq!(c.queries, 3);
    assert_eq!(c.excluded, vec![1, 0]);
    // by hand over q1..q3: baseline (0.5 + 0.5 + 1) / 3, other (1 + 1 + 0.5) / 3
    assert!((c.cells[0][0].mean - 2.0 / 3.0).abs() < 1e-12);
    assert!((c.cells[1][0].mean - 2.5 / 3.0).abs() < 1e-12);
    let t = c.table();
    assert!(
        t.contains("over the 3 queries") && t.contains("1 query of a left out"),
        "{t}"
    );
    // two runs sharing a single query: an error naming the run that has queries the other lacks
    let one = Run::from_str_named("q1 Q0 d1 1 2 c\n", "one").unwrap();
    let e = compare(
        &qrels,
        &[("a", &base), ("c", &one)],
        &m,
        &EvalOptions::default(),
        SignificanceTest::TTest,
        0.05,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("share 1 evaluated query") && e.contains(": a"),
        "{e}"
    );
}
