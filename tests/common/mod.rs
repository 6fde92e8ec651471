//! Running the `rankmamba` binary from the integration tests, in a clean environment: the
//! variables that would redirect it (a data folder, a fetch mirror) or change its error output
//! (backtraces) are removed unless a test sets them.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// `(success, stdout, stderr)` of `rankmamba args`.
pub fn rankmamba(args: &[&str]) -> (bool, String, String) {
    rankmamba_env(args, &[])
}

/// [`rankmamba`] with environment variables set.
pub fn rankmamba_env(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rankmamba"));
    cmd.args(args)
        .env_remove("RANKMAMBA_DATA")
        .env_remove("RANKMAMBA_FETCH_BASE")
        .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run rankmamba");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `rankmamba train --model mamba-tiny --dataset dl19 --steps STEPS --max-length LEN` into
/// `out`, plus `extra` flags; panics with the error output when it fails.
pub fn train_tiny(out: &Path, steps: &str, max_length: &str, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "dl19",
        "--steps",
        steps,
        "--max-length",
        max_length,
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let (ok, _, err) = rankmamba(&args);
    assert!(ok, "{err}");
}
