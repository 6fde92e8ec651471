//! `rankmamba reproduce --preset quick|full`: the study.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::study::{self, Preset};
use rankmamba::with_backend;

#[derive(ClapArgs)]
pub struct Args {
    /// `quick` (CPU, about 10 minutes) or `full` (the paper's scale, for a GPU).
    #[arg(long, default_value = "quick")]
    pub preset: String,
    /// Output directory (default target/reproduce/PRESET).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Replace the preset's models (comma-separated names or directories).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Replace the preset's training steps.
    #[arg(long)]
    pub steps: Option<usize>,
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
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
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
                anyhow::bail!(
                    "unknown task {name:?}: expected one of {}",
                    known.join(", ")
                );
            }
        }
        p.tasks.retain(|task| t.contains(&task.name()));
    }
    if p.models.is_empty() || p.train.steps == 0 || p.depth == 0 {
        anyhow::bail!("need at least one model, one step and a positive depth");
    }
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
