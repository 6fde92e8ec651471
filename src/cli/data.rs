//! `rankmamba data`: datasets and models in the cache.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download a public dataset or model into the cache (resumable, sha256-checked).
    Fetch {
        /// Dataset or model name.
        name: String,
    },
}

pub fn run(_cmd: DataCommand) -> anyhow::Result<()> {
    anyhow::bail!("`data fetch` is not implemented yet")
}
