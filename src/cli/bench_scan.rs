//! `rankmamba bench scan`.

use clap::Args as ClapArgs;

#[derive(ClapArgs)]
pub struct Args {
    /// Backend to measure.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: rankmamba::backend::BackendKind,
}

pub fn run(_a: Args) -> anyhow::Result<()> {
    anyhow::bail!("`bench scan` is not implemented yet")
}
