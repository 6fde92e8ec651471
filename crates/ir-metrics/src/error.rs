//! Error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong reading, evaluating or testing runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
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
    /// The same (query, document) pair occurs twice in a run or qrels file.
    #[error(
        "{path}:{line}: duplicate document {docid:?} for query {qid:?} (first seen on line {first_line}); \
         trec_eval rejects such files too"
    )]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// Line of the second occurrence.
        line: u64,
        /// Line of the first occurrence.
        first_line: u64,
        /// Query id.
        qid: String,
        /// Document id.
        docid: String,
    },
    /// A measure name that is not understood.
    #[error("unknown measure {0:?}: {1}")]
    Measure(String, String),
    /// An argument outside its domain (empty sample, mismatched lengths, bad parameter).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn parse(path: &std::path::Path, line: u64, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}
