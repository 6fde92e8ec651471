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
                anyhow::bail!(
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
        anyhow::bail!(
            "need at least one model, a positive depth, batch size and groups per step, and groups of 2 or more"
        );
    }
    p.pad_multiple = a.pad_multiple.unwrap_or_else(|| a.backend.pad_multiple());
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
