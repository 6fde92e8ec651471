//! `rank-heads`: Cross-encoder heads, pooling, losses, reranker and training loop.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace layout of
//! `DESIGN.md`; it exports nothing. Its content is tracked by issue 7.
