//! `rankmamba bench`: throughput tables.

use clap::Subcommand;

/// What to measure.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Selective scan vs attention core at the same token count (table + SVG plot).
    Scan(super::bench_scan::Args),
    /// Cross-encoder training steps (forward + backward + optimizer), tokens/s.
    Train(super::bench_models::TrainArgs),
    /// Reranking inference: documents/s and latency per query.
    Rerank(super::bench_models::RerankArgs),
    /// The projections' products of a training step (forward, input and weight gradients),
    /// per matmul kernel: ms, TFLOP/s and the error against a float64 product.
    Matmul(super::bench_matmul::Args),
    /// The reranking server under load on loopback: documents/s and p50 / p99 latency at
    /// several numbers of concurrent clients.
    Serve(super::serve::BenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Scan(a) => super::bench_scan::run(a),
        BenchCommand::Train(a) => super::bench_models::run_train(a),
        BenchCommand::Rerank(a) => super::bench_models::run_rerank(a),
        BenchCommand::Matmul(a) => super::bench_matmul::run_cmd(a),
        BenchCommand::Serve(a) => super::serve::bench(a),
    }
}
