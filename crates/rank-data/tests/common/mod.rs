//! Where the tests find the shared data: `$RANKMAMBA_DATA`, else `../shared/data` next to the
//! workspace. A missing folder fails the test with a message (never a silent pass).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("RANKMAMBA_DATA").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    };
    assert!(
        dir.join("README.md").is_file(),
        "data folder missing: {} (set RANKMAMBA_DATA to the folder described in \
         ../shared/data/README.md)",
        dir.display()
    );
    dir
}

pub fn dataset(name: &str) -> rank_data::Dataset {
    rank_data::Dataset::open_in(data_dir(), name)
        .unwrap_or_else(|e| panic!("data set {name} missing: {e}"))
}
