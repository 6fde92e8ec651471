//! Every reader of the data sets on hostile bytes: arbitrary bytes, and lines built from the
//! pieces that break parsers (tabs, quotes, braces, a byte-order mark, carriage returns, huge
//! and negative numbers, invalid UTF-8, empty fields). A reader returns data or an error that
//! names the file, never panics. CI runs proptest's default number of cases per property;
//! `PROPTEST_CASES=1000000 cargo test -p rank-data --test hostile --release` is the long run.

use std::path::Path;

use proptest::prelude::*;
use rank_data::{beir, msmarco, trec};

/// Lines made of the pieces that break parsers.
fn nasty_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\t".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\"_id\"".to_vec()),
        Just(b"\"text\"".to_vec()),
        Just(b"\"title\"".to_vec()),
        Just(b"\"query\"".to_vec()),
        Just(b"\"pos\"".to_vec()),
        Just(b"\"neg\"".to_vec()),
        Just(b"Q0".to_vec()),
        Just(b"0".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"1e308".to_vec()),
        Just(b"NaN".to_vec()),
        Just(b"q1".to_vec()),
        Just(b"d1".to_vec()),
        Just(b"\xFF\xFE".to_vec()),
        Just("é中".as_bytes().to_vec()),
        "[a-z0-9]{1,6}".prop_map(|s| s.into_bytes()),
    ];
    prop::collection::vec(piece, 0..80).prop_map(|v| v.concat())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..600), nasty_text()]
}

/// Every reader on `content` written as `name`: each returns, and an error names the file.
fn read_all(content: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    std::fs::write(&path, content).unwrap();
    let p = path.as_path();
    let named = |r: Result<(), rank_data::Error>| -> Result<(), TestCaseError> {
        if let Err(e) = r {
            let msg = e.to_string();
            prop_assert!(
                msg.contains("input.txt"),
                "the error does not name the file: {msg}"
            );
        }
        Ok(())
    };
    named(trec::read_queries(p).map(drop))?;
    named(trec::read_collection(p, |_| true).map(drop))?;
    named(trec::read_qrels(p).map(drop))?;
    named(trec::read_run(p).map(drop))?;
    named(beir::read_corpus(p, |_| true).map(drop))?;
    named(beir::read_queries(p).map(drop))?;
    named(beir::read_qrels(p).map(drop))?;
    named(msmarco::read_examples(p).map(drop))?;
    Ok(())
}

proptest! {
    #[test]
    fn readers_return_or_name_the_file(content in bytes()) {
        read_all(&content)?;
    }
}

#[test]
fn a_missing_file_is_named_by_every_reader() {
    let p = Path::new("/nonexistent/input.txt");
    for msg in [
        trec::read_queries(p).map(drop).unwrap_err().to_string(),
        trec::read_qrels(p).map(drop).unwrap_err().to_string(),
        beir::read_corpus(p, |_| true)
            .map(drop)
            .unwrap_err()
            .to_string(),
        msmarco::read_examples(p).map(drop).unwrap_err().to_string(),
    ] {
        assert!(msg.contains("/nonexistent/input.txt"), "{msg}");
    }
}
