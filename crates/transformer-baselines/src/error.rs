//! The crate's error type.

use std::path::PathBuf;

use model_io::ModelIoError;

/// Everything a user of this crate can get wrong: a bad checkpoint or config, a tokenizer file,
/// or inputs whose shapes or values do not fit the model. Every variant says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TransformerError {
    /// Reading a checkpoint, `config.json` or resolving a hub id failed.
    #[error(transparent)]
    ModelIo(#[from] ModelIoError),
    /// A config is readable JSON but describes a model this crate cannot build.
    #[error("{}invalid config: {message}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Config {
        path: Option<PathBuf>,
        message: String,
    },
    /// Model inputs with a wrong shape or out-of-range values.
    #[error("invalid input: {0}")]
    Input(String),
}

impl TransformerError {
    pub(crate) fn config(path: Option<&std::path::Path>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.map(Into::into),
            message: message.into(),
        }
    }
}
