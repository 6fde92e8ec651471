//! TREC relevance judgements (`qid iter docid rel` per line).

use crate::error::{Error, Result};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The judgements of one query: document id -> relevance grade.
///
/// Grades are integers; a negative grade marks a document that is in the pool but unjudged
/// (trec_eval's convention): it counts as judged for `Judged@k`, as neither relevant nor
/// non-relevant for every other measure.
#[derive(Debug, Clone, Default)]
pub struct QueryQrels {
    /// docid -> (grade, line number in the source)
    docs: FxHashMap<Box<str>, (i64, u64)>,
    /// (grade, count) for every grade >= 0 present, sorted by grade.
    levels: Vec<(i64, u64)>,
}

impl QueryQrels {
    /// The grade of `docid`, if judged.
    pub fn get(&self, docid: &str) -> Option<i64> {
        self.docs.get(docid).map(|g| g.0)
    }

    /// Number of judged documents (any grade).
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when nothing is judged.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Iterate over (docid, grade), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.docs.iter().map(|(d, &(r, _))| (&**d, r))
    }

    /// `(grade, count)` for each non-negative grade, ascending.
    pub fn levels(&self) -> &[(i64, u64)] {
        &self.levels
    }

    /// Number of documents with grade >= `relevance_level`.
    pub fn num_relevant(&self, relevance_level: i64) -> u64 {
        self.levels
            .iter()
            .filter(|(g, _)| *g >= relevance_level)
            .map(|(_, c)| c)
            .sum()
    }

    /// Add a judgement; returns the line of an earlier judgement of `docid` (then nothing is
    /// changed). Call [`QueryQrels::finish`] once all are added.
    pub(crate) fn insert(&mut self, docid: &str, grade: i64, line: u64) -> Option<u64> {
        match self.docs.entry(docid.into()) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.get().1),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((grade, line));
                None
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for &(r, _) in self.docs.values() {
            if r >= 0 {
                *counts.entry(r).or_default() += 1;
            }
        }
        self.levels = counts.into_iter().collect();
    }
}

/// Relevance judgements of a set of queries, ordered by query id (byte order, as trec_eval).
#[derive(Debug, Clone, Default)]
pub struct Qrels {
    queries: BTreeMap<String, QueryQrels>,
}

impl Qrels {
    /// Read a qrels file: `-` reads standard input (named `<stdin>` in errors), and gzip data
    /// (recognised by its magic bytes, whatever the name) is decompressed (feature `gzip`, on
    /// by default).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let (reader, name) = crate::input::open(path.as_ref())?;
        Self::from_reader(reader, &name)
    }

    /// Parse qrels text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        Self::from_reader(text.as_bytes(), name.as_ref())
    }

    /// Parse qrels from any reader, line by line. `name` is used in error messages.
    ///
    /// Format: four whitespace-separated fields `qid iter docid grade` (trec_eval's get_qrels:
    /// fewer or more fields are an error); `iter` is ignored and `grade` must be an integer.
    /// Comment lines (first non-blank character `#`, as in trec_eval 10.0; a `#` inside a
    /// docid is part of it) and blank lines are skipped. A repeated (qid, docid) is an error,
    /// as in trec_eval.
    pub fn from_reader(reader: impl Read, name: &Path) -> Result<Self> {
        let mut queries: FxHashMap<Box<str>, QueryQrels> = FxHashMap::default();
        let mut current: Option<(Box<str>, QueryQrels)> = None;
        crate::input::for_each_line(reader, name, |line_no, line| {
            let mut fields = line.split_ascii_whitespace();
            let Some(qid) = fields.next() else {
                return Ok(());
            };
            if qid.starts_with('#') {
                return Ok(()); // a comment line (trec_eval 10.0)
            }
            let (Some(_iter), Some(docid), Some(grade), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(Error::parse(
                    name,
                    line_no,
                    format!(
                        "expected 4 fields `qid iter docid grade`, found {}",
                        line.split_ascii_whitespace().count()
                    ),
                ));
            };
            let grade: i64 = grade.parse().map_err(|_| {
                Error::parse(
                    name,
                    line_no,
                    format!("relevance grade must be an integer, found {grade:?}"),
                )
            })?;
            // lines of one query are usually together: keep the current one out of the map
            if current.as_ref().is_none_or(|(q, _)| &**q != qid) {
                if let Some((q, j)) = current.take() {
                    queries.insert(q, j);
                }
                let j = queries.remove(qid).unwrap_or_default();
                current = Some((qid.into(), j));
            }
            let q = &mut current.as_mut().expect("set above").1;
            if let Some((_, first_line)) = q.docs.insert(docid.into(), (grade, line_no)) {
                return Err(Error::Duplicate {
                    path: name.to_path_buf(),
                    line: line_no,
                    first_line,
                    qid: qid.to_string(),
                    docid: docid.to_string(),
                });
            }
            Ok(())
        })?;
        if let Some((q, j)) = current {
            queries.insert(q, j);
        }
        let queries = queries
            .into_iter()
            .map(|(q, mut j)| {
                j.finish();
                (q.into_string(), j)
            })
            .collect();
        Ok(Qrels { queries })
    }

    /// Build qrels from (qid, docid, grade) triples. Duplicates are an error.
    pub fn from_triples<'a>(
        triples: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    ) -> Result<Self> {
        let mut queries: BTreeMap<String, QueryQrels> = BTreeMap::new();
        for (i, (qid, docid, grade)) in triples.into_iter().enumerate() {
            let q = queries.entry(qid.to_string()).or_default();
            if let Some((_, first)) = q.docs.insert(docid.into(), (grade, i as u64 + 1)) {
                return Err(Error::Duplicate {
                    path: PathBuf::from("<triples>"),
                    line: i as u64 + 1,
                    first_line: first,
                    qid: qid.into(),
                    docid: docid.into(),
                });
            }
        }
        for q in queries.values_mut() {
            q.finish();
        }
        Ok(Qrels { queries })
    }

    /// The judgements of one query.
    pub fn get(&self, qid: &str) -> Option<&QueryQrels> {
        self.queries.get(qid)
    }

    /// Number of judged queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when there are no queries.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Query ids in byte order.
    pub fn qids(&self) -> impl Iterator<Item = &str> {
        self.queries.keys().map(String::as_str)
    }

    /// Iterate over queries in byte order of their ids.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &QueryQrels)> {
        self.queries.iter().map(|(q, j)| (q.as_str(), j))
    }

    /// Write in TREC format (`qid 0 docid grade`), queries in id order, documents in id order.
    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        for (qid, q) in &self.queries {
            let mut docs: Vec<_> = q.iter().collect();
            docs.sort_unstable();
            for (d, r) in docs {
                writeln!(w, "{qid} 0 {d} {r}")?;
            }
        }
        Ok(())
    }
}
