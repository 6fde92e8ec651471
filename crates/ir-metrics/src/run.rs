//! TREC runs (`qid Q0 docid rank score tag` per line), stored compactly.

use crate::error::{Error, Result};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::io::{Read, Write};
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
    pub(crate) fn push_entry(&mut self, docid: &str, score: f64, line: u64) {
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

    /// Line numbers (first, second) and docid of the first duplicated docid, if any.
    fn find_duplicate(&self) -> Option<(u64, u64, &str)> {
        let mut seen: FxHashMap<&str, u64> = FxHashMap::default();
        seen.reserve(self.entries.len());
        self.entries.iter().find_map(|e| {
            let d = self.doc(e);
            seen.insert(d, e.line).map(|first| (first, e.line, d))
        })
    }
}

struct Row<'a> {
    qid: &'a str,
    docid: &'a str,
    tag: &'a str,
    score: f64,
    /// 1-based line number within the piece
    line: u64,
}

struct Piece<'a> {
    rows: Vec<Row<'a>>,
    lines: u64,
    /// first error: (line within the piece, message)
    error: Option<(u64, String)>,
}

/// Split `text` into about `n` pieces at line boundaries.
fn split_lines(text: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = text;
    let target = text.len() / n.max(1) + 1;
    while !rest.is_empty() {
        if rest.len() <= target {
            out.push(rest);
            break;
        }
        let cut = match rest[target..].iter().position(|&b| b == b'\n') {
            Some(i) => target + i + 1,
            None => rest.len(),
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

fn parse_piece(bytes: &[u8]) -> Piece<'_> {
    let mut piece = Piece {
        rows: Vec::with_capacity(bytes.len() / 40),
        lines: 0,
        error: None,
    };
    // validate UTF-8 once; stop at the line holding an invalid byte
    let (text, bad) = match std::str::from_utf8(bytes) {
        Ok(t) => (t, None),
        Err(e) => {
            let ok = e.valid_up_to();
            let line_start = bytes[..ok]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let t = std::str::from_utf8(&bytes[..line_start]).expect("validated prefix");
            (t, Some(e))
        }
    };
    for line in text.split_terminator('\n') {
        piece.lines += 1;
        let mut f = line.split_ascii_whitespace();
        let Some(qid) = f.next() else { continue };
        if qid.starts_with('#') {
            continue; // a comment line (trec_eval 10.0)
        }
        // fields after the tag are ignored, as trec_eval ignores them
        let (Some(_q0), Some(docid), Some(_rank), Some(score), Some(tag)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            piece.error = Some((
                piece.lines,
                format!(
                    "expected 6 fields `qid Q0 docid rank score tag`, found {}",
                    line.split_ascii_whitespace().count()
                ),
            ));
            return piece;
        };
        let score: f64 = match score.parse() {
            Ok(s) if f64::is_finite(s) => s,
            _ => {
                piece.error = Some((
                    piece.lines,
                    format!("score must be a finite number, found {score:?}"),
                ));
                return piece;
            }
        };
        piece.rows.push(Row {
            qid,
            docid,
            tag,
            score,
            line: piece.lines,
        });
    }
    if let Some(e) = bad {
        piece.lines += 1;
        piece.error = Some((piece.lines, format!("not valid UTF-8 ({e})")));
    }
    piece
}

/// trec_eval's order: higher score first, then docid descending (strcmp on bytes). Scores are
/// compared as trec_eval stores them, in 32-bit floats: two scores equal in float32 tie, and the
/// tie is broken by docid.
#[inline]
pub fn trec_order(score_a: f64, doc_a: &str, score_b: f64, doc_b: &str) -> Ordering {
    (score_b as f32)
        .partial_cmp(&(score_a as f32))
        .unwrap_or(Ordering::Equal)
        .then_with(|| doc_b.as_bytes().cmp(doc_a.as_bytes()))
}

/// A retrieval run: for each query, scored documents. Queries keep their first-seen order.
#[derive(Debug, Clone, Default)]
pub struct Run {
    name: String,
    queries: Vec<QueryRun>,
    index: FxHashMap<Box<str>, usize>,
    /// (query index, docid) of documents added one at a time by [`Run::push`], so that its
    /// duplicate check costs O(1), not a scan of the query
    pushed: rustc_hash::FxHashSet<(usize, Box<str>)>,
    /// The tag of the last line read (trec_eval's `runid`); empty for runs built in memory.
    last_tag: String,
}

impl Run {
    /// An empty run with a tag.
    pub fn new(name: impl Into<String>) -> Self {
        Run {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Read a run file: `-` reads standard input (named `<stdin>` in errors), and gzip data
    /// (recognised by its magic bytes, whatever the name) is decompressed (feature `gzip`, on
    /// by default).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let (reader, name) = crate::input::open(path.as_ref())?;
        Self::from_reader(reader, &name)
    }

    /// Parse run text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: impl AsRef<Path>) -> Result<Self> {
        Self::from_reader(text.as_bytes(), name.as_ref())
    }

    /// Parse a run from any reader, streaming line by line (memory is the compact run, not the
    /// text). `name` is used in error messages.
    ///
    /// Format: six whitespace-separated fields `qid Q0 docid rank score tag`; further fields
    /// are ignored (trec_eval ignores them). Only qid, docid and score are used; `rank` is
    /// ignored (trec_eval ranks by score). The score must be a finite number. Blank lines and
    /// comment lines (first non-blank character `#`, as in trec_eval 10.0) are skipped. A
    /// document listed twice for one query is an error naming both lines, as trec_eval rejects
    /// such runs. The run's name is the tag of its first line; [`Run::run_id`] (trec_eval's
    /// `runid`) is the tag of its last.
    pub fn from_reader(reader: impl Read, name: &Path) -> Result<Self> {
        Self::parse_blocks(reader, name, 8 << 20)
    }

    /// Blocks of whole lines (about `block_size` bytes) are read in turn; each block is split
    /// into pieces that are tokenised and parsed in parallel, then appended in order.
    fn parse_blocks(mut reader: impl Read, name: &Path, block_size: usize) -> Result<Self> {
        let io_err = |source| Error::Io {
            path: name.to_path_buf(),
            source,
        };
        let mut run = Run::default();
        let mut current = usize::MAX;
        let mut lines_before = 0u64;
        let mut block: Vec<u8> = Vec::new();
        let mut carry: Vec<u8> = Vec::new();
        let mut eof = false;
        let mut first = true;
        while !eof {
            block.clear();
            block.append(&mut carry);
            // Fill the block, always reading something. After a partial line longer than the
            // block, at least double it: a line of n bytes then costs O(n) reads and scans,
            // not O(n^2 / 4096).
            let target = block_size
                .max(block.len().saturating_mul(2))
                .max(block.len() + 4096);
            while block.len() < target {
                let old = block.len();
                // grow in steps so that a small input costs a small buffer
                block.resize(target.min(old + (256 << 10)), 0);
                let n = loop {
                    match reader.read(&mut block[old..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_err(e)),
                    }
                };
                block.truncate(old + n);
                if n == 0 {
                    eof = true;
                    break;
                }
            }
            // A UTF-8 byte order mark (as some editors write) is not part of the first qid.
            if first && block.len() >= crate::BOM.len() {
                first = false;
                if block.starts_with(crate::BOM) {
                    block.drain(..crate::BOM.len());
                }
            }
            // keep a trailing partial line for the next block
            if !eof {
                match block.iter().rposition(|&b| b == b'\n') {
                    Some(i) => carry.extend_from_slice(&block[i + 1..]),
                    None => {
                        // a single line longer than the block: read more of it
                        std::mem::swap(&mut carry, &mut block);
                        continue;
                    }
                }
                let keep = block.len() - carry.len();
                block.truncate(keep);
            }
            let pieces = split_lines(&block, rayon::current_num_threads() * 2);
            let parsed: Vec<Piece<'_>> = pieces.par_iter().map(|p| parse_piece(p)).collect();
            for piece in parsed {
                if let Some(last) = piece.rows.last() {
                    run.last_tag.clear();
                    run.last_tag.push_str(last.tag);
                }
                for row in &piece.rows {
                    if run.queries.is_empty() {
                        run.name = row.tag.to_string();
                    }
                    if current == usize::MAX || &*run.queries[current].qid != row.qid {
                        current = run.query_index_or_insert(row.qid);
                    }
                    run.queries[current].push_entry(row.docid, row.score, lines_before + row.line);
                }
                if let Some((line, message)) = piece.error {
                    return Err(Error::parse(name, lines_before + line, message));
                }
                lines_before += piece.lines;
            }
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
        if self.pushed.is_empty() && self.queries.iter().any(|q| !q.is_empty()) {
            // documents parsed or built in bulk before the first push: index them once
            for (qi, q) in self.queries.iter().enumerate() {
                self.pushed
                    .extend(q.iter().map(|(d, _)| (qi, Box::<str>::from(d))));
            }
        }
        if !self.pushed.insert((i, docid.into())) {
            return Err(Error::Invalid(format!(
                "document {docid:?} already in query {qid:?}"
            )));
        }
        let q = &mut self.queries[i];
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
        self.last_tag.clear();
    }

    /// trec_eval's `runid`: the tag of the last line read (trec_eval keeps the last), or the
    /// name for runs built in memory or renamed.
    pub fn run_id(&self) -> &str {
        if self.last_tag.is_empty() {
            &self.name
        } else {
            &self.last_tag
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let mut s = String::new();
        for q in 0..7 {
            for d in 0..30 {
                s.push_str(&format!(
                    "q{q}  Q0\tdoc-{d}-{} {} {}.25 tag{q}\n",
                    "x".repeat(d % 5),
                    d + 1,
                    100 - d
                ));
                if d % 11 == 0 {
                    s.push('\n');
                }
            }
        }
        s.push_str(&format!("q9 Q0 {} 1 1.0 long\n", "y".repeat(500))); // longer than a block
        s
    }

    #[test]
    fn small_blocks_give_the_same_run_and_line_numbers() {
        let text = sample();
        let whole = Run::parse_blocks(text.as_bytes(), Path::new("t"), 1 << 20).unwrap();
        for block in [17, 64, 101, 4096] {
            let r = Run::parse_blocks(text.as_bytes(), Path::new("t"), block).unwrap();
            assert_eq!(r.name(), "tag0");
            assert_eq!(r.len(), whole.len());
            for (a, b) in r.queries().iter().zip(whole.queries()) {
                assert_eq!(a.qid(), b.qid());
                assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
                let la: Vec<u64> = a.entries.iter().map(|e| e.line).collect();
                let lb: Vec<u64> = b.entries.iter().map(|e| e.line).collect();
                assert_eq!(la, lb, "block {block}");
            }
            // errors keep their absolute line numbers across blocks
            let lines: Vec<&str> = text.lines().collect();
            for bad in [3usize, 120, lines.len()] {
                let mut t: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                t[bad - 1] = "q1 Q0 broken 1 NaNx tag".into();
                let t = t.join("\n");
                match Run::parse_blocks(t.as_bytes(), Path::new("t"), block) {
                    Err(Error::Parse { line, .. }) => assert_eq!(line, bad as u64, "block {block}"),
                    other => panic!("expected a parse error, got {other:?}"),
                }
            }
        }
        let mut invalid = text.clone().into_bytes();
        let pos = text.lines().take(40).map(|l| l.len() + 1).sum::<usize>() + 3; // in line 41
        invalid[pos] = 0xff;
        match Run::parse_blocks(&invalid[..], Path::new("t"), 64) {
            Err(Error::Parse { line, message, .. }) => {
                assert_eq!(line, 41);
                assert!(message.contains("UTF-8"));
            }
            other => panic!("expected a UTF-8 error, got {other:?}"),
        }
    }
}
