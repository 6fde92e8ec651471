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
