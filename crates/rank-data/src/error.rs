//! Error type of the crate.

use std::path::{Path, PathBuf};

/// Everything that can go wrong reading a data set, building a first stage or sampling groups.
///
/// Errors about file contents carry the file and the 1-based line number, and say what was
/// expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or folder could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line does not have the expected format.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file (or the name given to an in-memory source).
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What was expected and what was found.
        message: String,
    },
    /// An id that must be unique in a file occurs twice.
    #[error("{path}:{line}: duplicate {what} {id:?} (first seen on line {first_line})")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// Line of the second occurrence.
        line: u64,
        /// Line of the first occurrence.
        first_line: u64,
        /// What kind of id ("query id", "document id", "judgement").
        what: &'static str,
        /// The id.
        id: String,
    },
    /// An error of `ir-metrics` (qrels and run files: these carry file and line too).
    #[error(transparent)]
    Metrics(#[from] ir_metrics::Error),
    /// A data set that could not be found by name or path.
    #[error("data set {name:?} not found: {message}")]
    NotFound {
        /// The name or path asked for.
        name: String,
        /// Where it was looked for, and how to point at it.
        message: String,
    },
    /// A data set, tokenizer or model that the lookup order (`crate::locate`) did not find.
    #[error("{what} {name:?} not found; {message}")]
    Missing {
        /// "data set", "tokenizer" or "model".
        what: &'static str,
        /// The name asked for.
        name: String,
        /// Every place looked at, and the command that fetches it.
        message: String,
    },
    /// The BM25 index (tantivy) failed.
    #[error("BM25 index: {0}")]
    Index(String),
    /// An argument outside its domain, or data that does not fit together.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn parse(path: &Path, line: u64, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file and line this error points at, if it points at one.
    pub fn location(&self) -> Option<(&Path, u64)> {
        match self {
            Error::Parse { path, line, .. } | Error::Duplicate { path, line, .. } => {
                Some((path, *line))
            }
            Error::Metrics(ir_metrics::Error::Parse { path, line, .. })
            | Error::Metrics(ir_metrics::Error::Duplicate { path, line, .. }) => {
                Some((path, *line))
            }
            _ => None,
        }
    }
}

#[cfg(feature = "bm25")]
impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Index(e.to_string())
    }
}
