//! Subcommands of the `rankmamba` binary, one module each; `eval`, `compare` and `fuse` live in
//! `main.rs`. Each module has an `Args` (clap) and a `run(args) -> anyhow::Result<()>`.

pub mod bench;
pub mod bench_matmul;
pub mod bench_models;
pub mod bench_scan;
pub mod data;
pub mod pretrain;
pub mod reproduce;
pub mod rerank;
pub mod serve;
pub mod train;

/// A summary line on stderr, unless `--quiet`.
pub(crate) fn say(quiet: bool, line: String) {
    if !quiet {
        eprintln!("{line}");
    }
}
