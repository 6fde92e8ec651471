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
        ("# comment\nq1 Q0 d1 1 1\n", 2),            // 5 fields after a comment
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
        ("q 0 d 1 extra\n", 1), // trec_eval's get_qrels refuses a fifth field
        ("# c\nq 0 d\n", 2),
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

/// trec_eval ignores whatever follows the run tag (its test/results.trunc has 9 fields), and
/// the run id it prints is the tag of the last line.
#[test]
fn fields_after_the_run_tag_are_ignored() {
    let run = Run::from_str_named(
        "301\tQ0\tA\t99\t  2.1\tSTANDARD more junk at\n303 Q0 B 1 1.5 OTHER end of lines.\n",
        "r",
    )
    .unwrap();
    assert_eq!(run.num_entries(), 2);
    assert_eq!(run.name(), "STANDARD");
    assert_eq!(run.run_id(), "OTHER");
    assert_eq!(run.get("301").unwrap().iter().next(), Some(("A", 2.1)));
}

/// trec_eval 10.0's comments: a line whose first non-blank character is `#`; a `#` inside a
/// docid is part of the docid (test/qrels.comment.test, msmarco_v2.1_doc_00_880019750#4_...).
#[test]
fn comment_lines_are_skipped_but_hashes_in_docids_are_kept() {
    let qrels = Qrels::from_str_named(
        "# comment here\n301 0 CR93E-10279 0\n  # and comment here\n301 0 CR#93E-1860 1\n",
        "q",
    )
    .unwrap();
    let q = qrels.get("301").unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.get("CR#93E-1860"), Some(1));
    let run = Run::from_str_named(
        "# header\nq1 Q0 doc#4_1 1 0.7 t\n\t# indented comment\nq1 Q0 doc#5 2 0.6 t\n",
        "r",
    )
    .unwrap();
    let docs: Vec<&str> = run.get("q1").unwrap().iter().map(|d| d.0).collect();
    assert_eq!(docs, ["doc#4_1", "doc#5"]);
    // line numbers still count the comment lines
    let e = Run::from_str_named("# a\n# b\nq1 Q0 d 1 x t\n", "r").unwrap_err();
    assert_eq!(err_line(e), ("r".into(), 3));
}

#[cfg(feature = "gzip")]
#[test]
fn gzip_files_are_read_whatever_their_name() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let gz = |name: &str, text: &str| {
        let path = dir.path().join(name);
        let mut enc = GzEncoder::new(std::fs::File::create(&path).unwrap(), Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        path
    };
    let qrels = Qrels::from_path(gz("qrels.txt.gz", "q1 0 a 1\nq1 0 b 0\n")).unwrap();
    assert_eq!(qrels.get("q1").unwrap().len(), 2);
    // detected by the magic bytes, not the extension
    let run = Run::from_path(gz("run.trec", "q1 Q0 b 1 2 t\nq1 Q0 a 2 1 t\n")).unwrap();
    let rr = Measure::parse("RR").unwrap();
    let e = evaluate(&qrels, &run, &[rr], &EvalOptions::default()).unwrap();
    assert_eq!(e.means[0], 0.5);
    // concatenated members, as `cat a.gz b.gz` gives, are read whole
    let a = std::fs::read(gz("a.gz", "q1 0 a 1\n")).unwrap();
    let b = std::fs::read(gz("b.gz", "q2 0 b 1\n")).unwrap();
    let both = dir.path().join("both.gz");
    std::fs::write(&both, [a, b].concat()).unwrap();
    assert_eq!(Qrels::from_path(&both).unwrap().len(), 2);
    // errors in compressed files name the file and the line of the decompressed text
    let bad = gz("bad.gz", "q1 Q0 a 1 1 t\nq1 Q0 b 2 oops t\n");
    let e = Run::from_path(&bad).unwrap_err();
    assert_eq!(err_line(e), (bad.display().to_string(), 2));
    // a truncated gzip file is an I/O error naming the file, not a panic
    let full = std::fs::read(gz("full.gz", &"q1 Q0 a 1 1 t\n".repeat(1000))).unwrap();
    let cut = dir.path().join("cut.gz");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let msg = Run::from_path(&cut).unwrap_err().to_string();
    assert!(msg.contains("cut.gz"), "{msg}");
}

/// `-` reads standard input; errors name `<stdin>`. Checked in a child process (this test
/// binary run again, with the text on its standard input).
#[test]
fn a_dash_reads_standard_input() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if std::env::var_os("IR_METRICS_STDIN_CHILD").is_some() {
        match std::env::var("IR_METRICS_STDIN_CHILD").unwrap().as_str() {
            "run" => match Run::from_path("-") {
                Ok(r) => println!("RESULT entries={} id={}", r.num_entries(), r.run_id()),
                Err(e) => println!("RESULT error={e}"),
            },
            _ => match Qrels::from_path("-") {
                Ok(q) => println!("RESULT queries={}", q.len()),
                Err(e) => println!("RESULT error={e}"),
            },
        }
        return;
    }
    let child = |kind: &str, input: &[u8]| {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["a_dash_reads_standard_input", "--exact", "--nocapture"])
            .env("IR_METRICS_STDIN_CHILD", kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string))
            .unwrap_or_else(|| panic!("no result from the child: {text}"))
    };
    assert_eq!(
        child("run", b"q1 Q0 a 1 1 x\nq2 Q0 b 1 1 y\n"),
        "entries=2 id=y"
    );
    assert_eq!(child("qrels", b"q1 0 a 1\nq2 0 b 1\n"), "queries=2");
    assert_eq!(
        child("qrels", b"q1 0 a 1\nq2 0 b\n"),
        "error=<stdin>:2: expected 4 fields `qid iter docid grade`, found 3"
    );
    #[cfg(feature = "gzip")]
    {
        use flate2::{Compression, write::GzEncoder};
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"q1 Q0 a 1 1 z\n").unwrap();
        assert_eq!(child("run", &enc.finish().unwrap()), "entries=1 id=z");
    }
}
