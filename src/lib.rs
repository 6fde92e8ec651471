//! `rankmamba`: Mamba vs transformer cross-encoder rerankers, in Rust on Burn.
//!
//! This facade re-exports the workspace's libraries; the `rankmamba` binary is built on it.
//! See the README for the crate map and `DESIGN.md`-derived docs in `docs/`.

pub use ir_metrics;
pub use mamba_blocks;
pub use mamba_ssm;
pub use rank_data;
pub use rank_heads;
pub use rank_study;
pub use transformer_baselines;

#[cfg(feature = "cli")]
pub mod backend;
#[cfg(feature = "cli")]
pub mod bench;
pub mod fetch;
#[cfg(feature = "cli")]
pub mod guard;
#[cfg(feature = "cli")]
pub mod serve;

// The study's library lives in `rank-study`; its modules keep their paths here.
pub use rank_study::{controlled, models, pretrain, recipes, study};
