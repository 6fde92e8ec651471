//! Parsing: tolerant of whitespace, strict otherwise, errors name file and line; trec_eval
//! semantics on ties and the ignored rank column; write/read round trips.

use ir_metrics::{Error, EvalOptions, Measure, Qrels, Run, evaluate};
use proptest::prelude::*;

fn err_line(e: Error) -> (String, u64) {
    match e {
        Error::Parse { path, line, .. } => (path.display().to_string(), line),
        Error::Duplicate { path, line, .. } => (path.display().to_string(), line),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn whitespace_is_tolerated() {
    let run =
        Run::from_str_named("\n  q1\tQ0   d1 1 2.5 tag\r\n\nq1 Q0 d2 2 1e0 tag  \n", "r").unwrap();
    assert_eq!(run.num_entries(), 2);
    assert_eq!(run.name(), "tag");
    let qrels = Qrels::from_str_named("q1\t0\td1\t1\r\n\n q1 0 d2 0 \n", "q").unwrap();
    assert_eq!(qrels.get("q1").unwrap().len(), 2);
}

#[test]
fn malformed_lines_name_file_and_line() {
    let cases = [
        ("q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 t\n", 2),     // 5 fields
        ("q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 abc t\n", 2), // score not a number
        ("q1 Q0 d1 1 nan t\n", 1),                   // non-finite
        ("q1 Q0 d1 1 1 t extra\n", 1),               // 7 fields
        ("q1 Q0 d1 1 1 t\nq2 Q0 d1 1 1 t\nq1 Q0 d1 3 0 t\n", 3), // duplicate
    ];
    for (text, line) in cases {
        let e = Run::from_str_named(text, "my.run").unwrap_err();
        assert_eq!(err_line(e), ("my.run".into(), line), "{text:?}");
    }
    let qcases = [
        ("q 0 d 1\nq 0 d2\n", 2),
        ("q 0 d x\n", 1),
        ("q 0 d 1\nq 0 d 2\n", 2),
        ("q 0 d 1.5\n", 1),
    ];
    for (text, line) in qcases {
        let e = Qrels::from_str_named(text, "my.qrels").unwrap_err();
        assert_eq!(err_line(e), ("my.qrels".into(), line), "{text:?}");
    }
    let msg = Run::from_str_named("q1 Q0 d1 1 x t\n", "runs/a.trec")
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("runs/a.trec:1: score must be a finite number"),
        "{msg}"
    );
    let missing = Run::from_path("/nonexistent/run.trec")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/run.trec"), "{missing}");
}

#[test]
fn ties_break_on_docid_descending_and_rank_column_is_ignored() {
    // d1 and d2 tie; trec_eval puts d2 first. The rank column says otherwise and is ignored.
    let qrels = Qrels::from_str_named("q 0 d1 1\nq 0 d2 0\n", "q").unwrap();
    let run = Run::from_str_named("q Q0 d1 1 5.0 t\nq Q0 d2 2 5.0 t\n", "r").unwrap();
    let rr = Measure::parse("RR").unwrap();
    let e = evaluate(&qrels, &run, &[rr], &EvalOptions::default()).unwrap();
    assert_eq!(e.means[0], 0.5);
}

#[test]
fn max_docs_judged_only_and_relevance_level() {
    let qrels = Qrels::from_str_named("q 0 a 2\nq 0 b 1\nq 0 c 0\n", "q").unwrap();
    // ranking: x (unjudged), b (1), c (0), a (2)
    let run = Run::from_str_named(
        "q Q0 x 1 4 t\nq Q0 b 2 3 t\nq Q0 c 3 2 t\nq Q0 a 4 1 t\n",
        "r",
    )
    .unwrap();
    let m = [
        Measure::parse("RR").unwrap(),
        Measure::parse("P@2").unwrap(),
        Measure::parse("Judged@2").unwrap(),
    ];
    let e = |o: EvalOptions| evaluate(&qrels, &run, &m, &o).unwrap().means;
    assert_eq!(e(EvalOptions::default()), vec![0.5, 0.5, 0.5]);
    assert_eq!(
        e(EvalOptions {
            relevance_level: 2,
            ..Default::default()
        }),
        vec![0.25, 0.0, 0.5]
    );
    assert_eq!(
        e(EvalOptions {
            judged_only: true,
            ..Default::default()
        }),
        vec![1.0, 0.5, 1.0]
    );
    assert_eq!(
        e(EvalOptions {
            max_docs: Some(1),
            ..Default::default()
        }),
        vec![0.0, 0.0, 0.0]
    );
    // per-measure overrides in ir_measures syntax
    let o = [
        Measure::parse("RR(rel=2)").unwrap(),
        Measure::parse("P(judged_only=True)@2").unwrap(),
    ];
    assert_eq!(
        evaluate(&qrels, &run, &o, &EvalOptions::default())
            .unwrap()
            .means,
        vec![0.25, 0.5]
    );
}

#[test]
fn writing_is_atomic_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let run =
        Run::from_str_named("q2 Q0 b 1 0.25 t\nq1 Q0 a 7 1.5 t\nq1 Q0 c 3 2.5 t\n", "r").unwrap();
    let path = dir.path().join("out.trec");
    run.write_path(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "q2 Q0 b 1 0.25 t\nq1 Q0 c 1 2.5 t\nq1 Q0 a 2 1.5 t\n");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    // a failing write leaves no file behind and reports the path
    let bad = dir.path().join("missing-dir/out.trec");
    assert!(
        run.write_path(&bad)
            .unwrap_err()
            .to_string()
            .contains("missing-dir")
    );
}

proptest! {
    #[test]
    fn run_write_then_read_is_identity(
        entries in proptest::collection::btree_map(("q[0-9]{1,2}", "[a-z0-9]{1,6}"), -1e6f64..1e6, 1..60)
    ) {
        let mut run = Run::new("prop");
        for ((q, d), s) in &entries {
            run.push(q, d, *s).unwrap();
        }
        let mut buf = Vec::new();
        run.write_to(&mut buf).unwrap();
        let back = Run::from_reader(&buf[..], std::path::Path::new("buf")).unwrap();
        prop_assert_eq!(back.num_entries(), entries.len());
        for ((q, d), s) in &entries {
            let got = back.get(q).unwrap().iter().find(|x| x.0 == d.as_str()).unwrap().1;
            prop_assert_eq!(got, *s);
        }
    }
}

#[test]
fn push_rejects_duplicates_including_parsed_ones() {
    let mut run = Run::from_str_named("q Q0 a 1 1.0 t\n", "r").unwrap();
    assert!(
        run.push("q", "a", 2.0).is_err(),
        "a came from the parsed text"
    );
    run.push("q", "b", 2.0).unwrap();
    assert!(run.push("q", "b", 3.0).is_err());
    run.push("q2", "b", 3.0).unwrap();
    assert!(run.push("q", "c", f64::NAN).is_err());
    assert_eq!(run.num_entries(), 3);
}

/// Scores equal in float32 tie, as in trec_eval (which stores them as C floats), and the tie is
/// broken by docid descending. pytrec_eval-terrier 0.5.11 gives RR 0.5 and nDCG@10 0.6309 for
/// both runs below (qrels: a relevant, b not).
#[test]
fn scores_are_compared_in_float32_as_trec_eval_does() {
    let qrels = Qrels::from_str_named("q1 0 a 1\nq1 0 b 0\n", "q").unwrap();
    let measures = [
        Measure::parse("recip_rank").unwrap(),
        Measure::parse("ndcg_cut.10").unwrap(),
    ];
    for text in [
        "q1 Q0 a 1 1.00000001 t\nq1 Q0 b 2 1.00000002 t\n",
        "q1 Q0 a 1 1.00000002 t\nq1 Q0 b 2 1.00000001 t\n",
    ] {
        let run = Run::from_str_named(text, "r").unwrap();
        let e = evaluate(&qrels, &run, &measures, &EvalOptions::default()).unwrap();
        assert_eq!(e.mean(&measures[0]), Some(0.5), "{text}");
        assert!((e.mean(&measures[1]).unwrap() - 0.6309297535714575).abs() < 1e-12);
    }
}

/// A UTF-8 byte order mark at the start of a file is not part of the first qid.
#[test]
fn a_byte_order_mark_is_skipped() {
    let qrels = Qrels::from_str_named("\u{feff}q1 0 a 1\nq2 0 b 1\n", "q").unwrap();
    assert!(qrels.get("q1").is_some(), "qid q1, not \\u{{feff}}q1");
    let run = Run::from_str_named("\u{feff}q1 Q0 a 1 1 t\nq2 Q0 b 1 1 t\n", "r").unwrap();
    let qids: Vec<&str> = run.queries().iter().map(|q| q.qid()).collect();
    assert_eq!(qids, ["q1", "q2"]);
    // one in the middle of a file is not a byte order mark: it stays (and is an error there
    // only if it makes the line malformed)
    let run = Run::from_str_named("q1 Q0 a 1 1 t\n\u{feff}q2 Q0 b 1 1 t\n", "r").unwrap();
    assert_eq!(run.queries()[1].qid(), "\u{feff}q2");
}

/// A line far longer than the read block is read whole (the block grows geometrically).
#[test]
fn a_very_long_line_is_read_whole() {
    let long = "d".repeat(20 << 20); // longer than the 8 MiB read block
    let text = format!("q1 Q0 {long} 1 1 t\nq1 Q0 short 2 0.5 t\n");
    let run = Run::from_str_named(&text, "r").unwrap();
    let ranked = run.queries()[0].ranked();
    assert_eq!(ranked.len(), 2);
    assert_eq!(ranked[0].0.len(), 20 << 20);
}
