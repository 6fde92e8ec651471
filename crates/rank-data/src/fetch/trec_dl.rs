//! The TREC DL conversion: anserini-tools' qrels and topics and rank_llm's runs and JSON
//! results laid out as `qrels.txt`, `queries.tsv`, `runs/<tag>.trec` and `collection.tsv`.
//! Qrels and runs are parsed with `ir-metrics` (errors name the file and line); the run text is
//! then rewritten field by field so that the scores keep their bytes.

use super::{FetchError, Result, io_err, line_err, lines_of};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

/// The query ids of a TREC qrels file (parsed by `ir-metrics`).
pub(super) fn qrels_qids(path: &Path) -> Result<HashSet<String>> {
    let qrels =
        ir_metrics::Qrels::from_path(path).map_err(|e| FetchError::Invalid(e.to_string()))?;
    Ok(qrels.qids().map(str::to_string).collect())
}

/// Sort key of an id: numeric ids by value, before any other id (by text).
fn id_key(id: &str) -> (u64, String) {
    match id.parse::<u64>() {
        Ok(n) => (n, String::new()),
        Err(_) => (u64::MAX, id.to_string()),
    }
}

/// `queries.tsv`: the topics (`qid<TAB>text`, CR stripped) of the judged queries, sorted by qid.
pub fn write_queries(topics: &Path, judged: &HashSet<String>, dst: &Path) -> Result<()> {
    let mut rows = BTreeMap::new();
    for (n, line) in lines_of(topics)? {
        let line = line.map_err(io_err(topics))?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (qid, text) = line
            .split_once('\t')
            .ok_or_else(|| line_err(topics, n, "expected `qid<TAB>text`"))?;
        if judged.contains(qid) {
            rows.insert(id_key(qid), format!("{qid}\t{text}\n"));
        }
    }
    let mut w = BufWriter::new(File::create(dst).map_err(io_err(dst))?);
    for row in rows.values() {
        w.write_all(row.as_bytes()).map_err(io_err(dst))?;
    }
    w.flush().map_err(io_err(dst))
}

/// A TREC run with its tag column (the 6th) replaced by `tag`, fields joined by one space. The
/// run is checked by `ir-metrics`' parser first (six fields, integer rank, finite score,
/// duplicates: errors name the file and line); the text is then rewritten line by line so that
/// every other field keeps its bytes.
pub fn retag_run(src: &Path, tag: &str, dst: &Path) -> Result<()> {
    ir_metrics::Run::from_path(src).map_err(|e| FetchError::Invalid(e.to_string()))?;
    let mut w = BufWriter::new(File::create(dst).map_err(io_err(dst))?);
    for (n, line) in lines_of(src)? {
        let line = line.map_err(io_err(src))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(line_err(
                src,
                n,
                &format!(
                    "expected 6 fields `qid Q0 docid rank score tag`, found {}",
                    fields.len()
                ),
            ));
        }
        writeln!(w, "{} {tag}", fields[..5].join(" ")).map_err(io_err(dst))?;
    }
    w.flush().map_err(io_err(dst))
}

/// Add the passages of a rank_llm `retrieve_results` JSON file (`[{"query", "hits": [{"docid",
/// "content", ...}]}]`) to `passages` (docid -> text). A docid seen twice must have one text.
pub fn collect_passages(
    json: &Path,
    passages: &mut BTreeMap<(u64, String), (String, String)>,
) -> Result<()> {
    let f = File::open(json).map_err(io_err(json))?;
    let v: serde_json::Value = serde_json::from_reader(BufReader::new(f))
        .map_err(|e| FetchError::Invalid(format!("{}: invalid JSON: {e}", json.display())))?;
    let bad = |what: &str| FetchError::Invalid(format!("{}: {what}", json.display()));
    let queries = v
        .as_array()
        .ok_or_else(|| bad("expected a JSON array of {\"query\", \"hits\"} objects"))?;
    for (qi, q) in queries.iter().enumerate() {
        let hits = q
            .get("hits")
            .and_then(|h| h.as_array())
            .ok_or_else(|| bad(&format!("element {qi}: no \"hits\" array")))?;
        for (hi, h) in hits.iter().enumerate() {
            let docid = match h.get("docid") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => return Err(bad(&format!("element {qi}, hit {hi}: no \"docid\""))),
            };
            let content = h
                .get("content")
                .and_then(|c| c.as_str())
                .ok_or_else(|| bad(&format!("element {qi}, hit {hi}: no \"content\" string")))?;
            let text: String = content
                .chars()
                .map(|c| {
                    if matches!(c, '\t' | '\n' | '\r') {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            match passages.entry(id_key(&docid)) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((docid, text));
                }
                std::collections::btree_map::Entry::Occupied(e) => {
                    if e.get().1 != text {
                        return Err(bad(&format!(
                            "passage {docid} has two different texts across the runs"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `collection.tsv`: `docid<TAB>text` per passage, in key order.
pub fn write_collection(
    passages: &BTreeMap<(u64, String), (String, String)>,
    dst: &Path,
) -> Result<()> {
    let mut w = BufWriter::new(File::create(dst).map_err(io_err(dst))?);
    for (docid, text) in passages.values() {
        writeln!(w, "{docid}\t{text}").map_err(io_err(dst))?;
    }
    w.flush().map_err(io_err(dst))
}
