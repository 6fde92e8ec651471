//! `rankmamba bench matmul`: the projections' products of a training step, per matmul kernel.

use clap::Args as ClapArgs;
use linear_kernels::MatmulKernel;
use rankmamba::backend::BackendKind;
use rankmamba::bench::Precision;
use rankmamba::bench::matmul::{MatmulBench, run, table};

#[derive(ClapArgs)]
pub struct Args {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Storage type of the operands (bf16: cuda only).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Rows of the activations (tokens per step).
    #[arg(long, default_value_t = 65_536)]
    pub tokens: usize,
    /// Layers as D_INxD_OUT (comma separated). Default: BERT-base's attention projection and
    /// feed-forward pair, and Mamba-130m's in_proj half and out_proj.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "768x768,768x3072,3072x768,768x1536,1536x768"
    )]
    pub layers: Vec<String>,
    /// Kernels (comma separated): auto, burn, tma-mma, tma-cmma, specialized-tma-mma,
    /// double-cyclic-mma, cyclic-mma, unit.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "burn,auto,tma-mma,tma-cmma,specialized-tma-mma,double-cyclic-mma,cyclic-mma"
    )]
    pub kernels: Vec<MatmulKernel>,
    /// Untimed repetitions per product.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed repetitions per product (median reported).
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Print JSON (settings, build, rows) instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn layer(s: &str) -> anyhow::Result<(usize, usize)> {
    let bad =
        || anyhow::anyhow!("--layers: {s:?} is not D_INxD_OUT with positive sizes (e.g. 768x3072)");
    let (a, b) = s.split_once('x').ok_or_else(bad)?;
    let (a, b): (usize, usize) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    anyhow::ensure!(a > 0 && b > 0, bad());
    Ok((a, b))
}

pub fn run_cmd(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(a.tokens > 0, "--tokens must be positive");
    anyhow::ensure!(!a.kernels.is_empty(), "--kernels: give at least one kernel");
    let s = MatmulBench {
        tokens: a.tokens,
        layers: a
            .layers
            .iter()
            .map(|l| layer(l))
            .collect::<anyhow::Result<_>>()?,
        kernels: a.kernels.clone(),
        warmup: a.warmup,
        reps: a.reps.max(1),
    };
    let rows =
        rankmamba::with_bench_backend!(a.backend, a.precision, |B, dev| run::<B>(&s, &dev))??;
    rankmamba::bench::BenchOutput {
        bench: "matmul",
        backend: a.backend,
        precision: a.precision,
        settings: ("settings", &s),
        rows: &rows,
    }
    .print(
        a.json,
        &format!(
            "bench matmul: backend {} precision {} tokens {}",
            a.backend.name(),
            a.precision.name(),
            a.tokens
        ),
        &table(&rows),
    )
}
