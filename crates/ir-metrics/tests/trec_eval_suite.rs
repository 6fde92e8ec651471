//! trec_eval 10.0's own regression tests (`make quicktest`), run through this crate and
//! compared byte for byte with trec_eval's expected outputs.
//!
//! trec_eval's `test/` folder is NIST data and is not in this repository: run
//! `scripts/trec_eval_suite.sh`, which copies it from a trec_eval checkout and sets
//! `TREC_EVAL_TEST_DIR`. Every `make quicktest` case is run.

use ir_metrics::{
    EvalOptions, Prefs, Qrels, QrelsJg, Run, ZScores, parse_jg_measures, parse_measure_list,
    parse_prefs_measures, trec_eval_jg_output, trec_eval_output, trec_eval_prefs_output,
    trec_eval_zscore_output,
};
use std::path::{Path, PathBuf};

struct Case {
    /// trec_eval's command line (for messages)
    command: &'static str,
    qrels: &'static str,
    run: &'static str,
    measures: &'static [&'static str],
    per_query: bool,
    complete: bool,
    level: i64,
    max_docs: Option<usize>,
    /// `-Z`: the z-score file
    zscores: Option<&'static str>,
    /// `-R`: the format of the relevance file (`qrels` by default)
    rel_format: &'static str,
    expected: &'static str,
}

const fn case(
    command: &'static str,
    qrels: &'static str,
    run: &'static str,
    measures: &'static [&'static str],
    expected: &'static str,
) -> Case {
    Case {
        command,
        qrels,
        run,
        measures,
        per_query: false,
        complete: false,
        level: 1,
        max_docs: None,
        zscores: None,
        rel_format: "qrels",
        expected,
    }
}

const CASES: &[Case] = &[
    case(
        "trec_eval test/qrels.test test/results.test",
        "qrels.test",
        "results.test",
        &["official"],
        "out.test",
    ),
    case(
        "trec_eval test/qrels.test.with-comments test/results.test",
        "qrels.test.with-comments",
        "results.test",
        &["official"],
        "out.test",
    ),
    case(
        "trec_eval test/qrels.comment.test test/results.comment.test",
        "qrels.comment.test",
        "results.comment.test",
        &["official"],
        "out.comment.test",
    ),
    case(
        "trec_eval -m all_trec test/qrels.test test/results.test",
        "qrels.test",
        "results.test",
        &["all_trec"],
        "out.test.a",
    ),
    Case {
        per_query: true,
        ..case(
            "trec_eval -m all_trec -q test/qrels.test test/results.test",
            "qrels.test",
            "results.test",
            &["all_trec"],
            "out.test.aq",
        )
    },
    Case {
        per_query: true,
        complete: true,
        ..case(
            "trec_eval -m all_trec -q -c test/qrels.test test/results.trunc",
            "qrels.test",
            "results.trunc",
            &["all_trec"],
            "out.test.aqc",
        )
    },
    Case {
        per_query: true,
        complete: true,
        max_docs: Some(100),
        ..case(
            "trec_eval -m all_trec -q -c -M100 test/qrels.test test/results.trunc",
            "qrels.test",
            "results.trunc",
            &["all_trec"],
            "out.test.aqcM",
        )
    },
    Case {
        per_query: true,
        level: 2,
        ..case(
            "trec_eval -m all_trec -mrelstring.20 -q -l2 test/qrels.rel_level test/results.test",
            "qrels.rel_level",
            "results.test",
            &["all_trec", "relstring.20"],
            "out.test.aql",
        )
    },
    Case {
        per_query: true,
        ..case(
            "trec_eval -q -miprec_at_recall..10,.20,.25,.75,.50 -m P.5,7,3 -m recall.20,2000 \
             -m Rprec_mult.5.0,0.2,0.35 -mutility.2,-1,0,0 -m 11pt_avg..25,.5,.75 \
             -mndcg.1=3,2=9,4=4.5 -mndcg_cut.10,20,23.4 -msuccess.2,5,20 test/qrels.test \
             test/results.test",
            "qrels.test",
            "results.test",
            &[
                "iprec_at_recall..10,.20,.25,.75,.50",
                "P.5,7,3",
                "recall.20,2000",
                "Rprec_mult.5.0,0.2,0.35",
                "utility.2,-1,0,0",
                "11pt_avg..25,.5,.75",
                "ndcg.1=3,2=9,4=4.5",
                "ndcg_cut.10,20,23.4",
                "success.2,5,20",
            ],
            "out.test.meas_params",
        )
    },
    Case {
        per_query: true,
        zscores: Some("zscores_file"),
        ..case(
            "trec_eval -q -m all_trec -Z test/zscores_file test/qrels.test test/results.test",
            "qrels.test",
            "results.test",
            &["all_trec"],
            "out.test.aqZ",
        )
    },
    Case {
        per_query: true,
        rel_format: "qrels_jg",
        ..case(
            "trec_eval -m qrels_jg -q -R qrels_jg test/qrels.123 test/results.test",
            "qrels.123",
            "results.test",
            &["qrels_jg"],
            "out.test.qrels_jg",
        )
    },
    Case {
        per_query: true,
        rel_format: "qrels_jg",
        ..case(
            "trec_eval -m qrels_jg -q -R qrels_jg test/qrels.comments.123 test/results.test",
            "qrels.comments.123",
            "results.test",
            &["qrels_jg"],
            "out.test.qrels_jg",
        )
    },
    Case {
        per_query: true,
        rel_format: "prefs",
        ..case(
            "trec_eval -m all_prefs -q -R prefs test/prefs.test test/prefs.results.test",
            "prefs.test",
            "prefs.results.test",
            &["all_prefs"],
            "out.test.prefs",
        )
    },
    Case {
        per_query: true,
        rel_format: "prefs",
        ..case(
            "trec_eval -m all_prefs -q -R prefs test/prefs.comment.test test/prefs.results.test",
            "prefs.comment.test",
            "prefs.results.test",
            &["all_prefs"],
            "out.test.prefs",
        )
    },
    Case {
        per_query: true,
        rel_format: "qrels_prefs",
        ..case(
            "trec_eval -m all_prefs -q -R qrels_prefs test/qrels.test test/results.test",
            "qrels.test",
            "results.test",
            &["all_prefs"],
            "out.test.qrels_prefs",
        )
    },
];

fn test_dir() -> PathBuf {
    let dir = std::env::var_os("TREC_EVAL_TEST_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "TREC_EVAL_TEST_DIR is not set: it must name trec_eval 10.0's test/ folder \
                 (NIST data, not in this repository). Run scripts/trec_eval_suite.sh, which \
                 copies it from a trec_eval checkout and runs this test."
            )
        });
    assert!(
        dir.join("out.test").is_file(),
        "TREC_EVAL_TEST_DIR={} has no out.test: not trec_eval's test/ folder",
        dir.display()
    );
    dir
}

/// A case with trec_eval's default relevance format, `qrels` (with `-Z` if asked).
fn qrels_case(dir: &Path, c: &Case, run: &Run, opts: &EvalOptions) -> String {
    let qrels = Qrels::from_path(dir.join(c.qrels)).unwrap();
    let measures = parse_measure_list(c.measures).unwrap();
    match c.zscores {
        None => trec_eval_output(&qrels, run, &measures, opts, c.per_query).unwrap(),
        Some(z) => {
            let z = ZScores::from_path(dir.join(z)).unwrap();
            trec_eval_zscore_output(&qrels, run, &measures, opts, c.per_query, &z).unwrap()
        }
    }
}

#[test]
#[ignore = "needs trec_eval's test/ folder: scripts/trec_eval_suite.sh"]
fn trec_eval_quicktest_outputs_are_reproduced_byte_for_byte() {
    let dir = test_dir();
    let mut values = 0usize;
    let mut failures = Vec::new();
    for c in CASES {
        let run = Run::from_path(dir.join(c.run)).unwrap();
        let opts = EvalOptions {
            relevance_level: c.level,
            judged_only: false,
            complete: c.complete,
            max_docs: c.max_docs,
        };
        let got = match c.rel_format {
            "qrels" => qrels_case(&dir, c, &run, &opts),
            "qrels_jg" => {
                let qrels = QrelsJg::from_path(dir.join(c.qrels)).unwrap();
                let measures = parse_jg_measures(c.measures).unwrap();
                trec_eval_jg_output(&qrels, &run, &measures, &opts, c.per_query).unwrap()
            }
            "prefs" | "qrels_prefs" => {
                let path = dir.join(c.qrels);
                let prefs = if c.rel_format == "prefs" {
                    Prefs::from_path(path)
                } else {
                    Prefs::from_qrels_path(path)
                }
                .unwrap();
                let measures = parse_prefs_measures(c.measures).unwrap();
                trec_eval_prefs_output(&prefs, &run, &measures, &opts, c.per_query).unwrap()
            }
            other => panic!("unknown rel_format {other}"),
        };
        let want = std::fs::read_to_string(dir.join(c.expected)).unwrap();
        if got == want {
            values += want.lines().count();
            continue;
        }
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let mut diff = String::new();
        for i in 0..g.len().max(w.len()) {
            let (a, b) = (g.get(i).copied(), w.get(i).copied());
            if a != b {
                diff.push_str(&format!(
                    "  line {}: ours {:?}\n          trec_eval {:?}\n",
                    i + 1,
                    a.unwrap_or("<none>"),
                    b.unwrap_or("<none>")
                ));
                if diff.len() > 4000 {
                    break;
                }
            }
        }
        failures.push(format!("{} (vs {}):\n{diff}", c.command, c.expected));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} trec_eval quicktest cases, {values} output lines identical",
        CASES.len()
    );
}
