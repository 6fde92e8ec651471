//! MS MARCO training data: text triples (`query<TAB>positive<TAB>negative`, as in
//! `triples.train.small.tsv`) and JSON lines `{"query": str, "pos": [str], "neg": [str]}`
//! (FlagEmbedding's reranker format, as in `msmarco-train-sample/train.jsonl`).

use crate::error::Result;
use crate::jsonl::JsonlReader;
use crate::lines::LineReader;
use serde::Deserialize;
use std::io::Read;
use std::path::Path;

/// One training query with its positive and negative passages (texts, not ids).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TrainingExample {
    /// Query text.
    pub query: String,
    /// Relevant passages (at least one).
    pub pos: Vec<String>,
    /// Non-relevant (hard negative) passages; may be empty.
    #[serde(default)]
    pub neg: Vec<String>,
}

const EXAMPLE_SHAPE: &str = r#"{"query": string, "pos": [string, ...], "neg": [string, ...]}"#;

/// Streaming reader of `{"query","pos","neg"}` JSON lines. Other fields (`pos_scores`,
/// `prompt`, ...) are ignored. A line without a query text or without a positive is an error.
pub struct ExampleReader(JsonlReader<TrainingExample>);

impl ExampleReader {
    /// Open a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(ExampleReader(JsonlReader::open(
            path.as_ref(),
            EXAMPLE_SHAPE,
        )?))
    }

    /// Read from any reader; `name` is used in error messages.
    pub fn from_reader(reader: impl Read + Send + 'static, name: impl AsRef<Path>) -> Self {
        ExampleReader(JsonlReader::from_reader(
            Box::new(reader),
            name.as_ref(),
            EXAMPLE_SHAPE,
        ))
    }

    /// The file name used in errors.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// 1-based line number of the example returned last.
    pub fn line(&self) -> u64 {
        self.0.line()
    }
}

impl Iterator for ExampleReader {
    type Item = Result<TrainingExample>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next_checked(|e: TrainingExample| {
                if e.query.trim().is_empty() {
                    Err("expected a non-empty \"query\"".to_string())
                } else if e.pos.is_empty() {
                    Err("expected at least one passage in \"pos\", found none".to_string())
                } else {
                    Ok(e)
                }
            })
            .map(|r| r.map(|(_, e)| e))
    }
}

/// Read every example of a `{"query","pos","neg"}` JSON-lines file.
pub fn read_examples(path: impl AsRef<Path>) -> Result<Vec<TrainingExample>> {
    ExampleReader::open(path)?.collect()
}

/// One MS MARCO training triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triple {
    /// Query (text, or id in the id-triples files).
    pub query: String,
    /// Relevant passage (text or id).
    pub pos: String,
    /// Non-relevant passage (text or id).
    pub neg: String,
}

/// Streaming reader of MS MARCO triples: exactly three tab-separated, non-empty fields per
/// non-blank line (`triples.train.small.tsv` holds texts; `qidpidtriples.train.full.tsv` ids).
pub struct TripleReader {
    lines: LineReader,
}

impl TripleReader {
    /// Open a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(TripleReader {
            lines: LineReader::open(path.as_ref())?,
        })
    }

    /// Read from any reader; `name` is used in error messages.
    pub fn from_reader(reader: impl Read + Send + 'static, name: impl AsRef<Path>) -> Self {
        TripleReader {
            lines: LineReader::new(Box::new(reader), name.as_ref()),
        }
    }

    /// 1-based line number of the triple returned last.
    pub fn line(&self) -> u64 {
        self.lines.line()
    }
}

impl Iterator for TripleReader {
    type Item = Result<Triple>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let parsed = match self.lines.next_line() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => {
                    let fields: Vec<&str> = line.split('\t').collect();
                    if fields.len() != 3 {
                        Err(format!(
                            "expected 3 tab-separated fields `query<TAB>positive<TAB>negative`, found {}",
                            fields.len()
                        ))
                    } else if let Some(i) = fields.iter().position(|f| f.trim().is_empty()) {
                        Err(format!(
                            "expected a non-empty {} field, found an empty one",
                            ["query", "positive", "negative"][i]
                        ))
                    } else {
                        Ok(Triple {
                            query: fields[0].to_string(),
                            pos: fields[1].to_string(),
                            neg: fields[2].to_string(),
                        })
                    }
                }
            };
            return Some(parsed.map_err(|m| self.lines.error(m)));
        }
    }
}
