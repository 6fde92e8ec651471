//! Plain-text corpora for language-model pretraining: a folder of `*.txt` and `*.txt.xz`
//! files (UTF-8), one document per block, blocks separated by a blank line. The layout of
//! `pretrain/` in the shared data (see its README); a user's own folder of text files works
//! the same way.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::dataset::is_path;
use crate::locate::{Kind, Locations};
use crate::{Error, Result};

/// A folder of text files.
#[derive(Debug, Clone)]
pub struct TextCorpus {
    root: PathBuf,
    files: Vec<PathBuf>,
}

fn text_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".txt") || n.ends_with(".txt.xz"))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl TextCorpus {
    /// Opens a corpus by path (`./my-text`, `/data/pretrain`) or by name (`pretrain`, found by
    /// the data lookup order of [`crate::locate`]). The folder must hold at least one `*.txt`
    /// or `*.txt.xz` file.
    pub fn open(name_or_path: &str) -> Result<Self> {
        Self::open_from(&Locations::discover(), name_or_path)
    }

    /// [`TextCorpus::open`] with the given lookup order.
    pub fn open_from(locations: &Locations, name_or_path: &str) -> Result<Self> {
        let has_text = |d: &Path| text_files(d).is_ok_and(|f| !f.is_empty());
        let root = if is_path(name_or_path) {
            let p = PathBuf::from(name_or_path);
            if !p.is_dir() {
                return Err(Error::NotFound {
                    name: name_or_path.to_string(),
                    message: format!("{} is not a folder", p.display()),
                });
            }
            p
        } else {
            locations.find(Kind::Dataset, name_or_path, has_text)?
        };
        let files = text_files(&root)?;
        if files.is_empty() {
            return Err(Error::NotFound {
                name: name_or_path.to_string(),
                message: format!("{} holds no *.txt or *.txt.xz file", root.display()),
            });
        }
        Ok(TextCorpus { root, files })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The text files, in name order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Every document of every file, in file then block order (blocks split at blank lines;
    /// blank blocks dropped, line ends `\r\n` read as `\n`).
    pub fn documents(&self) -> Result<Vec<String>> {
        let mut docs = Vec::new();
        for f in &self.files {
            let text = read_text(f)?;
            let text = if text.contains('\r') {
                text.replace("\r\n", "\n")
            } else {
                text
            };
            docs.extend(
                text.split("\n\n")
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
            );
        }
        Ok(docs)
    }
}

/// Reads a `.txt` or `.txt.xz` file as UTF-8 (the error names the file, and for bad UTF-8 the
/// line).
pub fn read_text(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "xz") {
        liblzma::read::XzDecoder::new(std::io::BufReader::new(file))
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
        Error::Parse {
            path: path.to_path_buf(),
            line,
            message: format!("not UTF-8 (byte {at})"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn documents_of_txt_and_xz_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "third doc\r\n\r\nfourth\n").unwrap();
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(b"first doc\nline two\n\n\n\nsecond\n")
            .unwrap();
        std::fs::write(dir.path().join("a.txt.xz"), enc.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let c = TextCorpus::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(
            c.documents().unwrap(),
            ["first doc\nline two", "second", "third doc", "fourth"]
        );
    }

    #[test]
    fn bad_utf8_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.txt"), b"ok\nok\n\xff\n").unwrap();
        let c = TextCorpus::open(dir.path().to_str().unwrap()).unwrap();
        let e = c.documents().unwrap_err().to_string();
        assert!(e.contains("x.txt:3"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = TextCorpus::open(empty.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no *.txt"), "{e}");
    }
}
