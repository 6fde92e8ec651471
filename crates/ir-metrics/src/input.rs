//! Opening qrels and run files: `-` is standard input, gzip input (detected by its magic bytes,
//! whatever the file's name) is decompressed on the fly when the `gzip` feature is on.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The name standard input goes by in error messages.
pub const STDIN_NAME: &str = "<stdin>";

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Open `path` for reading: `-` reads standard input (named [`STDIN_NAME`] in errors); gzip
/// data is decompressed (all members, as `zcat` does). Returns the reader and the name to use
/// in error messages.
pub(crate) fn open(path: &Path) -> Result<(Box<dyn Read + Send>, PathBuf)> {
    if path.as_os_str() == "-" {
        let name = PathBuf::from(STDIN_NAME);
        let reader = decompress(BufReader::new(std::io::stdin()), &name)?;
        return Ok((reader, name));
    }
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = decompress(BufReader::with_capacity(1 << 16, file), path)?;
    Ok((reader, path.to_path_buf()))
}

/// Calls `f(line_no, line)` for each line of `reader` in turn (numbered from 1, the line
/// ending included), the shared loop of the qrels, judgement-group and preference readers: a
/// UTF-8 byte order mark before the first line is dropped, bytes that are not UTF-8 are an
/// error naming the file and line, and the first error `f` returns stops the reading.
pub(crate) fn for_each_line(
    reader: impl Read,
    name: &Path,
    mut f: impl FnMut(u64, &str) -> Result<()>,
) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut buf = Vec::with_capacity(256);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| Error::Io {
                path: name.to_path_buf(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        // A UTF-8 byte order mark (as some editors write) is not part of the first field.
        if line_no == 1 && buf.starts_with(crate::BOM) {
            buf.drain(..crate::BOM.len());
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|e| Error::parse(name, line_no, format!("not valid UTF-8 ({e})")))?;
        f(line_no, line)?;
    }
}

fn decompress<R: BufRead + Send + 'static>(
    mut reader: R,
    name: &Path,
) -> Result<Box<dyn Read + Send>> {
    let head = loop {
        match reader.fill_buf() {
            Ok(b) => break b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    path: name.to_path_buf(),
                    source,
                });
            }
        }
    };
    if !head.starts_with(&GZIP_MAGIC) {
        return Ok(Box::new(reader));
    }
    #[cfg(feature = "gzip")]
    {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    }
    #[cfg(not(feature = "gzip"))]
    {
        Err(Error::Invalid(format!(
            "{}: gzip data, but ir-metrics was built without its `gzip` feature",
            name.display()
        )))
    }
}
