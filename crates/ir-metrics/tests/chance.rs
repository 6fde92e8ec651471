//! The chance baseline against closed-form expectations of a uniformly random order.

use ir_metrics::{EvalOptions, Measure, Qrels, Run, shuffled_baseline};

/// `queries` queries, each with `n` candidates `d0..d{n-1}` ranked in that order and the
/// documents of `relevant` judged relevant.
fn setup(queries: usize, n: usize, relevant: &[usize]) -> (Qrels, Run) {
    let mut q = String::new();
    let mut r = Run::new("first");
    for i in 0..queries {
        for j in 0..n {
            let grade = i32::from(relevant.contains(&j));
            q.push_str(&format!("q{i} 0 d{j} {grade}\n"));
            r.push(&format!("q{i}"), &format!("d{j}"), (n - j) as f64)
                .unwrap();
        }
    }
    (Qrels::from_str_named(&q, "qrels").unwrap(), r)
}

#[test]
fn matches_the_expectation_of_a_random_order() {
    // One relevant document among 5 shuffled candidates: E[RR] = (1 + 1/2 + ... + 1/5) / 5.
    let (qrels, run) = setup(20, 5, &[4]);
    let rr = Measure::parse("RR@10").unwrap();
    let p2 = Measure::parse("P@2").unwrap();
    let b =
        shuffled_baseline(&qrels, &run, 5, &[rr, p2], &EvalOptions::default(), 2000, 7).unwrap();
    let h5: f64 = (1..=5).map(|k| 1.0 / k as f64).sum::<f64>() / 5.0;
    assert!((b[0].mean - h5).abs() < 0.01, "{:?} vs {h5}", b[0]);
    assert!(b[0].lo < h5 && h5 < b[0].hi, "{:?}", b[0]);
    // E[P@2] = (relevant / candidates) = 1/5.
    assert!((b[1].mean - 0.2).abs() < 0.01, "{:?}", b[1]);
    assert_eq!(b[0].samples, 2000);
    assert_eq!(b[0].measure, "RR@10");
}

#[test]
fn the_tail_below_the_depth_keeps_its_order() {
    // The relevant document is 5th of 5 and only the top 3 are shuffled: RR is 1/5 every time.
    let (qrels, run) = setup(4, 5, &[4]);
    let rr = Measure::parse("RR@10").unwrap();
    let b = shuffled_baseline(&qrels, &run, 3, &[rr], &EvalOptions::default(), 100, 1).unwrap();
    assert_eq!((b[0].lo, b[0].hi), (0.2, 0.2));
    assert!((b[0].mean - 0.2).abs() < 1e-12, "{:?}", b[0]);
}

#[test]
fn too_few_samples_or_no_depth_are_errors() {
    let (qrels, run) = setup(2, 3, &[0]);
    let rr = Measure::parse("RR@10").unwrap();
    let opts = EvalOptions::default();
    let e = shuffled_baseline(&qrels, &run, 3, &[rr], &opts, 99, 1).unwrap_err();
    assert!(e.to_string().contains("at least 100"), "{e}");
    assert!(shuffled_baseline(&qrels, &run, 0, &[rr], &opts, 100, 1).is_err());
}
