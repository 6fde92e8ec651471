//! The command-line argument space: the numeric flags of `train`, `eval`, `compare`, `fuse` and
//! `bench scan` given zero, negative, 2^64, 2^63 - 1, 10^400, NaN, infinity, a
//! fraction, an empty string and a word, one flag at a time on an otherwise small valid
//! command. None may panic (exit 101 or a "panicked" message), die by a signal, or run away;
//! a command that fails leaves no output behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VALUES: &[&str] = &[
    "0",
    "-1",
    "18446744073709551616",
    "9223372036854775807",
    "1e400",
    "NaN",
    "inf",
    "0.5",
    "",
    "abc",
];

/// Runs `args` (the output path `out` among them) with a time limit; checks the promises.
fn check(args: &[String], out: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rankmamba"))
        .args(args)
        .env_remove("RANKMAMBA_DATA")
        .env_remove("RANKMAMBA_FETCH_BASE")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("{args:?} ran for more than 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.code().is_some(), "{args:?} died by a signal: {err}");
    assert!(
        status.code() != Some(101) && !err.contains("panicked"),
        "{args:?} panicked: {err}"
    );
    if !status.success() {
        assert!(!err.trim().is_empty(), "{args:?} failed without a word");
        assert!(!out.exists(), "{args:?} failed but wrote {}", out.display());
    }
}

fn with_flag(base: &[&str], flag: &str, value: &str, out: &Path) -> Vec<String> {
    // the flag's value replaces the base's, or is appended
    let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    match a.iter().position(|x| x == flag) {
        Some(i) => a[i + 1] = value.to_string(),
        None => a.extend([flag.to_string(), value.to_string()]),
    }
    a.extend(["-o".to_string(), out.to_str().unwrap().to_string()]);
    a
}

fn sweep(base: &[&str], flags: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    for (i, flag) in flags.iter().enumerate() {
        for (j, v) in VALUES.iter().enumerate() {
            let out = tmp.path().join(format!("out-{i}-{j}"));
            check(&with_flag(base, flag, v, &out), &out);
        }
    }
}

#[test]
fn train_flags() {
    sweep(
        &[
            "train",
            "--model",
            "mamba-tiny",
            "--dataset",
            "scifact",
            "--steps",
            "1",
            "--max-length",
            "48",
            "--queries",
            "2",
            "--group-size",
            "2",
            "--groups-per-step",
            "1",
        ],
        &[
            "--steps",
            "--group-size",
            "--groups-per-step",
            "--negatives-top-k",
            "--lr",
            "--max-length",
            "--queries",
            "--seed",
            "--dropout",
            "--checkpoint-every",
            "--pad-multiple",
            "--log-every",
        ],
    );
}

#[test]
fn evaluation_and_fusion_flags() {
    let d = test_support::data_dir().join("trec-dl-2019-passage");
    let (q, r1, r2) = (
        d.join("qrels.txt"),
        d.join("runs/bm25.trec"),
        d.join("runs/tasb.trec"),
    );
    let (q, r1, r2) = (
        q.to_str().unwrap(),
        r1.to_str().unwrap(),
        r2.to_str().unwrap(),
    );
    // eval and compare print to stdout; their `-o` is not a flag, so they get none
    for (base, flags) in [
        (
            vec!["eval", "--qrels", q, "--run", r1],
            vec!["-l", "-M", "-m"],
        ),
        (
            vec!["compare", "--qrels", q, "--run", r1, r2],
            vec!["--samples", "--seed", "--alpha", "-l", "-M"],
        ),
    ] {
        for flag in flags {
            for v in VALUES {
                let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                a.extend([flag.to_string(), v.to_string()]);
                check(&a, Path::new("/nonexistent/never-written"));
            }
        }
    }
    sweep(&["fuse", "--run", r1, r2, "--method", "rrf"], &["--k"]);
}

#[test]
fn bench_scan_sizes() {
    let base = [
        "bench",
        "scan",
        "--tokens",
        "256",
        "--lens",
        "64",
        "--d-model",
        "16",
        "--state",
        "4",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--parts",
        "scan",
        "--fwd-only",
    ];
    for flag in ["--lens", "--tokens"] {
        for v in VALUES {
            let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            let i = a.iter().position(|x| x == flag).unwrap();
            a[i + 1] = v.to_string();
            check(&a, Path::new("/nonexistent/never-written"));
        }
    }
}
