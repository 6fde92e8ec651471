//! `rankmamba reproduce --preset quick|full`: the study.

use std::path::PathBuf;

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::fetch;
use rankmamba::study::{self, Preset};
use rankmamba::with_backend;

#[derive(ClapArgs)]
pub struct Args {
    /// `quick` (CPU, about 10 minutes) or `full` (the paper's scale, for a GPU).
    #[arg(long, default_value = "quick", value_parser = ["quick", "full"])]
    pub preset: String,
    /// Output directory (default target/reproduce/PRESET).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Replace the preset's models (comma-separated names or directories).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Replace the preset's training steps (0: rerank with the untrained heads).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Replace the preset's documents per training group.
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Replace the preset's groups per optimizer step.
    #[arg(long)]
    pub groups_per_step: Option<usize>,
    /// Replace the preset's learning rates (pretrained,scratch).
    #[arg(long, value_delimiter = ',', num_args = 2)]
    pub lr: Option<Vec<f64>>,
    /// Replace the preset's reranking batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Replace the preset's reranking depth.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Replace the preset's number of test queries per task (0 = all).
    #[arg(long)]
    pub test_queries: Option<usize>,
    /// Replace the preset's token limit.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Only these tasks (comma-separated: scifact, dl19-to-dl20, dl20-to-dl19).
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<String>>,
    /// Pad batch widths to a multiple of N tokens (default: 1 on cpu, 64 on GPU backends).
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Fetch missing data sets, tokenizers and models (as `rankmamba data fetch`) without asking.
    /// Without it, a run on a terminal asks, and any other run stops with the command to run.
    #[arg(long)]
    pub fetch: bool,
}

/// Make sure everything the preset reads is where the lookup order finds it: fetch what is
/// missing with `--fetch` (or when the user says yes on a terminal), else fail naming it.
fn ensure_inputs(p: &Preset, fetch_missing: bool, progress: bool) -> Result<()> {
    let mut missing = Vec::new();
    let mut first_error = None;
    for name in p.requirements() {
        let Ok(art) = fetch::find(&name) else {
            continue; // not fetchable by name: the study's own error names it
        };
        if let Err(e) = fetch::locate(art) {
            first_error.get_or_insert(e);
            missing.push(art);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|a| a.name).collect();
    let mb: f64 = missing.iter().map(|a| a.size() as f64 / 1e6).sum();
    let go = fetch_missing || {
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        interactive && {
            eprint!(
                "missing: {} ({mb:.0} MB). Fetch now into {}? [y/N] ",
                names.join(", "),
                fetch::Dirs::default_dirs()?.data.display()
            );
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            matches!(answer.trim(), "y" | "Y" | "yes")
        }
    };
    if !go {
        bail!(
            "{}\nmissing: {}. Fetch with: rankmamba data fetch {} (or run reproduce with --fetch)",
            first_error.map(|e| e.to_string()).unwrap_or_default(),
            names.join(", "),
            names.join(" ")
        );
    }
    for art in missing {
        let dir = fetch::obtain(art, progress).with_context(|| format!("fetching {}", art.name))?;
        eprintln!("{}: in {}", art.name, dir.display());
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    a.backend.ensure_compiled()?;
    let mut p = Preset::named(&a.preset)?;
    if let Some(m) = a.models {
        p.models = m;
    }
    if let Some(s) = a.steps {
        p.train.steps = s;
    }
    if let Some(g) = a.group_size {
        p.train.group_size = g;
    }
    if let Some(g) = a.groups_per_step {
        p.train.groups_per_step = g;
    }
    if let Some(lr) = a.lr {
        (p.lr_pretrained, p.lr_scratch) = (lr[0], lr[1]);
    }
    if let Some(b) = a.batch_size {
        p.batch_size = b;
    }
    if let Some(d) = a.depth {
        p.depth = d;
    }
    if let Some(n) = a.test_queries {
        p.test_queries = (n > 0).then_some(n);
    }
    if let Some(n) = a.max_length {
        p.max_length = n;
    }
    if let Some(t) = a.tasks {
        let known: Vec<String> = p.tasks.iter().map(|t| t.name()).collect();
        for name in &t {
            if !known.contains(name) {
                bail!(
                    "unknown task {name:?}: expected one of {}",
                    known.join(", ")
                );
            }
        }
        p.tasks.retain(|task| t.contains(&task.name()));
    }
    if p.models.is_empty()
        || p.depth == 0
        || p.train.group_size < 2
        || p.train.groups_per_step == 0
        || p.batch_size == 0
    {
        bail!(
            "need at least one model, a positive depth, batch size and groups per step, and groups of 2 or more"
        );
    }
    p.pad_multiple = a.pad_multiple.unwrap_or_else(|| a.backend.pad_multiple());
    ensure_inputs(&p, a.fetch, !a.quiet)?;
    let out = a.out.unwrap_or_else(|| study::default_out(&p.name));
    let report = with_backend!(a.backend, |B, dev| study::reproduce::<B>(
        &p,
        a.backend.name(),
        &out,
        &dev,
        !a.quiet
    ))??;
    print!("{}", study::markdown(&report));
    eprintln!("wrote {}/results.md and results.json", out.display());
    Ok(())
}
