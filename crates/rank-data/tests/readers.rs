//! Readers on small hand-written files: good input, and every kind of bad input giving an
//! error with the file and the line.

use rank_data::msmarco::{ExampleReader, TripleReader};
use rank_data::trec::{CollectionReader, TsvReader};
use rank_data::{Error, beir, msmarco, trec};
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(content)
        .unwrap();
    p
}

/// The error must point at `file:line` and say `needle`.
#[track_caller]
fn assert_at(err: Error, file: &Path, line: u64, needle: &str) {
    let msg = err.to_string();
    let (p, l) = err
        .location()
        .unwrap_or_else(|| panic!("error without location: {msg}"));
    assert_eq!(p, file, "{msg}");
    assert_eq!(l, line, "{msg}");
    assert!(
        msg.contains(&format!("{}:{line}", file.display())),
        "message lacks file:line: {msg}"
    );
    assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
}

#[test]
fn queries_tsv_good() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "queries.tsv",
        b"\xEF\xBB\xBF1\tfirst query\r\n\n22\tsecond\twith a tab\n3\t\n",
    );
    let q = trec::read_queries(&p).unwrap();
    assert_eq!(q.len(), 3);
    assert_eq!(q.get("1"), Some("first query"));
    assert_eq!(q.get("22"), Some("second\twith a tab"));
    assert_eq!(q.get("3"), Some(""));
    // streaming reader reports the line of each row (blank line 2 skipped)
    let mut r = TsvReader::open(&p, "query").unwrap();
    let mut lines = Vec::new();
    while let Some(row) = r.next() {
        row.unwrap();
        lines.push(r.line());
    }
    assert_eq!(lines, [1, 3, 4]);
}

#[test]
fn queries_tsv_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "q.tsv", b"1\tok\n2 no tab here\n");
    assert_at(trec::read_queries(&p).unwrap_err(), &p, 2, "no tab");
    let p = write(tmp.path(), "q.tsv", b"1\tok\n2\tok\n\t missing id\n");
    assert_at(trec::read_queries(&p).unwrap_err(), &p, 3, "query id");
    let p = write(tmp.path(), "q.tsv", b"1\ta\n2\tb\n\n1\tc\n");
    let e = trec::read_queries(&p).unwrap_err();
    assert!(matches!(e, Error::Duplicate { first_line: 1, .. }), "{e}");
    assert_at(e, &p, 4, "duplicate query id \"1\"");
    let p = write(tmp.path(), "q.tsv", b"1\tok\n2\tbad \xff byte\n");
    assert_at(trec::read_queries(&p).unwrap_err(), &p, 2, "UTF-8");
    let missing = tmp.path().join("absent.tsv");
    match trec::read_queries(&missing).unwrap_err() {
        Error::Io { path, .. } => assert_eq!(path, missing),
        e => panic!("expected an I/O error, got {e}"),
    }
}

#[test]
fn collection_tsv_streams_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "collection.tsv",
        b"10\tten\n11\televen\n12\ttwelve\n",
    );
    let docs: Vec<_> = CollectionReader::open(&p)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(
        (docs[1].id.as_str(), docs[1].text.as_str()),
        ("11", "eleven")
    );
    assert!(docs[1].title.is_empty());
    let c = trec::read_collection(&p, |id| id != "11").unwrap();
    assert_eq!(c.len(), 2);
    assert!(c.get("11").is_none() && c.get("12").unwrap().text == "twelve");
    // a duplicate among kept documents is an error; among dropped ones it is not read
    let p = write(tmp.path(), "c.tsv", b"1\ta\n2\tb\n1\tc\n");
    assert_at(
        trec::read_collection(&p, |_| true).unwrap_err(),
        &p,
        3,
        "duplicate document id",
    );
    assert_eq!(trec::read_collection(&p, |id| id == "2").unwrap().len(), 1);
    let p = write(tmp.path(), "c.tsv", b"1\ta\n2\n");
    assert_at(
        CollectionReader::open(&p)
            .unwrap()
            .nth(1)
            .unwrap()
            .unwrap_err(),
        &p,
        2,
        "passage id<TAB>text",
    );
}

#[test]
fn trec_qrels_and_runs_go_through_ir_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "qrels.txt",
        b"q1 0 d1 2\nq1 0 d2 0\nq2 0 d1 1\n",
    );
    let q = trec::read_qrels(&p).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.get("q1").unwrap().get("d1"), Some(2));
    let p = write(tmp.path(), "qrels.txt", b"q1 0 d1 2\nq1 0 d2\n");
    assert_at(trec::read_qrels(&p).unwrap_err(), &p, 2, "4 fields");
    let p = write(tmp.path(), "qrels.txt", b"q1 0 d1 2\nq1 0 d2 high\n");
    assert_at(trec::read_qrels(&p).unwrap_err(), &p, 2, "integer");
    let p = write(
        tmp.path(),
        "r.trec",
        b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2 2.5 t\n",
    );
    let r = trec::read_run(&p).unwrap();
    assert_eq!(r.get("q1").unwrap().len(), 2);
    let p = write(tmp.path(), "r.trec", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2 x t\n");
    assert_at(trec::read_run(&p).unwrap_err(), &p, 2, "");
    let p = write(
        tmp.path(),
        "r.trec",
        b"q1 Q0 d1 1 3.5 t\nq1 Q0 d1 2 2.5 t\n",
    );
    assert_at(trec::read_run(&p).unwrap_err(), &p, 2, "duplicate");
}

#[test]
fn beir_corpus_and_queries_good() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "corpus.jsonl",
        br#"{"_id": "d1", "title": "T1", "text": "body one", "metadata": {}}
{"_id": 7, "text": "no title"}

{"_id": "d3", "title": null, "text": "null title"}
"#,
    );
    let c = beir::read_corpus(&p, |_| true).unwrap();
    assert_eq!(c.len(), 3);
    let d1 = c.get("d1").unwrap();
    assert_eq!((d1.title.as_str(), d1.text.as_str()), ("T1", "body one"));
    assert_eq!(d1.contents(), "T1 body one");
    assert_eq!(c.get("7").unwrap().contents(), "no title");
    assert_eq!(c.get("d3").unwrap().title, "");
    let order: Vec<&str> = c.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(order, ["d1", "7", "d3"]);
    let p = write(
        tmp.path(),
        "queries.jsonl",
        br#"{"_id": "q1", "text": "what"}
{"_id": "q2", "text": "why", "metadata": {"x": 1}}
"#,
    );
    let q = beir::read_queries(&p).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.get("q2"), Some("why"));
}

#[test]
fn beir_corpus_and_queries_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"_id": "d1", "title": "T", "text": "x"}"#;
    for (bad, needle) in [
        (r#"{"_id": "d2", "title": "T", "text": "x""#, "JSON object"), // truncated
        (r#"{"_id": "d2", "title": "T"}"#, "missing field `text`"),
        (r#"{"title": "T", "text": "x"}"#, "missing field `_id`"),
        (r#"{"_id": "d2", "title": "T", "text": 5}"#, "invalid type"),
        (r#"{"_id": "", "text": "x"}"#, "non-empty \"_id\""),
        (r#"["d2", "x"]"#, "JSON object"),
        (good, "duplicate document id \"d1\""),
    ] {
        let p = write(
            tmp.path(),
            "corpus.jsonl",
            format!("{good}\n\n{bad}\n").as_bytes(),
        );
        assert_at(beir::read_corpus(&p, |_| true).unwrap_err(), &p, 3, needle);
    }
    let p = write(
        tmp.path(),
        "queries.jsonl",
        b"{\"_id\": \"q1\", \"text\": \"a\"}\n{\"_id\": \"q1\", \"text\": \"b\"}\n",
    );
    assert_at(
        beir::read_queries(&p).unwrap_err(),
        &p,
        2,
        "duplicate query id",
    );
    let p = write(tmp.path(), "queries.jsonl", b"{\"_id\": \"q1\"}\n");
    assert_at(
        beir::read_queries(&p).unwrap_err(),
        &p,
        1,
        "missing field `text`",
    );
}

#[test]
fn beir_qrels_good_and_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "test.tsv",
        b"query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n\n2\td1\t2\n",
    );
    let q = beir::read_qrels(&p).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.get("1").unwrap().len(), 2);
    assert_eq!(q.get("2").unwrap().get("d1"), Some(2));
    // no header is fine too
    let p = write(tmp.path(), "t.tsv", b"1\td1\t1\n");
    assert_eq!(beir::read_qrels(&p).unwrap().len(), 1);
    for (content, line, needle) in [
        (&b"query-id\tcorpus-id\tscore\n1\td1\n"[..], 2, "3 fields"),
        (b"query-id\tcorpus-id\tscore\n1\td1\tyes\n", 2, "integer"),
        (b"query-id\tdoc-id\tscore\n1\td1\t1\n", 1, "header"),
        (b"1\td1\t1\nquery-id\tcorpus-id\tscore\n", 2, "integer"),
        (b"1\td1\t1\n1\td2\t1\n1\td1\t0\n", 3, "duplicate judgement"),
        (b"1\td1\t1\n1\td2\t1 extra\n", 2, "3 fields"),
    ] {
        let p = write(tmp.path(), "t.tsv", content);
        assert_at(beir::read_qrels(&p).unwrap_err(), &p, line, needle);
    }
}

#[test]
fn msmarco_examples_good_and_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "train.jsonl",
        br#"{"query": "q one", "pos": ["p1"], "neg": ["n1", "n2"], "pos_scores": [1.0]}
{"query": "q two", "pos": ["p2", "p3"]}
"#,
    );
    let ex = msmarco::read_examples(&p).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].neg, ["n1", "n2"]);
    assert_eq!(ex[1].pos, ["p2", "p3"]);
    assert!(ex[1].neg.is_empty());
    for (bad, needle) in [
        (
            r#"{"query": "q", "pos": [], "neg": ["n"]}"#,
            "at least one passage in \"pos\"",
        ),
        (r#"{"query": " ", "pos": ["p"]}"#, "non-empty \"query\""),
        (r#"{"pos": ["p"], "neg": []}"#, "missing field `query`"),
        (r#"{"query": "q", "pos": "p"}"#, "invalid type"),
        (
            r#"{"query": "q", "pos": ["p"], "neg": [1]}"#,
            "invalid type",
        ),
        ("not json", "expected a JSON object"),
    ] {
        let text = format!("{{\"query\": \"ok\", \"pos\": [\"p\"]}}\n{bad}\n");
        let p = write(tmp.path(), "train.jsonl", text.as_bytes());
        assert_at(msmarco::read_examples(&p).unwrap_err(), &p, 2, needle);
        // the streaming reader gives the good line first, then the error
        let mut r = ExampleReader::open(&p).unwrap();
        assert!(r.next().unwrap().is_ok());
        assert!(r.next().unwrap().is_err());
    }
}

#[test]
fn msmarco_triples_good_and_bad() {
    let r = TripleReader::from_reader(&b"what\tyes\tno\n\nwho\tme\tyou\n"[..], "triples.tsv");
    let t: Vec<_> = r.collect::<Result<_, _>>().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (t[1].query.as_str(), t[1].pos.as_str(), t[1].neg.as_str()),
        ("who", "me", "you")
    );
    let name = Path::new("triples.tsv");
    for (content, line, needle) in [
        (&b"a\tb\tc\na\tb\n"[..], 2, "3 tab-separated fields"),
        (b"a\tb\tc\td\n", 1, "found 4"),
        (b"a\tb\tc\na\t\tc\n", 2, "non-empty positive"),
        (b"a\tb\tc\n\n\xfe\tb\tc\n", 3, "UTF-8"),
    ] {
        let err = TripleReader::from_reader(content, name)
            .find_map(|x| x.err())
            .expect("an error");
        assert_at(err, name, line, needle);
    }
}

#[test]
fn in_memory_readers_name_their_source() {
    let err = beir::CorpusReader::from_reader(&b"{}\n"[..], "mem:corpus")
        .next()
        .unwrap()
        .unwrap_err();
    assert_at(err, Path::new("mem:corpus"), 1, "missing field");
    let err = beir::qrels_from_reader(&b"1 d 1\n1 d x\n"[..], "mem:qrels").unwrap_err();
    assert_at(err, Path::new("mem:qrels"), 2, "integer");
}
