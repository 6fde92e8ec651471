//! `rankmamba bench train` and `rankmamba bench rerank`: cross-encoder training-step and
//! reranking throughput for the study's model configs (random init, random token ids).

use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::bench::Precision;
use rankmamba::bench::models::{
    ModelKind, RerankBench, TrainBench, rerank_one, rerank_table, train_one, train_table,
};

#[derive(ClapArgs)]
pub struct TrainArgs {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Precision of the whole model (bf16: cuda only; no autocast in Burn 0.21).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Models (comma separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mamba-130m,bert-base,pythia-160m,pythia-410m,mamba-370m"
    )]
    pub models: Vec<ModelKind>,
    /// Queries per step.
    #[arg(long, default_value_t = 16)]
    pub queries: usize,
    /// Documents per query (the LCE group).
    #[arg(long, default_value_t = 8)]
    pub group: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 512)]
    pub len: usize,
    /// Untimed steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps (median reported).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Autodiff checkpointing (`balanced`: element-wise intermediates recomputed in the
    /// backward pass instead of kept).
    #[arg(long, value_enum, default_value = "none")]
    pub checkpointing: rankmamba::backend::Checkpointing,
    /// The transformers' attention: this workspace's flash kernels, Burn's `attention`, or the
    /// matmul-softmax reference.
    #[arg(long, value_enum, default_value = "flash")]
    pub attention: rankmamba::bench::AttentionKind,
    /// The kernel of every projection's product: auto (TMA + MMA where it runs, else
    /// Burn's), burn, tma-mma, tma-cmma, specialized-tma-mma, double-cyclic-mma, cyclic-mma,
    /// unit.
    #[arg(long, default_value = "auto")]
    pub matmul: linear_kernels::MatmulKernel,
    /// The AdamW: fused-adamw (one kernel per parameter tensor) or Burn's adamw.
    #[arg(long, value_enum, default_value = "fused-adamw")]
    pub optimizer: rankmamba::bench::models::OptimizerKind,
    /// The LayerNorm / RMSNorm: kernel (one launch forward, two backward, where the backend has
    /// them) or Burn's operations.
    #[arg(long, value_enum, default_value = "kernel")]
    pub norm: rankmamba::bench::models::NormImpl,
    /// Also sync the device before the optimizer step and time it alone (the step then loses
    /// the overlap of backward and optimizer).
    #[arg(long)]
    pub phases: bool,
    /// Print JSON (settings, build, rows) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(ClapArgs)]
pub struct RerankArgs {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Precision of the whole model (bf16: cuda only).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Models (comma separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mamba-130m,mamba-370m,bert-base,pythia-160m"
    )]
    pub models: Vec<ModelKind>,
    /// Candidates per query.
    #[arg(long, default_value_t = 100)]
    pub candidates: usize,
    /// Tokens per (query, document) sequence.
    #[arg(long, default_value_t = 512)]
    pub len: usize,
    /// Rows per forward call (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,128")]
    pub batches: Vec<usize>,
    /// Queries timed per batch size.
    #[arg(long, default_value_t = 2)]
    pub queries: usize,
    /// Untimed forward calls per batch size.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print JSON (settings, build, rows) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run_train(a: TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.queries > 0 && a.group > 0 && a.len > 0,
        "--queries, --group and --len must be positive"
    );
    anyhow::ensure!(!a.models.is_empty(), "--models: give at least one model");
    let s = TrainBench {
        queries: a.queries,
        group: a.group,
        len: a.len,
        warmup: a.warmup,
        steps: a.steps.max(1),
        checkpointing: a.checkpointing,
        attention: a.attention,
        matmul: a.matmul,
        norm: a.norm,
        optimizer: a.optimizer,
        phases: a.phases,
    };
    let rows =
        rankmamba::with_bench_backend!(a.backend, a.precision, a.checkpointing, |B, dev| {
            a.models
                .iter()
                .map(|&m| {
                    eprintln!("bench train: {} ...", m.name());
                    let r = train_one::<B>(m, &s, &dev);
                    match (&r.error, r.timing, r.tokens_per_s) {
                        (Some(e), _, _) => eprintln!("bench train: {} failed: {e}", m.name()),
                        (None, Some(t), Some(tps)) => eprintln!(
                            "bench train: {} {:.1} ms/step (median of {}), {:.0} tokens/s",
                            m.name(),
                            t.median_ms,
                            t.reps,
                            tps
                        ),
                        _ => {}
                    }
                    r
                })
                .collect::<Vec<_>>()
        })?;
    rankmamba::bench::BenchOutput {
        bench: "train",
        backend: a.backend,
        precision: a.precision,
        settings: ("settings", &s),
        rows: &rows,
    }
    .print(
        a.json,
        &format!(
            "bench train: backend {} precision {} checkpointing {} attention {} matmul {} optimizer {} norm {}",
            a.backend.name(),
            a.precision.name(),
            a.checkpointing.name(),
            a.attention.name(),
            a.matmul,
            a.optimizer.name(),
            a.norm.name()
        ),
        &train_table(&rows, &s),
    )
}

pub fn run_rerank(a: RerankArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.candidates > 0 && a.len > 0 && a.queries > 0,
        "--candidates, --len and --queries must be positive"
    );
    anyhow::ensure!(
        !a.batches.is_empty() && a.batches.iter().all(|&b| b > 0),
        "--batches: give positive batch sizes"
    );
    anyhow::ensure!(!a.models.is_empty(), "--models: give at least one model");
    let s = RerankBench {
        candidates: a.candidates,
        len: a.len,
        batches: a.batches.clone(),
        queries: a.queries,
        warmup: a.warmup,
    };
    let rows = rankmamba::with_bench_backend!(a.backend, a.precision, |B, dev| {
        a.models
            .iter()
            .flat_map(|&m| {
                eprintln!("bench rerank: {} ...", m.name());
                let rows = rerank_one::<B>(m, &s, &dev);
                for r in &rows {
                    match (&r.error, r.docs_per_s, r.ms_per_query) {
                        (Some(e), _, _) => {
                            eprintln!("bench rerank: {} batch {} failed: {e}", m.name(), r.batch)
                        }
                        (None, Some(d), Some(q)) => eprintln!(
                            "bench rerank: {} batch {} {d:.1} docs/s, {q:.2} ms/query",
                            m.name(),
                            r.batch
                        ),
                        _ => {}
                    }
                }
                rows
            })
            .collect::<Vec<_>>()
    })?;
    rankmamba::bench::BenchOutput {
        bench: "rerank",
        backend: a.backend,
        precision: a.precision,
        settings: ("settings", &s),
        rows: &rows,
    }
    .print(
        a.json,
        &format!(
            "bench rerank: backend {} precision {}",
            a.backend.name(),
            a.precision.name()
        ),
        &rerank_table(&rows, &s),
    )
}
