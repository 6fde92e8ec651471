//! `rankmamba bench scan`: selective scan vs attention core and Mamba block vs BERT layer at
//! the same token count; a table (ms, tokens/s, ratio), an SVG plot, optional JSON.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::bench::Precision;
use rankmamba::bench::scan::{Part, Pass, ScanGrid, run_grid, table};

#[derive(ClapArgs)]
pub struct Args {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Precision of tensors and weights (bf16: cuda only).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Sequence lengths (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "128,512,2048,8192")]
    pub lens: Vec<usize>,
    /// Tokens per call (batch = tokens / L, at least 1); default 65536 on GPUs, 8192 on cpu.
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Model width (d_inner = 2 x width; heads of 64 = width / 64 unless --heads).
    #[arg(long, default_value_t = 768)]
    pub d_model: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 12)]
    pub heads: usize,
    /// SSM state size N.
    #[arg(long, default_value_t = 16)]
    pub state: usize,
    /// Parts to measure (comma separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "scan,attention,mamba-block,bert-layer"
    )]
    pub parts: Vec<Part>,
    /// The attention of the attention part and the BERT layer: this workspace's flash kernels,
    /// Burn's `attention`, or the matmul-softmax reference.
    #[arg(long, value_enum, default_value = "flash")]
    pub attention: rankmamba::bench::AttentionKind,
    /// Fraction of each row's keys masked as padding in the attention part and the BERT layer
    /// (0 to 0.99).
    #[arg(long, default_value_t = 0.0)]
    pub padding: f64,
    /// Forward only (no forward + backward).
    #[arg(long)]
    pub fwd_only: bool,
    /// Untimed repetitions per cell.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed repetitions per cell (median reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Write the SVG plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print JSON (settings, build, rows) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(!a.lens.is_empty(), "--lens: give at least one length");
    anyhow::ensure!(
        a.lens.iter().all(|&l| l > 0) && a.d_model > 0 && a.state > 0 && a.heads > 0,
        "--lens, --d-model, --heads and --state must be positive"
    );
    anyhow::ensure!(
        a.d_model.is_multiple_of(a.heads),
        "--d-model {} is not a multiple of --heads {}",
        a.d_model,
        a.heads
    );
    let tokens = a.tokens.unwrap_or(if a.backend == BackendKind::Cpu {
        8192
    } else {
        65_536
    });
    anyhow::ensure!(tokens > 0, "--tokens must be positive");
    // bounds that keep every buffer of a cell allocatable (inputs and states are
    // `max(L, tokens) x d_model` and `x state` floats)
    const MAX_TOKENS: usize = 1 << 24;
    if let Some(l) = a.lens.iter().find(|&&l| l > MAX_TOKENS) {
        anyhow::bail!("--lens {l} is more than {MAX_TOKENS} tokens");
    }
    anyhow::ensure!(
        tokens <= MAX_TOKENS,
        "--tokens {tokens} is more than {MAX_TOKENS}"
    );
    anyhow::ensure!(
        a.d_model <= 1 << 16 && a.state <= 1 << 10,
        "--d-model must be at most 65536 and --state at most 1024"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&a.padding),
        "--padding {} must be at least 0 and below 1",
        a.padding
    );
    let grid = ScanGrid {
        lens: a.lens.clone(),
        tokens,
        d_model: a.d_model,
        heads: a.heads,
        state: a.state,
        parts: a.parts.clone(),
        passes: if a.fwd_only {
            vec![Pass::Fwd]
        } else {
            vec![Pass::Fwd, Pass::FwdBwd]
        },
        warmup: a.warmup,
        reps: a.reps.max(1),
        attention: a.attention,
        padding: a.padding,
    };
    let rows = rankmamba::with_bench_backend!(a.backend, a.precision, |B, dev| {
        run_grid::<B>(&grid, &dev, |r| {
            eprintln!(
                "bench scan: {} {} L={} batch={}: {}",
                r.part.name(),
                r.pass.name(),
                r.len,
                r.batch,
                match (&r.timing, &r.error) {
                    (Some(t), _) => format!("{:.3} ms", t.median_ms),
                    (None, e) => format!("error: {}", e.as_deref().unwrap_or("?")),
                }
            )
        })
    })?;
    let title = format!(
        "scan vs attention ({}, {:.0}% padding), {} {}, {} tokens per call, d_model {}",
        a.attention.name(),
        a.padding * 100.0,
        a.backend.name(),
        a.precision.name(),
        tokens,
        a.d_model
    );
    if let Some(p) = &a.plot {
        rankmamba::bench::plot::write_svg(&rows, &title, p)?;
        eprintln!("bench scan: plot written to {}", p.display());
    }
    rankmamba::bench::BenchOutput {
        bench: "scan",
        backend: a.backend,
        precision: a.precision,
        settings: ("grid", &grid),
        rows: &rows,
    }
    .print(a.json, &title, &table(&rows))
}
