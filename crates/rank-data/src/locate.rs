//! Where data sets, tokenizers and models are found: one lookup order for every crate and
//! command.
//!
//! A name is looked up in these folders, in this order, and the first that holds it wins:
//!
//! 1. the folder given with `--data DIR` (the `rankmamba` command's global flag; a library user
//!    sets it with [`set_data_flag`]);
//! 2. `$RANKMAMBA_DATA`;
//! 3. next to the repository that holds the working directory (the nearest ancestor with a
//!    `.git`): its `data/` folder, then `../shared/data` beside it;
//! 4. the platform cache folder, `rankmamba/data` under [`dirs::cache_dir`]
//!    (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS).
//!
//! Every folder is laid out the same way: data sets in `<name>/`, tokenizers in
//! `tokenizers/<name>/`, models in `models/<name>/` (as `../shared/data`). A folder named by
//! `--data` or `$RANKMAMBA_DATA` must exist: a typo is an error, never a silent fall-through
//! to the next level. `rankmamba data fetch` writes into the first of 1, 2 and 4
//! ([`Locations::fetch_dir`]), never into a repository's folders.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the data folder.
pub const DATA_ENV: &str = "RANKMAMBA_DATA";

static DATA_FLAG: OnceLock<PathBuf> = OnceLock::new();

/// Set the process's `--data DIR` folder, which [`Locations::discover`] puts first. Call it once,
/// at start-up (the `rankmamba` command does when given `--data`); a second call is an error.
pub fn set_data_flag(dir: impl Into<PathBuf>) -> Result<()> {
    DATA_FLAG
        .set(dir.into())
        .map_err(|d| Error::Invalid(format!("--data was already set; not changing it to {d:?}")))
}

/// Which level of the lookup order a folder comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `--data DIR`.
    Flag,
    /// `$RANKMAMBA_DATA`.
    Env,
    /// `data/` or `../shared/data` next to the working directory's repository.
    Repository,
    /// The platform cache folder.
    Cache,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Place::Flag => "--data",
            Place::Env => "$RANKMAMBA_DATA",
            Place::Repository => "repository",
            Place::Cache => "cache",
        })
    }
}

/// One folder of the lookup order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Its level.
    pub place: Place,
    /// The folder.
    pub dir: PathBuf,
}

/// What is looked up, for the error message and the command that fetches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A data set: `<name>/`.
    Dataset,
    /// A tokenizer: `tokenizers/<name>/`.
    Tokenizer,
    /// Model weights: `models/<name>/`.
    Model,
}

impl Kind {
    /// The folder of `name` inside a data folder.
    pub fn folder(self, name: &str) -> PathBuf {
        match self {
            Kind::Dataset => PathBuf::from(name),
            Kind::Tokenizer => Path::new("tokenizers").join(name),
            Kind::Model => Path::new("models").join(name),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Dataset => "data set",
            Kind::Tokenizer => "tokenizer",
            Kind::Model => "model",
        }
    }
}

/// The folders of the lookup order, first to last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    roots: Vec<Root>,
    /// `--data` / `$RANKMAMBA_DATA` values that are not folders (an error at every lookup).
    bad: Vec<Root>,
    /// Where `$RANKMAMBA_DATA` was unset, for the error message.
    env_unset: bool,
}

impl Locations {
    /// The lookup order of this process: [`set_data_flag`], `$RANKMAMBA_DATA`, the working
    /// directory's repository, the platform cache.
    pub fn discover() -> Self {
        let cwd = std::env::current_dir().ok();
        Self::from_parts(
            DATA_FLAG.get().cloned(),
            std::env::var_os(DATA_ENV),
            cwd.as_deref(),
            dirs::cache_dir(),
        )
    }

    /// The lookup order from its parts: the `--data` folder, the value of `$RANKMAMBA_DATA`,
    /// the working directory and the platform cache folder (`rankmamba/data` is appended).
    pub fn from_parts(
        flag: Option<PathBuf>,
        env: Option<OsString>,
        cwd: Option<&Path>,
        cache: Option<PathBuf>,
    ) -> Self {
        let mut roots = Vec::new();
        let mut bad = Vec::new();
        let env = env.filter(|e| !e.is_empty()).map(PathBuf::from);
        let env_unset = env.is_none();
        for (place, dir) in [(Place::Flag, flag), (Place::Env, env)] {
            if let Some(dir) = dir {
                let root = Root { place, dir };
                if root.dir.is_dir() {
                    roots.push(root);
                } else {
                    bad.push(root);
                }
            }
        }
        if let Some(repo) = cwd.and_then(repository_root) {
            roots.push(Root {
                place: Place::Repository,
                dir: repo.join("data"),
            });
            if let Some(parent) = repo.parent() {
                roots.push(Root {
                    place: Place::Repository,
                    dir: parent.join("shared").join("data"),
                });
            }
        }
        if let Some(cache) = cache.filter(|c| !c.as_os_str().is_empty()) {
            roots.push(Root {
                place: Place::Cache,
                dir: cache.join("rankmamba").join("data"),
            });
        }
        Locations {
            roots,
            bad,
            env_unset,
        }
    }

    /// The folders, first to last (only `--data` and `$RANKMAMBA_DATA` values that are folders).
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Where `rankmamba data fetch` writes: the `--data` folder, else `$RANKMAMBA_DATA`, else
    /// the cache folder (created by the fetch); an error without any of them.
    pub fn fetch_dir(&self) -> Result<PathBuf> {
        self.check_explicit()?;
        self.roots
            .iter()
            .find(|r| r.place != Place::Repository)
            .map(|r| r.dir.clone())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no folder to fetch into: pass --data DIR or set ${DATA_ENV} (there is no \
                     platform cache folder)"
                ))
            })
    }

    fn check_explicit(&self) -> Result<()> {
        match self.bad.first() {
            Some(r) => Err(Error::Invalid(format!(
                "{} names {}, which is not a folder (create it first to fetch into it)",
                r.place,
                r.dir.display()
            ))),
            None => Ok(()),
        }
    }

    /// The folder of `name` of kind `kind` in the first root that has it, where `complete`
    /// accepts it. The error lists every place looked at and the command that fetches it.
    pub fn find(
        &self,
        kind: Kind,
        name: &str,
        complete: impl Fn(&Path) -> bool,
    ) -> Result<PathBuf> {
        self.check_explicit()?;
        let rel = kind.folder(name);
        let mut looked = Vec::new();
        for root in &self.roots {
            let dir = root.dir.join(&rel);
            if dir.is_dir() && complete(&dir) {
                return Ok(dir);
            }
            let state = if dir.is_dir() { "incomplete" } else { "absent" };
            looked.push(format!("  {:<16} {} ({state})", root.place, dir.display()));
        }
        if self.env_unset {
            looked.push(format!("  {:<16} (unset)", Place::Env));
        }
        let mut message = format!("looked in:\n{}", looked.join("\n"));
        if kind == Kind::Dataset {
            let mut known: Vec<String> = self
                .roots
                .iter()
                .filter_map(|r| std::fs::read_dir(&r.dir).ok())
                .flat_map(|rd| rd.filter_map(|e| e.ok()))
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && n != "models" && n != "tokenizers")
                .collect();
            known.sort();
            known.dedup();
            if !known.is_empty() {
                message.push_str(&format!(
                    "
data sets there: {}",
                    known.join(", ")
                ));
            }
        }
        if kind == Kind::Dataset && Path::new(name).is_dir() {
            message.push_str(&format!(
                "\nthe working directory has a folder {name}: write ./{name} to use it"
            ));
        }
        if fetchable(name) {
            message.push_str(&format!(
                "\nfetch it with: rankmamba data fetch {name} (or point --data / ${DATA_ENV} at a \
                 folder that holds {})",
                rel.display()
            ));
        } else {
            message.push_str(&format!(
                "\n{name} has no download (`rankmamba data list` lists those that do): \
                 point --data / ${DATA_ENV} at a folder that holds {}",
                rel.display()
            ));
        }
        Err(Error::Missing {
            what: kind.noun(),
            name: name.to_string(),
            message,
        })
    }
}

/// Whether `name` (or an alias) is in the fetch registry (`fetch/registry.json`, embedded
/// whether or not the `fetch` feature is on), so that an error only suggests `data fetch` for
/// what it can download.
fn fetchable(name: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        #[serde(default)]
        aliases: Vec<String>,
    }
    let entries: Vec<Entry> =
        serde_json::from_str(include_str!("fetch/registry.json")).unwrap_or_default();
    entries
        .iter()
        .any(|e| e.name == name || e.aliases.iter().any(|a| a == name))
}

/// The nearest ancestor of `cwd` (itself included) holding `.git` (a folder, or a file in a
/// worktree or submodule).
fn repository_root(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A repository at `<tmp>/work/repo` with `data/` and `../shared/data`, a `--data` folder,
    /// a `$RANKMAMBA_DATA` folder and a cache, each holding data set `d` with a marker file.
    fn layout() -> (tempfile::TempDir, [PathBuf; 5]) {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let repo = t.join("work/repo");
        fs::create_dir_all(repo.join(".git")).unwrap();
        fs::create_dir_all(repo.join("crates/sub")).unwrap();
        let dirs = [
            t.join("flag"),
            t.join("env"),
            repo.join("data"),
            t.join("work/shared/data"),
            t.join("cache/rankmamba/data"),
        ];
        for (i, d) in dirs.iter().enumerate() {
            fs::create_dir_all(d.join("d")).unwrap();
            fs::write(d.join("d/marker"), i.to_string()).unwrap();
        }
        (tmp, dirs)
    }

    fn locs(t: &Path, flag: bool, env: bool) -> Locations {
        Locations::from_parts(
            flag.then(|| t.join("flag")),
            env.then(|| t.join("env").into_os_string()),
            Some(&t.join("work/repo/crates/sub")),
            Some(t.join("cache")),
        )
    }

    fn winner(l: &Locations) -> String {
        let dir = l.find(Kind::Dataset, "d", |_| true).unwrap();
        fs::read_to_string(dir.join("marker")).unwrap()
    }

    #[test]
    fn each_level_wins_over_the_next() {
        let (tmp, dirs) = layout();
        let t = tmp.path();
        assert_eq!(winner(&locs(t, true, true)), "0", "--data beats the rest");
        assert_eq!(
            winner(&locs(t, false, true)),
            "1",
            "$RANKMAMBA_DATA beats the repository"
        );
        assert_eq!(
            winner(&locs(t, false, false)),
            "2",
            "the repository's data/ comes first"
        );
        fs::remove_dir_all(dirs[2].join("d")).unwrap();
        assert_eq!(winner(&locs(t, false, false)), "3", "then ../shared/data");
        fs::remove_dir_all(dirs[3].join("d")).unwrap();
        assert_eq!(winner(&locs(t, false, false)), "4", "then the cache");
        // A level that lacks the name falls through to the next one that has it.
        fs::remove_dir_all(dirs[0].join("d")).unwrap();
        assert_eq!(winner(&locs(t, true, false)), "4");
        // `complete` can reject a folder: the next one is taken.
        let l = locs(t, false, true);
        let dir = l
            .find(Kind::Dataset, "d", |d| !d.starts_with(&dirs[1]))
            .unwrap();
        assert_eq!(dir, dirs[4].join("d"));
    }

    #[test]
    fn models_and_tokenizers_live_in_subfolders() {
        let (tmp, dirs) = layout();
        fs::create_dir_all(dirs[3].join("models/m")).unwrap();
        fs::create_dir_all(dirs[4].join("tokenizers/t")).unwrap();
        let l = locs(tmp.path(), true, true);
        assert_eq!(
            l.find(Kind::Model, "m", |_| true).unwrap(),
            dirs[3].join("models/m")
        );
        assert_eq!(
            l.find(Kind::Tokenizer, "t", |_| true).unwrap(),
            dirs[4].join("tokenizers/t")
        );
    }

    #[test]
    fn the_error_lists_every_place_and_the_fix() {
        let (tmp, dirs) = layout();
        let l = locs(tmp.path(), true, false);
        let msg = l
            .find(Kind::Dataset, "nosuch", |_| true)
            .unwrap_err()
            .to_string();
        for d in [&dirs[0], &dirs[2], &dirs[3], &dirs[4]] {
            assert!(
                msg.contains(&d.join("nosuch").display().to_string()),
                "{msg}"
            );
        }
        assert!(
            msg.contains("$RANKMAMBA_DATA") && msg.contains("(unset)"),
            "{msg}"
        );
        // not downloadable: the way that works instead of a `data fetch` that cannot
        assert!(
            msg.contains("nosuch has no download") && !msg.contains("data fetch nosuch"),
            "{msg}"
        );
        let msg = l
            .find(Kind::Dataset, "scifact", |_| true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("rankmamba data fetch scifact"), "{msg}");
        assert!(!msg.contains("scripts/"), "{msg}");
        let msg = l.find(Kind::Model, "m", |_| true).unwrap_err().to_string();
        assert!(
            msg.contains(&dirs[4].join("models/m").display().to_string()),
            "{msg}"
        );
        // an incomplete folder is named as such
        let msg = l
            .find(Kind::Dataset, "d", |_| false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("(incomplete)"), "{msg}");
    }

    #[test]
    fn explicit_folders_must_exist() {
        let (tmp, _) = layout();
        let t = tmp.path();
        for (flag, env) in [(Some(t.join("typo")), None), (None, Some(t.join("typo")))] {
            let l = Locations::from_parts(
                flag,
                env.map(PathBuf::into_os_string),
                Some(&t.join("work/repo")),
                Some(t.join("cache")),
            );
            let e = l
                .find(Kind::Dataset, "d", |_| true)
                .unwrap_err()
                .to_string();
            assert!(e.contains("typo") && e.contains("not a folder"), "{e}");
            assert!(l.fetch_dir().is_err());
        }
        // empty $RANKMAMBA_DATA counts as unset
        let l = Locations::from_parts(None, Some(OsString::new()), None, Some(t.join("cache")));
        assert_eq!(l.roots().len(), 1);
    }

    #[test]
    fn fetch_dir_skips_the_repository() {
        let (tmp, dirs) = layout();
        let t = tmp.path();
        assert_eq!(locs(t, true, true).fetch_dir().unwrap(), dirs[0]);
        assert_eq!(locs(t, false, true).fetch_dir().unwrap(), dirs[1]);
        assert_eq!(locs(t, false, false).fetch_dir().unwrap(), dirs[4]);
        let none = Locations::from_parts(None, None, Some(&t.join("work/repo")), None);
        assert!(none.fetch_dir().is_err());
    }
}
