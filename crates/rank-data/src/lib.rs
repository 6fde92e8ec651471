//! `rank-data`: readers for the TREC DL, BEIR and MS MARCO layouts, a BM25 first stage for
//! collections that ship no run, and seeded training groups with hard negatives.
//!
//! Data sets, tokenizers and models are found by one lookup order ([`locate`]); with the
//! `fetch` feature, the `fetch` module downloads them from their public sources, verified.
//!
//! Features (none on by default): `bm25` (the BM25 first stage, on tantivy), `fetch`
//! (downloads: networking), `text` (`.txt.xz` pretraining corpora: liblzma, a C build).
//!
//! Knows nothing of model architectures or weights. Qrels and runs are `ir-metrics`' types
//! (re-exported here); every reader streams its file line by line and reports bad input as an
//! [`Error`] naming the file, the line and what was expected.
//!
//! ```no_run
//! # #[cfg(feature = "bm25")] {
//! use rank_data::{Bm25Index, Dataset, GroupConfig, GroupSampler};
//! let scifact = Dataset::open("scifact")?; // found as `locate` says, or a path ("./my-data")
//! let qrels = scifact.qrels("train")?;
//! let index = Bm25Index::build(scifact.documents()?)?;
//! let mut queries = scifact.queries()?;
//! queries.retain(|q| qrels.get(q).is_some());
//! let run = index.run(&queries.to_vec(), 100, "bm25")?;
//! let sampler = GroupSampler::from_run(queries.ids(), &qrels, &run, GroupConfig::default())?;
//! let corpus = scifact.corpus(|_| true)?;
//! for group in sampler.groups(0) {
//!     let _texts = group.texts(&queries, &corpus)?; // docs[0] is the positive
//! }
//! # }
//! # Ok::<(), rank_data::Error>(())
//! ```

pub mod beir;
#[cfg(feature = "bm25")]
pub mod bm25;
pub mod dataset;
pub mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod groups;
mod jsonl;
mod lines;
pub mod locate;
pub mod msmarco;
#[cfg(feature = "text")]
pub mod text;
pub mod trec;
pub mod types;

#[cfg(feature = "bm25")]
pub use bm25::Bm25Index;
pub use dataset::{Dataset, DocumentReader, Layout};
pub use error::{Error, Result};
pub use groups::{
    Group, GroupConfig, GroupSampler, GroupTexts, Position, SkipReason, Skipped, TooFewNegatives,
    TrainingData,
};
pub use ir_metrics::{Qrels, QueryQrels, QueryRun, Run};
pub use locate::{DATA_ENV, Locations, set_data_flag};
pub use msmarco::{TrainingExample, Triple};
pub use types::{Corpus, Document, Queries, Query};
