//! `mamba-ssm`: The selective-scan core: reference, fast CPU, cubecl kernel, custom backward.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace layout of
//! `DESIGN.md`; it exports nothing. Its content is tracked by issue 3 and 4 (CPU scan, cubecl kernel).
