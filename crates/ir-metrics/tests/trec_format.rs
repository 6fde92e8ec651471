//! trec_eval's output format and summary rules on small hand-checked cases (the full check is
//! tests/trec_eval_suite.rs, on trec_eval's own test data).

use ir_metrics::{
    EvalOptions, Measure, Qrels, Run, evaluate, parse_measure_list, parse_measures,
    report::trec_eval_text, trec_eval_output,
};

fn data() -> (Qrels, Run) {
    let qrels = Qrels::from_str_named(
        "q1 0 a 2\nq1 0 b 0\nq1 0 c 1\nq2 0 x 1\nq2 0 y -1\nq3 0 z 1\n",
        "qrels",
    )
    .unwrap();
    // q1: b (0), a (2), n (not judged), c (1) not retrieved; q2: y (unjudged), x (1); q9 is
    // not judged
    let run = Run::from_str_named(
        "q1 Q0 b 1 3 first\nq1 Q0 a 2 2 first\nq1 Q0 n 3 1 first\n\
         q2 Q0 y 1 2 first\nq2 Q0 x 2 1 first\nq9 Q0 a 1 1 last\n",
        "run",
    )
    .unwrap();
    (qrels, run)
}

fn measures(names: &[&str]) -> Vec<Measure> {
    parse_measure_list(names).unwrap()
}

#[test]
fn per_query_blocks_then_summary_in_trec_eval_order() {
    let (qrels, run) = data();
    // given out of trec_eval's order: printed in its table order, cutoffs ascending
    let m = measures(&[
        "P.3,1",
        "num_ret",
        "map",
        "runid",
        "num_q",
        "gm_map",
        "relstring",
    ]);
    let text = trec_eval_output(&qrels, &run, &m, &EvalOptions::default(), true).unwrap();
    let want = "\
num_ret               \tq1\t3
map                   \tq1\t0.2500
P_1                   \tq1\t0.0000
P_3                   \tq1\t0.3333
relstring             \tq1\t'02-'
num_ret               \tq2\t2
map                   \tq2\t0.5000
P_1                   \tq2\t0.0000
P_3                   \tq2\t0.3333
relstring             \tq2\t'.1'
runid                 \tall\tlast
num_q                 \tall\t2
num_ret               \tall\t5
map                   \tall\t0.3750
gm_map                \tall\t0.3536
P_1                   \tall\t0.0000
P_3                   \tall\t0.3333
";
    assert_eq!(text, want);
    // without -q: the summary alone
    let e = evaluate(&qrels, &run, &m, &EvalOptions::default()).unwrap();
    assert_eq!(
        trec_eval_text(&e, false),
        want[want.find("runid").unwrap()..]
    );
}

/// `-c`: every qrels query counts; a missing one (q3) is measured on trec_eval's bogus ranking
/// of one unjudged document, with num_ret 0; gm_map's floor applies to it.
#[test]
fn complete_mode_follows_trec_eval_10() {
    let (qrels, run) = data();
    let m = measures(&[
        "num_q",
        "num_ret",
        "num_rel",
        "num_rel_ret",
        "gm_map",
        "map",
        "unj.5",
    ]);
    let opts = EvalOptions {
        complete: true,
        ..Default::default()
    };
    let e = evaluate(&qrels, &run, &m, &opts).unwrap();
    assert_eq!(e.num_queries(), 3);
    assert_eq!(e.per_query["q3"], [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let text = trec_eval_text(&e, false);
    let ap = [0.25, 0.5, 0.0]; // q1: a (of a, c) at rank 2
    let gm = (ap.iter().map(|v: &f64| v.max(1e-5).ln()).sum::<f64>() / 3.0).exp();
    let want = format!(
        "num_q                 \tall\t3\nnum_ret               \tall\t5\n\
         num_rel               \tall\t4\nnum_rel_ret           \tall\t2\n\
         map                   \tall\t{:.4}\ngm_map                \tall\t{gm:.4}\n\
         unj_5                 \tall\t{:.4}\n",
        ap.iter().sum::<f64>() / 3.0,
        (1.0 / 5.0 + 1.0 / 5.0) / 3.0
    );
    assert_eq!(text, want);
}

#[test]
fn measure_parameters_and_defaults() {
    let (qrels, run) = data();
    let m = measures(&[
        "utility.2,-1,0,0",
        "Rprec_mult.1.0",
        "iprec_at_recall..5",
        "set_F.0.5",
        "success",
        "ndcg.2=1,1=3",
        "rbp.p=0.5",
    ]);
    let e = evaluate(&qrels, &run, &m, &EvalOptions::default()).unwrap();
    let get = |name: &str, q: &str| e.get(q, &Measure::parse(name).unwrap()).unwrap();
    // q1: rel ret 2 (a, c? no: c not retrieved) -> rel ret = 1 (a), ret 3
    assert_eq!(get("utility.2,-1,0,0", "q1"), 2.0 * 1.0 - 2.0);
    assert_eq!(get("Rprec_mult_1.00", "q1"), 0.5); // R = 2: 1 relevant in the top 2
    assert_eq!(get("iprec_at_recall_0.50", "q1"), 0.5);
    let (p, r, b) = (1.0 / 3.0, 0.5, 0.5);
    assert!((get("set_F.0.5", "q1") - (b + 1.0) * p * r / (b * p + r)).abs() < 1e-15);
    assert_eq!(get("success_5", "q2"), 1.0);
    // gains 1 -> 3, 2 -> 1: q1 retrieves b (0), a (gain 1), n; ideal c (3), a (1)
    let dcg = 1.0 / 3f64.log2();
    let idcg = 3.0 + 1.0 / 3f64.log2();
    assert!((get("ndcg_2=1,1=3", "q1") - dcg / idcg).abs() < 1e-15);
    // rbp p = 0.5, grades rescaled to [0, 1] by the highest (2): a at rank 2 gives 0.5 * 0.5 * 1
    assert!((get("rbp_p=0.5", "q1") - 0.25).abs() < 1e-15);
    let names: Vec<String> = m.iter().map(Measure::trec_name).collect();
    assert_eq!(
        names,
        [
            "utility_2,-1,0,0",
            "Rprec_mult_1.00",
            "iprec_at_recall_0.50",
            "set_F_0.5",
            "success_1",
            "success_5",
            "success_10",
            "ndcg_2=1,1=3",
            "rbp_p=0.5"
        ]
    );
}

#[test]
fn sets_expand_as_in_trec_eval() {
    assert_eq!(parse_measures("official").unwrap().len(), 30);
    assert_eq!(parse_measures("all_trec").unwrap().len(), 100);
    assert_eq!(parse_measures("set").unwrap().len(), 11);
    // ir_measures names still work, and mix with trec_eval's
    let m = measures(&["nDCG@10", "RR@10", "Judged@10", "official"]);
    assert_eq!(m.len(), 33);
    let (qrels, run) = data();
    let text = trec_eval_output(&qrels, &run, &m, &EvalOptions::default(), false).unwrap();
    let last: Vec<&str> = text.lines().rev().take(2).collect();
    assert!(last[1].starts_with("RR@10 "), "{text}");
    assert!(last[0].starts_with("Judged@10 "), "{text}");
}

#[test]
fn no_common_query_is_an_error_as_in_trec_eval() {
    let qrels = Qrels::from_str_named("q1 0 a 1\n", "q").unwrap();
    let run = Run::from_str_named("q2 Q0 a 1 1 t\n", "r").unwrap();
    let m = measures(&["map"]);
    let e = trec_eval_output(&qrels, &run, &m, &EvalOptions::default(), false).unwrap_err();
    assert!(e.to_string().contains("no queries"), "{e}");
}
