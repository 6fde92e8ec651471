//! `mamba-blocks`: Mamba mixer, blocks and models with HF checkpoint loading.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace layout of
//! `DESIGN.md`; it exports nothing. Its content is tracked by issue 5.
