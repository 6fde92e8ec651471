//! Finding a data set by path or by name, and reading its parts whatever its layout.
//!
//! A name is looked up under the data folder: `$RANKMAMBA_DATA` when set, else
//! `$XDG_CACHE_HOME/rankmamba/data` (or `~/.cache/rankmamba/data`). The folder holds one
//! sub-folder per data set, laid out as in `../shared/data/README.md`:
//!
//! | layout | files |
//! |---|---|
//! | [`Layout::TrecDl`] | `queries.tsv`, `collection.tsv`, `qrels.txt`, `runs/*.trec` |
//! | [`Layout::Beir`] | `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`, optional `runs/*.trec` |
//! | [`Layout::MsMarcoTrain`] | `train.jsonl` (`{"query","pos","neg"}` per line) |

use crate::beir;
use crate::error::{Error, Result};
use crate::msmarco::{self, TrainingExample};
use crate::trec;
use crate::types::{Corpus, Document, Queries};
use ir_metrics::{Qrels, Run};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the data folder.
pub const DATA_ENV: &str = "RANKMAMBA_DATA";

/// Short names accepted besides the folder names.
pub const ALIASES: &[(&str, &str)] = &[
    ("dl19", "trec-dl-2019-passage"),
    ("dl20", "trec-dl-2020-passage"),
    ("msmarco-sample", "msmarco-train-sample"),
];

/// The default data folder when `$RANKMAMBA_DATA` is unset: `$XDG_CACHE_HOME/rankmamba/data`,
/// else `$HOME/.cache/rankmamba/data`. `None` when neither variable is set.
pub fn cache_dir() -> Option<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let base = match (
        xdg.filter(|x| !x.is_empty()),
        home.filter(|h| !h.is_empty()),
    ) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".cache"),
        (None, None) => return None,
    };
    Some(base.join("rankmamba").join("data"))
}

/// The data folder: `$RANKMAMBA_DATA` when set (it must then exist), else [`cache_dir`].
pub fn data_dir() -> Result<PathBuf> {
    data_dir_from(std::env::var_os(DATA_ENV), cache_dir())
}

fn data_dir_from(env: Option<OsString>, cache: Option<PathBuf>) -> Result<PathBuf> {
    match env.filter(|e| !e.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_dir() {
                Ok(dir)
            } else {
                Err(Error::NotFound {
                    name: dir.display().to_string(),
                    message: format!("${DATA_ENV} names {}, which is not a folder", dir.display()),
                })
            }
        }
        None => cache.ok_or_else(|| Error::NotFound {
            name: String::new(),
            message: format!("${DATA_ENV} is unset and there is no home folder for a cache"),
        }),
    }
}

/// How a data set's files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// TREC DL / MS MARCO passage: `queries.tsv`, `collection.tsv`, `qrels.txt`, `runs/*.trec`.
    TrecDl,
    /// BEIR: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
    Beir,
    /// MS MARCO training examples: `train.jsonl` with `{"query","pos","neg"}` lines.
    MsMarcoTrain,
}

impl Layout {
    /// The layout of the files in `dir`, if one is recognised.
    pub fn detect(dir: &Path) -> Option<Layout> {
        if dir.join("corpus.jsonl").is_file() {
            Some(Layout::Beir)
        } else if dir.join("queries.tsv").is_file() || dir.join("qrels.txt").is_file() {
            Some(Layout::TrecDl)
        } else if dir.join("train.jsonl").is_file() {
            Some(Layout::MsMarcoTrain)
        } else {
            None
        }
    }
}

/// A data set on disk: its name, its folder and its layout. Reading happens on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    name: String,
    root: PathBuf,
    layout: Layout,
}

impl Dataset {
    /// Open a data set by path (an existing folder) or by name (a folder under [`data_dir`];
    /// the short names of [`ALIASES`] work too).
    pub fn open(name_or_path: impl AsRef<str>) -> Result<Self> {
        let s = name_or_path.as_ref();
        let path = Path::new(s);
        if path.is_dir() {
            return Self::at(path);
        }
        if path.components().count() > 1 {
            return Err(Error::NotFound {
                name: s.to_string(),
                message: format!("{} is not a folder", path.display()),
            });
        }
        let dir = data_dir().map_err(|e| match e {
            Error::NotFound { message, .. } => Error::NotFound {
                name: s.to_string(),
                message,
            },
            e => e,
        })?;
        Self::open_in(dir, s)
    }

    /// Open data set `name` (or an alias) under the data folder `data_dir`.
    pub fn open_in(data_dir: impl AsRef<Path>, name: &str) -> Result<Self> {
        let data_dir = data_dir.as_ref();
        let folder = ALIASES
            .iter()
            .find(|(a, _)| *a == name)
            .map_or(name, |(_, f)| *f);
        let root = data_dir.join(folder);
        if !root.is_dir() {
            let mut known: Vec<String> = std::fs::read_dir(data_dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.path().is_dir() && Layout::detect(&e.path()).is_some())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            known.sort();
            return Err(Error::NotFound {
                name: name.to_string(),
                message: format!(
                    "no folder {} (data folder: ${DATA_ENV} or the cache folder; it holds: {})",
                    root.display(),
                    if known.is_empty() {
                        "no data set".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
        let mut d = Self::at(&root)?;
        d.name = folder.to_string();
        Ok(d)
    }

    /// Open the data set in folder `dir`, detecting its layout.
    pub fn at(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let layout = Layout::detect(dir).ok_or_else(|| Error::NotFound {
            name: dir.display().to_string(),
            message: "expected corpus.jsonl (BEIR), queries.tsv or qrels.txt (TREC DL) or \
                      train.jsonl (MS MARCO training examples) in this folder, found none"
                .to_string(),
        })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Dataset {
            name,
            root: dir.to_path_buf(),
            layout,
        })
    }

    /// The data set's name (its folder name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn lacks(&self, what: &str) -> Error {
        Error::Invalid(format!(
            "data set {} ({:?} layout) has no {what}",
            self.name, self.layout
        ))
    }

    /// All queries (`queries.tsv` or `queries.jsonl`), judged or not.
    pub fn queries(&self) -> Result<Queries> {
        match self.layout {
            Layout::TrecDl => trec::read_queries(self.root.join("queries.tsv")),
            Layout::Beir => beir::read_queries(self.root.join("queries.jsonl")),
            Layout::MsMarcoTrain => Err(self.lacks("query file")),
        }
    }

    /// The qrels splits available: `["test"]` for TREC DL (`qrels.txt`), the file stems of
    /// `qrels/*.tsv` for BEIR, sorted.
    pub fn splits(&self) -> Result<Vec<String>> {
        match self.layout {
            Layout::TrecDl => Ok(vec!["test".to_string()]),
            Layout::Beir => list_stems(&self.root.join("qrels"), "tsv"),
            Layout::MsMarcoTrain => Ok(Vec::new()),
        }
    }

    /// The judgements of `split` (TREC DL: only `"test"`, the file `qrels.txt`; BEIR:
    /// `qrels/<split>.tsv`).
    pub fn qrels(&self, split: &str) -> Result<Qrels> {
        if self.layout == Layout::MsMarcoTrain {
            return Err(self.lacks("qrels"));
        }
        let splits = self.splits()?;
        if !splits.iter().any(|s| s == split) {
            return Err(Error::Invalid(format!(
                "data set {} has no split {split:?}; it has {}",
                self.name,
                splits.join(", ")
            )));
        }
        match self.layout {
            Layout::TrecDl => trec::read_qrels(self.root.join("qrels.txt")),
            _ => beir::read_qrels(self.root.join("qrels").join(format!("{split}.tsv"))),
        }
    }

    /// The names of the first-stage runs shipped in `runs/*.trec`, sorted (empty when none).
    pub fn run_names(&self) -> Result<Vec<String>> {
        let dir = self.root.join("runs");
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        list_stems(&dir, "trec")
    }

    /// The path of run `name` (`runs/<name>.trec`).
    pub fn run_path(&self, name: &str) -> PathBuf {
        self.root.join("runs").join(format!("{name}.trec"))
    }

    /// Read run `name` (`runs/<name>.trec`).
    pub fn run(&self, name: &str) -> Result<Run> {
        let path = self.run_path(name);
        if !path.is_file() {
            return Err(Error::NotFound {
                name: name.to_string(),
                message: format!(
                    "no run {} in data set {}; it has: {}",
                    path.display(),
                    self.name,
                    self.run_names()?.join(", ")
                ),
            });
        }
        trec::read_run(path)
    }

    /// Stream the documents (`collection.tsv` or `corpus.jsonl`) in file order.
    pub fn documents(&self) -> Result<DocumentReader> {
        match self.layout {
            Layout::TrecDl => Ok(DocumentReader::Tsv(trec::CollectionReader::open(
                self.root.join("collection.tsv"),
            )?)),
            Layout::Beir => Ok(DocumentReader::Jsonl(beir::CorpusReader::open(
                self.root.join("corpus.jsonl"),
            )?)),
            Layout::MsMarcoTrain => Err(self.lacks("document collection")),
        }
    }

    /// Read the documents for which `keep(id)` is true into memory.
    pub fn corpus(&self, keep: impl FnMut(&str) -> bool) -> Result<Corpus> {
        match self.layout {
            Layout::TrecDl => trec::read_collection(self.root.join("collection.tsv"), keep),
            Layout::Beir => beir::read_corpus(self.root.join("corpus.jsonl"), keep),
            Layout::MsMarcoTrain => Err(self.lacks("document collection")),
        }
    }

    /// The training examples of an MS MARCO training layout (`train.jsonl`).
    pub fn training_examples(&self) -> Result<Vec<TrainingExample>> {
        if self.layout != Layout::MsMarcoTrain {
            return Err(self.lacks("training examples (train.jsonl)"));
        }
        msmarco::read_examples(self.root.join("train.jsonl"))
    }
}

/// Documents of either layout, streamed in file order.
pub enum DocumentReader {
    /// From `collection.tsv`.
    Tsv(trec::CollectionReader),
    /// From `corpus.jsonl`.
    Jsonl(beir::CorpusReader),
}

impl Iterator for DocumentReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            DocumentReader::Tsv(r) => r.next(),
            DocumentReader::Jsonl(r) => r.next(),
        }
    }
}

fn list_stems(dir: &Path, ext: &str) -> Result<Vec<String>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut v = Vec::new();
    for entry in rd {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_file()
            && path.extension().is_some_and(|x| x == ext)
            && let Some(stem) = path.file_stem()
        {
            v.push(stem.to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_prefers_the_variable_and_checks_it() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Some(PathBuf::from("/nonexistent/cache"));
        let got = data_dir_from(Some(tmp.path().into()), cache.clone()).unwrap();
        assert_eq!(got, tmp.path());
        // unset or empty: the cache folder
        assert_eq!(
            data_dir_from(None, cache.clone()).unwrap(),
            cache.clone().unwrap()
        );
        assert_eq!(
            data_dir_from(Some(OsString::new()), cache.clone()).unwrap(),
            cache.clone().unwrap()
        );
        // set to something that is not a folder: an error naming the variable
        let missing = tmp.path().join("nope");
        match data_dir_from(Some(missing.clone().into()), cache) {
            Err(e @ Error::NotFound { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(DATA_ENV) && msg.contains("nope"), "{msg}");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(data_dir_from(None, None).is_err());
    }

    #[test]
    fn cache_dir_follows_xdg_then_home() {
        assert_eq!(
            cache_dir_from(Some("/x".into()), Some("/h".into())),
            Some(PathBuf::from("/x/rankmamba/data"))
        );
        assert_eq!(
            cache_dir_from(None, Some("/h".into())),
            Some(PathBuf::from("/h/.cache/rankmamba/data"))
        );
        assert_eq!(cache_dir_from(None, None), None);
    }
}
