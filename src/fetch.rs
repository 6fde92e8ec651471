//! `rankmamba data fetch`: [`rank_data::fetch`] (the registry, the download engine, the TREC DL
//! conversion), re-exported for the CLI and for users of this crate.

pub use rank_data::fetch::*;
