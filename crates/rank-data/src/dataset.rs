//! Finding a data set by path or by name, and reading its parts whatever its layout.
//!
//! A name is looked up in the folders of [`crate::locate`] (`--data`, `$RANKMAMBA_DATA`, the
//! repository's `data/` or `../shared/data`, the cache), the first that holds it winning. Each
//! folder holds one sub-folder per data set, laid out as in `../shared/data/README.md`:
//!
//! | layout | files |
//! |---|---|
//! | [`Layout::TrecDl`] | `queries.tsv`, `collection.tsv`, `qrels.txt`, `runs/*.trec` |
//! | [`Layout::Beir`] | `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`, optional `runs/*.trec` |
//! | [`Layout::MsMarcoTrain`] | `train.jsonl` (`{"query","pos","neg"}` per line) |

use crate::beir;
use crate::error::{Error, Result};
use crate::locate::{Kind, Locations};
use crate::msmarco::{self, TrainingExample};
use crate::trec;
use crate::types::{Corpus, Document, Queries};
use ir_metrics::{Qrels, Run};
use std::path::{Path, PathBuf};

/// Short names accepted besides the folder names.
pub const ALIASES: &[(&str, &str)] = &[
    ("dl19", "trec-dl-2019-passage"),
    ("dl20", "trec-dl-2020-passage"),
    ("msmarco-sample", "msmarco-train-sample"),
];

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
    /// Open a data set by path or by name. A path is anything with a path separator, or that
    /// starts with `.` (`./my-data`, `/data/scifact`); a bare name (or one of the short names
    /// of [`ALIASES`]) is looked up in the folders of [`Locations::discover`], so a folder of
    /// the same name in the working directory never shadows it.
    pub fn open(name_or_path: impl AsRef<str>) -> Result<Self> {
        Self::open_from(&Locations::discover(), name_or_path)
    }

    /// [`Dataset::open`] with the given lookup order.
    pub fn open_from(locations: &Locations, name_or_path: impl AsRef<str>) -> Result<Self> {
        let s = name_or_path.as_ref();
        let path = Path::new(s);
        if is_path(s) {
            if path.is_dir() {
                return Self::at(path);
            }
            return Err(Error::NotFound {
                name: s.to_string(),
                message: format!("{} is not a folder", path.display()),
            });
        }
        let folder = folder_of(s);
        let root = locations.find(Kind::Dataset, folder, |d| Layout::detect(d).is_some())?;
        let mut d = Self::at(&root)?;
        d.name = folder.to_string();
        Ok(d)
    }

    /// Open data set `name` (or an alias) under the data folder `data_dir`.
    pub fn open_in(data_dir: impl AsRef<Path>, name: &str) -> Result<Self> {
        let data_dir = data_dir.as_ref();
        let folder = folder_of(name);
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
                    "no folder {} (it holds: {})",
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

/// True when `s` names a data set by path (it starts with `.`, is absolute or has a path
/// separator), false for a bare name that the lookup order resolves.
pub fn is_path(s: &str) -> bool {
    let path = Path::new(s);
    s.starts_with('.') || path.is_absolute() || path.components().count() > 1
}

/// The folder name of data set `name` (an alias resolved).
fn folder_of(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, f)| *f)
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
