//! TREC runs (`qid Q0 docid rank score tag` per line), stored compactly.

use crate::error::{Error, Result};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f64,
    start: u32,
    len: u32,
    line: u64,
}

/// The ranked documents of one query. Document ids live in one string per query.
#[derive(Debug, Clone, Default)]
pub struct QueryRun {
    qid: Box<str>,
    text: String,
    entries: Vec<Entry>,
}

impl QueryRun {
    /// A new empty query.
    pub fn new(qid: &str) -> Self {
        QueryRun {
            qid: qid.into(),
            ..Default::default()
        }
    }

    /// The query id.
    pub fn qid(&self) -> &str {
        &self.qid
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no document was retrieved.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add a document with its score (the caller keeps docids unique; see [`Run::push`]).
    fn push_entry(&mut self, docid: &str, score: f64, line: u64) {
        let start = self.text.len() as u32;
        self.text.push_str(docid);
        self.entries.push(Entry {
            score,
            start,
            len: docid.len() as u32,
            line,
        });
    }

    fn doc(&self, e: &Entry) -> &str {
        &self.text[e.start as usize..(e.start + e.len) as usize]
    }

    /// (docid, score) in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, f64)> {
        self.entries.iter().map(|e| (self.doc(e), e.score))
    }

    /// (docid, score) in trec_eval's ranking order: score descending, ties broken by docid
    /// descending (byte order). The rank column of the file plays no part.
    pub fn ranked(&self) -> Vec<(&str, f64)> {
        let mut v: Vec<(&str, f64)> = self.iter().collect();
        v.sort_unstable_by(|a, b| trec_order(a.1, a.0, b.1, b.0));
        v
    }

    /// Line numbers of the first duplicated docid, if any.
    fn find_duplicate(&self) -> Option<(u64, u64, &str)> {
        let mut idx: Vec<u32> = (0..self.entries.len() as u32).collect();
        idx.sort_unstable_by(|&a, &b| {
            let (ea, eb) = (&self.entries[a as usize], &self.entries[b as usize]);
            self.doc(ea).cmp(self.doc(eb)).then(ea.line.cmp(&eb.line))
        });
        idx.windows(2).find_map(|w| {
            let (a, b) = (&self.entries[w[0] as usize], &self.entries[w[1] as usize]);
            (self.doc(a) == self.doc(b)).then(|| (a.line, b.line, self.doc(a)))
        })
    }
}

/// trec_eval's order: higher score first, then docid descending (strcmp on bytes).
#[inline]
pub fn trec_order(score_a: f64, doc_a: &str, score_b: f64, doc_b: &str) -> Ordering {
    score_b
        .partial_cmp(&score_a)
        .unwrap_or(Ordering::Equal)
        .then_with(|| doc_b.as_bytes().cmp(doc_a.as_bytes()))
}

/// A retrieval run: for each query, scored documents. Queries keep their first-seen order.
#[derive(Debug, Clone, Default)]
pub struct Run {
    name: String,
    queries: Vec<QueryRun>,
    index: FxHashMap<Box<str>, usize>,
}

impl Run {
    /// An empty run with a tag.
    pub fn new(name: impl Into<String>) -> Self {
        Run {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Read a run file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(file, path)
    }

    /// Parse run text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        Self::from_reader(text.as_bytes(), name.as_ref())
    }

    /// Parse a run from any reader, streaming line by line (memory is the compact run, not the
    /// text). `name` is used in error messages.
    ///
    /// Format: six whitespace-separated fields `qid Q0 docid rank score tag`. Only qid, docid
    /// and score are used; `rank` is ignored (trec_eval ranks by score). The score must be a
    /// finite number. Blank lines are skipped. A document listed twice for one query is an
    /// error naming both lines, as trec_eval rejects such runs. The run's name is the tag of
    /// its first line.
    pub fn from_reader(reader: impl Read, name: &Path) -> Result<Self> {
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let mut buf = Vec::with_capacity(256);
        let mut run = Run::default();
        let mut line_no = 0u64;
        let mut current: usize = usize::MAX;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| Error::Io {
                    path: name.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let line = std::str::from_utf8(&buf)
                .map_err(|e| Error::parse(name, line_no, format!("not valid UTF-8 ({e})")))?;
            let mut f = line.split_ascii_whitespace();
            let Some(qid) = f.next() else { continue };
            let (Some(_q0), Some(docid), Some(_rank), Some(score), Some(tag), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(Error::parse(
                    name,
                    line_no,
                    format!(
                        "expected 6 fields `qid Q0 docid rank score tag`, found {}",
                        line.split_ascii_whitespace().count()
                    ),
                ));
            };
            let score: f64 = match score.parse() {
                Ok(s) if f64::is_finite(s) => s,
                _ => {
                    return Err(Error::parse(
                        name,
                        line_no,
                        format!("score must be a finite number, found {score:?}"),
                    ));
                }
            };
            if run.queries.is_empty() {
                run.name = tag.to_string();
            }
            if current == usize::MAX || &*run.queries[current].qid != qid {
                current = run.query_index_or_insert(qid);
            }
            run.queries[current].push_entry(docid, score, line_no);
        }
        run.check_duplicates(name)?;
        Ok(run)
    }

    fn query_index_or_insert(&mut self, qid: &str) -> usize {
        if let Some(&i) = self.index.get(qid) {
            return i;
        }
        self.queries.push(QueryRun::new(qid));
        self.index.insert(qid.into(), self.queries.len() - 1);
        self.queries.len() - 1
    }

    fn check_duplicates(&self, name: &Path) -> Result<()> {
        let dup = self
            .queries
            .par_iter()
            .filter_map(|q| q.find_duplicate().map(|(a, b, d)| (b, a, q.qid(), d)))
            .min_by_key(|x| x.0);
        match dup {
            None => Ok(()),
            Some((line, first_line, qid, docid)) => Err(Error::Duplicate {
                path: name.to_path_buf(),
                line,
                first_line,
                qid: qid.to_string(),
                docid: docid.to_string(),
            }),
        }
    }

    /// Add one scored document. A document already present for the query is an error.
    pub fn push(&mut self, qid: &str, docid: &str, score: f64) -> Result<()> {
        if !score.is_finite() {
            return Err(Error::Invalid(format!(
                "score of {qid}/{docid} is not finite"
            )));
        }
        let i = self.query_index_or_insert(qid);
        let q = &mut self.queries[i];
        if q.iter().any(|(d, _)| d == docid) {
            return Err(Error::Invalid(format!(
                "document {docid:?} already in query {qid:?}"
            )));
        }
        let line = q.entries.len() as u64 + 1;
        q.push_entry(docid, score, line);
        Ok(())
    }

    /// Build a run from whole queries, without checks on the order; each query's documents
    /// must be unique (checked).
    pub fn from_queries(
        name: impl Into<String>,
        queries: Vec<(String, Vec<(String, f64)>)>,
    ) -> Result<Self> {
        let mut run = Run::new(name);
        for (qid, docs) in queries {
            let i = run.query_index_or_insert(&qid);
            for (line, (d, s)) in docs.iter().enumerate() {
                if !s.is_finite() {
                    return Err(Error::Invalid(format!("score of {qid}/{d} is not finite")));
                }
                run.queries[i].push_entry(d, *s, line as u64 + 1);
            }
        }
        run.check_duplicates(Path::new("<queries>"))?;
        Ok(run)
    }

    /// The run's tag.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Set the run's tag (written in the last column).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// One query.
    pub fn get(&self, qid: &str) -> Option<&QueryRun> {
        self.index.get(qid).map(|&i| &self.queries[i])
    }

    /// Queries in first-seen order.
    pub fn queries(&self) -> &[QueryRun] {
        &self.queries
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    /// True when the run has no query.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Total number of (query, document) lines.
    pub fn num_entries(&self) -> usize {
        self.queries.iter().map(QueryRun::len).sum()
    }

    /// Write in TREC format: queries in first-seen order, documents in trec_eval's ranking
    /// order with ranks 1.. and scores printed exactly (shortest round-trip form).
    pub fn write_to(&self, w: impl Write) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(w);
        let tag = if self.name.is_empty() {
            "run"
        } else {
            &self.name
        };
        for q in &self.queries {
            for (rank, (d, s)) in q.ranked().into_iter().enumerate() {
                writeln!(w, "{} Q0 {} {} {} {}", q.qid, d, rank + 1, s, tag)?;
            }
        }
        w.flush()
    }

    /// Write to a file atomically (a temporary file in the same folder, then a rename).
    pub fn write_path(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::write_atomically(path.as_ref(), |f| self.write_to(f))
    }
}
