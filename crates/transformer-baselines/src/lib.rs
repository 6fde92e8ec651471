//! `transformer-baselines`: BERT-style encoders and GPT-NeoX decoders as ranking backbones.
//!
//! **Not implemented yet.** This crate is a placeholder in the workspace layout of
//! `DESIGN.md`; it exports nothing. Its content is tracked by issue 6.
