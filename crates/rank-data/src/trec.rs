//! The TREC DL / MS MARCO passage layout: `queries.tsv`, `collection.tsv` (`id<TAB>text` per
//! line), `qrels.txt` and `runs/*.trec` (read by `ir-metrics`).

use crate::error::Result;
use crate::lines::LineReader;
use crate::types::{Corpus, Document, Queries, Query};
use ir_metrics::{Qrels, Run};
use std::io::Read;
use std::path::Path;

/// Streaming reader of an `id<TAB>text` file (`queries.tsv`, `collection.tsv`).
///
/// Each non-blank line must hold a non-empty id, a tab, and the text (which may be empty and
/// may itself contain tabs: everything after the first tab is the text). Blank lines are skipped.
/// Yields one `(id, text)` pair per line, in file order; memory does not grow with the file.
pub struct TsvReader {
    lines: LineReader,
    what: &'static str,
}

impl TsvReader {
    /// Open a file; `what` names a row in error messages ("query", "passage").
    pub fn open(path: impl AsRef<Path>, what: &'static str) -> Result<Self> {
        Ok(TsvReader {
            lines: LineReader::open(path.as_ref())?,
            what,
        })
    }

    /// Read from any reader; `name` is used in error messages.
    pub fn from_reader(reader: impl Read + Send + 'static, name: impl AsRef<Path>) -> Self {
        TsvReader {
            lines: LineReader::new(Box::new(reader), name.as_ref()),
            what: "row",
        }
    }

    /// 1-based line number of the row returned last.
    pub fn line(&self) -> u64 {
        self.lines.line()
    }

    /// The next row with its line number.
    pub(crate) fn next_located(&mut self) -> Option<Result<(u64, String, String)>> {
        let what = self.what;
        loop {
            let parsed = match self.lines.next_line() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => match line.split_once('\t') {
                    None => Err(format!(
                        "expected `{what} id<TAB>text`, found no tab in {:?}",
                        truncate(line)
                    )),
                    Some((id, _)) if id.trim().is_empty() => {
                        Err(format!("expected a {what} id before the tab, found none"))
                    }
                    Some((id, _)) if id.trim() != id => Err(format!(
                        "expected a {what} id without surrounding spaces, found {id:?}"
                    )),
                    Some((id, text)) => Ok((id.to_string(), text.to_string())),
                },
            };
            return Some(
                parsed
                    .map(|(id, text)| (self.lines.line(), id, text))
                    .map_err(|m| self.lines.error(m)),
            );
        }
    }
}

impl Iterator for TsvReader {
    type Item = Result<(String, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_located()
            .map(|r| r.map(|(_, id, text)| (id, text)))
    }
}

pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(60).collect::<String>())
    }
}

/// Read `queries.tsv` (`qid<TAB>text`). A repeated query id is an error.
pub fn read_queries(path: impl AsRef<Path>) -> Result<Queries> {
    let path = path.as_ref();
    let mut r = TsvReader::open(path, "query")?;
    Queries::collect_from(
        std::iter::from_fn(|| r.next_located())
            .map(|x| x.map(|(line, id, text)| (line, Query { id, text }))),
        path,
    )
}

/// Streaming reader of `collection.tsv` (`docid<TAB>text`) as [`Document`]s without titles.
pub struct CollectionReader(TsvReader);

impl CollectionReader {
    /// Open a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(CollectionReader(TsvReader::open(path, "passage")?))
    }

    /// 1-based line number of the document returned last.
    pub fn line(&self) -> u64 {
        self.0.line()
    }

    pub(crate) fn next_located(&mut self) -> Option<Result<(u64, Document)>> {
        self.0.next_located().map(|r| {
            r.map(|(line, id, text)| {
                (
                    line,
                    Document {
                        id,
                        title: String::new(),
                        text,
                    },
                )
            })
        })
    }
}

impl Iterator for CollectionReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_located().map(|r| r.map(|(_, d)| d))
    }
}

/// Read `collection.tsv` into memory, keeping only the documents for which `keep(docid)` is
/// true (pass `|_| true` for all; on the 8.8M-passage MS MARCO collection, keep only the
/// documents of the runs to rerank). A repeated id among kept documents is an error.
pub fn read_collection(path: impl AsRef<Path>, keep: impl FnMut(&str) -> bool) -> Result<Corpus> {
    let path = path.as_ref();
    let mut r = CollectionReader::open(path)?;
    Corpus::collect_from(std::iter::from_fn(|| r.next_located()), path, keep)
}

/// Read a TREC qrels file (`qid iter docid grade`) with `ir-metrics`.
pub fn read_qrels(path: impl AsRef<Path>) -> Result<Qrels> {
    Ok(Qrels::from_path(path)?)
}

/// Read a TREC run (`qid Q0 docid rank score tag`) with `ir-metrics`.
pub fn read_run(path: impl AsRef<Path>) -> Result<Run> {
    Ok(Run::from_path(path)?)
}
