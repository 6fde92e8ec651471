//! A streaming line reader that knows its file name and line number.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Reads a file line by line into one reused buffer; every line is checked to be UTF-8 and
/// returned without its `\n` / `\r\n` terminator (and without a UTF-8 byte order mark on line 1).
pub(crate) struct LineReader {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    line: u64,
}

impl LineReader {
    /// Open a file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::new(Box::new(file), path))
    }

    /// Read from any reader; `name` is used in error messages.
    pub(crate) fn new(reader: Box<dyn Read + Send>, name: &Path) -> Self {
        LineReader {
            path: name.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, reader),
            buf: Vec::with_capacity(1024),
            line: 0,
        }
    }

    /// The file name used in errors.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the line returned last (0 before the first).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// A parse error at the current line.
    pub(crate) fn error(&self, message: impl Into<String>) -> Error {
        Error::parse(&self.path, self.line, message)
    }

    /// The next line, or `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> Result<Option<&str>> {
        self.buf.clear();
        let n = loop {
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut bytes = &self.buf[..];
        if let Some(b) = bytes.strip_suffix(b"\n") {
            bytes = b.strip_suffix(b"\r").unwrap_or(b);
        }
        if self.line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => Err(Error::parse(
                &self.path,
                self.line,
                format!("expected UTF-8 text, found an invalid byte ({e})"),
            )),
        }
    }
}
