//! `rankmamba bench train` and `rankmamba bench rerank`.

use clap::Args as ClapArgs;

#[derive(ClapArgs)]
pub struct TrainArgs {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: rankmamba::backend::BackendKind,
}

#[derive(ClapArgs)]
pub struct RerankArgs {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: rankmamba::backend::BackendKind,
}

pub fn run_train(_a: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bench train` is not implemented yet")
}

pub fn run_rerank(_a: RerankArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bench rerank` is not implemented yet")
}
