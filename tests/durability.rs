//! Training killed with SIGKILL at random points, twenty times, then run to the end: the weights
//! are bitwise those of an uninterrupted run, `train.jsonl` holds each step once with the
//! uninterrupted run's losses, and no temporary file or unfinished checkpoint survives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 20;

fn train(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rankmamba"));
    c.args([
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "scifact",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        &STEPS.to_string(),
        "--max-length",
        "48",
        "--queries",
        "16",
        "--group-size",
        "2",
        "--groups-per-step",
        "2",
        "--checkpoint-every",
        "1",
        "--log-every",
        "1",
        "--seed",
        "5",
    ])
    .env_remove("RANKMAMBA_DATA")
    .env_remove("RANKMAMBA_FETCH_BASE")
    .env_remove("RUST_BACKTRACE")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

fn run_to_end(out: &Path) {
    let o = train(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `(step, loss, grad_norm, lr)` of every training line.
fn log(dir: &Path) -> Vec<(u64, f64, f64, f64)> {
    std::fs::read_to_string(dir.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
                v["lr"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// `record` with the value of every `"id"` key (a MessagePack fixstr of 13 bytes, Burn's
/// `ParamId`) replaced by `#`s, and how many there were.
fn without_param_ids(mut record: Vec<u8>) -> (Vec<u8>, usize) {
    let key = b"\xa2id\xad";
    let (mut i, mut n) = (0, 0);
    while i + key.len() + 13 <= record.len() {
        if &record[i..i + key.len()] == key {
            let s = i + key.len();
            record[s..s + 13].fill(b'#');
            n += 1;
            i = s + 13;
        } else {
            i += 1;
        }
    }
    (record, n)
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

#[test]
fn training_killed_twenty_times_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let t0 = Instant::now();
    run_to_end(&a);
    let whole = t0.elapsed();

    // xorshift: the kill points. Odd rounds kill during start-up and data loading, even ones
    // once this run has written a checkpoint of its own, within the next step (inside a
    // step, a checkpoint write or the final writes).
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let latest = b.join("checkpoints/latest");
    // one step's time (training and its checkpoint), from the uninterrupted run's own log: a
    // kill lands inside the step after a checkpoint, so a round advances at most about a step
    // and twenty rounds cannot finish the run
    let elapsed: Vec<f64> = std::fs::read_to_string(a.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["elapsed_s"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let step_time = Duration::from_secs_f64((elapsed[STEPS - 1] - elapsed[0]) / (STEPS - 1) as f64);
    let (mut killed, mut finished) = (0, 0);
    for round in 0..20 {
        let before = std::fs::read_to_string(&latest).unwrap_or_default();
        let mut child = train(&b).spawn().unwrap();
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_secs_f64(1.5 * uniform()));
        } else {
            let t = Instant::now();
            while std::fs::read_to_string(&latest).unwrap_or_default() == before
                && child.try_wait().unwrap().is_none()
                && t.elapsed() < whole
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(step_time.mul_f64(uniform()));
        }
        match child.try_wait().unwrap() {
            Some(_) => finished += 1,
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed += 1;
            }
        }
    }
    assert!(killed >= 15, "only {killed} of 20 runs were killed");
    run_to_end(&b);
    println!("killed {killed}, finished {finished}, an uninterrupted run took {whole:?}");

    // the weights: bitwise. A Burn record also holds each parameter's id, random per process
    // (13 characters after a MessagePack `"id"` key): those are masked, every other byte (the
    // tensors, shapes and names) must match.
    let weights: Vec<PathBuf> = files(&a)
        .into_iter()
        .filter(|p| {
            p.parent() == Some(Path::new(""))
                && p.extension()
                    .is_some_and(|e| e == "mpk" || e == "safetensors")
        })
        .collect();
    assert!(!weights.is_empty(), "{:?}", files(&a));
    for w in &weights {
        let (ra, ids) = without_param_ids(std::fs::read(a.join(w)).unwrap());
        let (rb, _) = without_param_ids(std::fs::read(b.join(w)).unwrap());
        assert!(ids > 10, "{} holds {ids} parameter ids", w.display());
        assert!(
            ra == rb,
            "{} differs from the uninterrupted run's",
            w.display()
        );
    }
    // the log: each step once, in order, with the uninterrupted run's figures
    let (la, lb) = (log(&a), log(&b));
    let steps: Vec<u64> = lb.iter().map(|l| l.0).collect();
    assert_eq!(steps, (1..=STEPS as u64).collect::<Vec<_>>());
    assert_eq!(la, lb);
    // nothing temporary is left
    for p in files(&b) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !(name.starts_with(".tmp-") || safe_write::is_temporary(&name)),
            "left behind: {}",
            p.display()
        );
    }
}
