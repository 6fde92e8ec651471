//! `rank-data`: Readers for TREC DL, MS MARCO and BEIR layouts, query groups, BM25 first stage.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace layout of
//! `DESIGN.md`; it exports nothing. Its content is tracked by issue 7.
