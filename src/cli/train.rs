//! `rankmamba train`.

use clap::Args as ClapArgs;

#[derive(ClapArgs)]
pub struct Args {
    /// Backend to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: rankmamba::backend::BackendKind,
}

pub fn run(_a: Args) -> anyhow::Result<()> {
    anyhow::bail!("`train` is not implemented yet")
}
