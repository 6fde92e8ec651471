//! The BEIR layout: `corpus.jsonl` (`{"_id","title","text"}`), `queries.jsonl`
//! (`{"_id","text"}`) and `qrels/<split>.tsv` (`query-id<TAB>corpus-id<TAB>score`, one header
//! line).

use crate::error::{Error, Result};
use crate::jsonl::JsonlReader;
use crate::lines::LineReader;
use crate::types::{Corpus, Document, Queries, Query};
use ir_metrics::Qrels;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// An id written as a JSON string or a JSON integer (both occur in BEIR data sets).
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Str(String),
    Int(i64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::Str(s) => s,
            Id::Int(i) => i.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct RawDoc {
    #[serde(rename = "_id")]
    id: Id,
    #[serde(default)]
    title: Option<String>,
    text: String,
}

#[derive(Deserialize)]
struct RawQuery {
    #[serde(rename = "_id")]
    id: Id,
    text: String,
}

fn check_id(id: Id) -> std::result::Result<String, String> {
    let id = id.into_string();
    if id.is_empty() || id.trim() != id {
        return Err(format!(
            "expected a non-empty \"_id\" without surrounding spaces, found {id:?}"
        ));
    }
    Ok(id)
}

/// Streaming reader of a BEIR `corpus.jsonl`: one [`Document`] per line, in file order.
/// `title` may be missing or null (read as empty); other fields (`metadata`) are ignored.
pub struct CorpusReader(JsonlReader<RawDoc>);

impl CorpusReader {
    /// Open a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(CorpusReader(JsonlReader::open(
            path.as_ref(),
            r#"{"_id": string, "title": string, "text": string}"#,
        )?))
    }

    /// Read from any reader; `name` is used in error messages.
    pub fn from_reader(reader: impl Read + Send + 'static, name: impl AsRef<Path>) -> Self {
        CorpusReader(JsonlReader::from_reader(
            Box::new(reader),
            name.as_ref(),
            r#"{"_id": string, "title": string, "text": string}"#,
        ))
    }

    /// 1-based line number of the document returned last.
    pub fn line(&self) -> u64 {
        self.0.line()
    }

    pub(crate) fn next_located(&mut self) -> Option<Result<(u64, Document)>> {
        self.0.next_checked(|d: RawDoc| {
            Ok(Document {
                id: check_id(d.id)?,
                title: d.title.unwrap_or_default(),
                text: d.text,
            })
        })
    }
}

impl Iterator for CorpusReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_located().map(|r| r.map(|(_, d)| d))
    }
}

/// Streaming reader of a BEIR `queries.jsonl`: one [`Query`] per line, in file order.
/// Other fields (`metadata`) are ignored.
pub struct QueryReader(JsonlReader<RawQuery>);

impl QueryReader {
    /// Open a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(QueryReader(JsonlReader::open(
            path.as_ref(),
            r#"{"_id": string, "text": string}"#,
        )?))
    }

    /// Read from any reader; `name` is used in error messages.
    pub fn from_reader(reader: impl Read + Send + 'static, name: impl AsRef<Path>) -> Self {
        QueryReader(JsonlReader::from_reader(
            Box::new(reader),
            name.as_ref(),
            r#"{"_id": string, "text": string}"#,
        ))
    }

    /// 1-based line number of the query returned last.
    pub fn line(&self) -> u64 {
        self.0.line()
    }

    pub(crate) fn next_located(&mut self) -> Option<Result<(u64, Query)>> {
        self.0.next_checked(|q: RawQuery| {
            Ok(Query {
                id: check_id(q.id)?,
                text: q.text,
            })
        })
    }
}

impl Iterator for QueryReader {
    type Item = Result<Query>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_located().map(|r| r.map(|(_, q)| q))
    }
}

/// Read a BEIR `corpus.jsonl` into memory, keeping the documents for which `keep(id)` is true.
/// A repeated id among kept documents is an error.
pub fn read_corpus(path: impl AsRef<Path>, keep: impl FnMut(&str) -> bool) -> Result<Corpus> {
    let path = path.as_ref();
    let mut r = CorpusReader::open(path)?;
    Corpus::collect_from(std::iter::from_fn(|| r.next_located()), path, keep)
}

/// Read a BEIR `queries.jsonl`. A repeated id is an error.
pub fn read_queries(path: impl AsRef<Path>) -> Result<Queries> {
    let path = path.as_ref();
    let mut r = QueryReader::open(path)?;
    Queries::collect_from(std::iter::from_fn(|| r.next_located()), path)
}

/// Read BEIR qrels (`qrels/<split>.tsv`) into `ir-metrics`' [`Qrels`].
pub fn read_qrels(path: impl AsRef<Path>) -> Result<Qrels> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    qrels_from_reader(file, path)
}

/// Parse BEIR qrels from any reader; `name` is used in error messages.
///
/// Format: three tab- or space-separated fields `query-id corpus-id score` per line, `score` an
/// integer grade. The first line may be the header `query-id corpus-id score`  (a first line
/// starting with `query-id` is taken as the header and must name exactly these columns).
/// Blank lines are skipped; a repeated (query, document) pair is an error.
pub fn qrels_from_reader(
    reader: impl Read + Send + 'static,
    name: impl AsRef<Path>,
) -> Result<Qrels> {
    let name = name.as_ref();
    let mut lines = LineReader::new(Box::new(reader), name);
    let mut triples: Vec<(String, String, i64)> = Vec::new();
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    let mut first = true;
    loop {
        let parsed = match lines.next_line()? {
            None => break,
            Some(line) if line.trim().is_empty() => continue,
            Some(line) => {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let is_header = first && fields.first() == Some(&"query-id");
                first = false;
                if is_header {
                    if fields != ["query-id", "corpus-id", "score"] {
                        Err(format!(
                            "expected the header `query-id<TAB>corpus-id<TAB>score`, found {:?}",
                            crate::trec::truncate(line)
                        ))
                    } else {
                        continue;
                    }
                } else if fields.len() != 3 {
                    Err(format!(
                        "expected 3 fields `query-id corpus-id score`, found {}",
                        fields.len()
                    ))
                } else {
                    match fields[2].parse::<i64>() {
                        Ok(g) => Ok((fields[0].to_string(), fields[1].to_string(), g)),
                        Err(_) => Err(format!(
                            "expected an integer relevance score, found {:?}",
                            fields[2]
                        )),
                    }
                }
            }
        };
        let (q, d, g) = parsed.map_err(|m| lines.error(m))?;
        let line = lines.line();
        if let Some(&first_line) = seen.get(&(q.clone(), d.clone())) {
            return Err(Error::Duplicate {
                path: name.to_path_buf(),
                line,
                first_line,
                what: "judgement of query/document",
                id: format!("{q}/{d}"),
            });
        }
        seen.insert((q.clone(), d.clone()), line);
        triples.push((q, d, g));
    }
    Ok(Qrels::from_triples(
        triples.iter().map(|(q, d, g)| (q.as_str(), d.as_str(), *g)),
    )?)
}
