//! Fusion against ranx (`tests/fixtures/fusion_ranx.json`).

mod common;
use common::*;
use ir_metrics::Run;
use ir_metrics::fusion::{Normalization, comb_mnz, comb_sum, rrf};

#[test]
fn fusion_matches_ranx() {
    let data = data_dir();
    let fx = fixture("fusion_ranx.json");
    let runs: Vec<Run> = fx["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            Run::from_path(
                data.join("trec-dl-2019-passage/runs")
                    .join(format!("{}.trec", n.as_str().unwrap())),
            )
            .unwrap()
        })
        .collect();
    let refs: Vec<&Run> = runs.iter().collect();
    let cases = [
        ("rrf60", rrf(&refs, 60.0).unwrap()),
        ("rrf10", rrf(&refs, 10.0).unwrap()),
        (
            "combsum_minmax",
            comb_sum(&refs, Normalization::MinMax).unwrap(),
        ),
        (
            "combsum_zscore",
            comb_sum(&refs, Normalization::ZScore).unwrap(),
        ),
        (
            "combmnz_minmax",
            comb_mnz(&refs, Normalization::MinMax).unwrap(),
        ),
        (
            "combmnz_zscore",
            comb_mnz(&refs, Normalization::ZScore).unwrap(),
        ),
    ];
    for (label, fused) in cases {
        let want = fx["fused"][label].as_object().unwrap();
        assert!(!want.is_empty());
        for (qid, docs) in want {
            let docs = docs.as_object().unwrap();
            let q = fused.get(qid).unwrap();
            assert_eq!(q.len(), docs.len(), "{label} {qid}: document count");
            for (d, s) in q.iter() {
                let w = docs[d].as_f64().unwrap();
                assert!(
                    (s - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{label} {qid} {d}: {s} vs ranx {w}"
                );
            }
        }
    }
}

#[test]
fn rrf_of_disjoint_runs_interleaves_by_rank() {
    let a = Run::from_str_named("q Q0 a1 1 3 x\nq Q0 a2 2 2 x\n", "a").unwrap();
    let b = Run::from_str_named("q Q0 b1 1 0.9 y\nq Q0 a2 2 0.5 y\n", "b").unwrap();
    let f = rrf(&[&a, &b], 60.0).unwrap();
    let ranked: Vec<&str> = f
        .get("q")
        .unwrap()
        .ranked()
        .into_iter()
        .map(|x| x.0)
        .collect();
    // a2 is ranked 2nd in both: 2/62 > 1/61
    assert_eq!(ranked, ["a2", "b1", "a1"]);
}

#[test]
fn overflowing_fusion_is_an_error_that_says_so() {
    // finite scores near f64's limit: their sum overflows
    let big = |name: &str| {
        Run::from_queries(
            name,
            vec![(
                "q1".into(),
                vec![("d1".into(), 1.5e308), ("d2".into(), 1.0)],
            )],
        )
        .unwrap()
    };
    let (a, b) = (big("a"), big("b"));
    let e = comb_sum(&[&a, &b], Normalization::None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("overflows")
            && e.contains("\"q1\"")
            && e.contains("\"d1\"")
            && e.contains("normalise"),
        "{e}"
    );
    assert!(!e.contains("not finite"), "{e}");
    // normalised, the same runs fuse
    let fused = comb_sum(&[&a, &b], Normalization::MinMax).unwrap();
    assert_eq!(fused.num_entries(), 2);
    // a range that overflows the normalisation itself
    let wide = Run::from_queries(
        "w",
        vec![(
            "q1".into(),
            vec![("d1".into(), 1.5e308), ("d2".into(), -1.5e308)],
        )],
    )
    .unwrap();
    let e = comb_sum(&[&wide], Normalization::MinMax)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflows"), "{e}");
}
