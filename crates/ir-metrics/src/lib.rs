//! `ir-metrics`: TREC qrels and run I/O, measures with trec_eval's exact semantics,
//! significance tests and run fusion. No Burn dependency.
//!
//! ```
//! use ir_metrics::{evaluate, parse_measures, EvalOptions, Qrels, Run};
//! let qrels = Qrels::from_str_named("q1 0 d1 2\nq1 0 d2 0\nq1 0 d3 1\n", "qrels")?;
//! let run = Run::from_str_named("q1 Q0 d2 1 9.0 bm25\nq1 Q0 d1 2 8.0 bm25\n", "run")?;
//! let measures = parse_measures("nDCG@10")?;
//! let e = evaluate(&qrels, &run, &measures, &EvalOptions::default())?;
//! assert!((e.means[0] - 0.4796).abs() < 1e-4); // (2/log2(3)) / (2 + 1/log2(3))
//! # Ok::<(), ir_metrics::Error>(())
//! ```
//!
//! # Semantics (trec_eval 10.0; as pytrec_eval's 9.0.x where the two agree, docs/metrics.md)
//! - Documents are ranked by score descending, ties broken by docid descending (byte order);
//!   the rank column of a run is ignored.
//! - `relevance_level` (`-l`) sets the minimum grade that is relevant for binary measures;
//!   nDCG uses the grades as gains whatever the level.
//! - Negative grades in the qrels mean "pooled but unjudged": neither relevant nor
//!   non-relevant, but judged for `Judged@k`.
//! - Only queries present in both run and qrels are evaluated, unless `complete` (`-c`).
//! - A document listed twice for the same query, in a run or in qrels, is an error (trec_eval
//!   refuses such input with "duplicate docs").

pub mod chance;
pub mod compare;
pub mod compare_report;
pub mod error;
pub mod eval;
pub mod fusion;
pub mod input;
pub mod jg;
pub mod measure;
pub mod prefs;
pub mod qrels;
pub mod report;
pub mod run;
pub mod stats;
pub mod trec_measures;
pub mod zscore;

pub use chance::{ChanceBand, shuffled_baseline};
pub use compare::{CompareMode, CompareOptions, PairResult, compare_scores, compare_with};
pub use compare::{Comparison, SignificanceTest, compare};
pub use compare_report::TableFormat;
pub use error::{Error, Result};
pub use eval::{EvalOptions, Evaluation, evaluate};
pub use jg::{
    JgEvaluation, JgMeasure, QrelsJg, evaluate_jg, parse_jg_measures, trec_eval_jg_output,
};
pub use measure::{Kind, Measure, parse_measures};
pub use measure::{Level, parse_measure_list};
pub use prefs::{
    Prefs, PrefsEvaluation, PrefsMeasure, evaluate_prefs, parse_prefs_measures,
    trec_eval_prefs_output,
};
pub use qrels::{Qrels, QueryQrels};
pub use report::{trec_eval_output, trec_eval_zscore_output};
pub use run::{QueryRun, Run};
pub use stats::Correction;
pub use zscore::ZScores;

use std::path::Path;

/// The UTF-8 byte order mark, skipped at the start of qrels and run files.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Write a file atomically through [`safe_write::write_file`]: an exclusive temporary file in
/// the same folder, synced and renamed over `path`; a symlink, folder or device at `path` is
/// refused. On error the old file (if any) is left untouched.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    safe_write::write_file(path, write).map_err(|e| match e {
        safe_write::WriteError::Io { path, source } => Error::Io { path, source },
        other => Error::Invalid(other.to_string()),
    })
}
