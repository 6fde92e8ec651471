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
