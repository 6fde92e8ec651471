//! A streaming JSON-lines reader: one JSON object per non-blank line.

use crate::error::Result;
use crate::lines::LineReader;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::marker::PhantomData;
use std::path::Path;

/// Reads one `T` per non-blank line; a line that is not a JSON object of the expected shape is
/// an error naming the file, the line and what serde expected.
pub(crate) struct JsonlReader<T> {
    lines: LineReader,
    expected: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonlReader<T> {
    pub(crate) fn open(path: &Path, expected: &'static str) -> Result<Self> {
        Ok(JsonlReader {
            lines: LineReader::open(path)?,
            expected,
            _t: PhantomData,
        })
    }

    pub(crate) fn from_reader(
        reader: Box<dyn Read + Send>,
        name: &Path,
        expected: &'static str,
    ) -> Self {
        JsonlReader {
            lines: LineReader::new(reader, name),
            expected,
            _t: PhantomData,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.lines.path()
    }

    pub(crate) fn line(&self) -> u64 {
        self.lines.line()
    }

    /// The next value with its line number; `check` validates it (returns what is wrong).
    pub(crate) fn next_checked<U>(
        &mut self,
        check: impl FnOnce(T) -> std::result::Result<U, String>,
    ) -> Option<Result<(u64, U)>> {
        let expected = self.expected;
        loop {
            let parsed = match self.lines.next_line() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => serde_json::from_str::<T>(line)
                    .map_err(|e| format!("expected a JSON object {expected}: {e}")),
            };
            return Some(
                parsed
                    .and_then(check)
                    .map(|v| (self.lines.line(), v))
                    .map_err(|m| self.lines.error(m)),
            );
        }
    }
}
