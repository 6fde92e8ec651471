//! Where the tests find the shared data: by the users' lookup order (`rank_data::locate`:
//! `$RANKMAMBA_DATA`, the repository's `../shared/data`, the cache). A missing folder fails the
//! test with the lookup's message (never a silent pass).
#![allow(dead_code)]

use rank_data::Locations;
use rank_data::locate::Kind;
use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    Locations::discover()
        .find(Kind::Dataset, "trec-dl-2019-passage", |d| {
            d.join("qrels.txt").is_file()
        })
        .unwrap_or_else(|e| panic!("the shared data is missing: {e}"))
        .parent()
        .expect("a data set has a parent folder")
        .to_path_buf()
}

pub fn dataset(name: &str) -> rank_data::Dataset {
    rank_data::Dataset::open_in(data_dir(), name)
        .unwrap_or_else(|e| panic!("data set {name} missing: {e}"))
}
