//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The data folder: `$RANKMAMBA_DATA`, else `../shared/data` next to the workspace (the first
/// levels of the users' lookup order, `rank_data::locate`; this crate sits below rank-data).
/// Tests that need it fail (not skip) when it is missing, so that CI cannot pass silently.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("RANKMAMBA_DATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.join("trec-dl-2019-passage/qrels.txt").is_file(),
        "data folder {} not found: put the shared data there or set RANKMAMBA_DATA to it",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub const SETS: [(&str, &str); 2] = [
    ("dl19", "trec-dl-2019-passage"),
    ("dl20", "trec-dl-2020-passage"),
];
pub const RUNS: [&str; 5] = ["bm25", "bm25-rm3", "tasb", "splade-pp-ed", "openai-ada2"];
