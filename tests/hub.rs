//! Hub ids wherever a model is named (`train`, `rerank`, `serve`), fetched through hf-hub from
//! a loopback server that speaks the Hub's file protocol (`/{repo}/resolve/{revision}/{file}`,
//! range requests, `etag` and `x-repo-commit` headers) for one tiny repository: no machine here
//! reaches the real Hub.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use common::{s, train_tiny};

#[test]
fn hub_ids_work_for_train_rerank_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("trained");
    train_tiny(&model, "1", "48", &[]);
    let mut files = HashMap::new();
    for f in [
        "rankmamba.json",
        "config.json",
        "tokenizer.json",
        "cross_encoder.mpk",
    ] {
        files.insert(
            format!("rankmamba/tiny/{f}"),
            std::fs::read(model.join(f)).unwrap(),
        );
    }
    let hub = test_support::LoopbackHub::start(files);
    let endpoint = hub.url.clone();
    let hf_home = tmp.path().join("hf");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rankmamba"))
            .args(args)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HOME", &hf_home)
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RANKMAMBA_DATA")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // rerank with the Hub copy equals rerank with the directory
    let (a, b) = (tmp.path().join("dir.trec"), tmp.path().join("hub.trec"));
    let common = [
        "--dataset",
        "dl20",
        "--depth",
        "5",
        "--queries",
        "2",
        "--quiet",
    ];
    let (ok, err) = run(&[
        &["rerank", "--model", s(&model), "-o", s(&a)][..],
        &common[..],
    ]
    .concat());
    assert!(ok, "{err}");
    let (ok, err) = run(&[
        &["rerank", "--model", "rankmamba/tiny", "-o", s(&b)][..],
        &common[..],
    ]
    .concat());
    assert!(ok, "{err}");
    let strip_tag = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_tag(&a), strip_tag(&b), "same model, same scores");
    assert!(
        hf_home.join("hub/models--rankmamba--tiny").is_dir(),
        "kept in hf-hub's cache"
    );
    // train continues the Hub model (a trained directory) into a new folder
    let cont = tmp.path().join("continued");
    let (ok, err) = run(&[
        "train",
        "--model",
        "rankmamba/tiny",
        "--dataset",
        "dl19",
        "--steps",
        "1",
        "--max-length",
        "48",
        "--quiet",
        "--out",
        s(&cont),
    ]);
    assert!(ok, "{err}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cont.join("rankmamba.json")).unwrap())
            .unwrap();
    assert!(
        card["source"].as_str().unwrap().contains("rankmamba/tiny"),
        "{card}"
    );
    // a repository the hub does not have: a clear error naming it
    let (ok, err) = run(&[
        "rerank",
        "--model",
        "rankmamba/none",
        "--dataset",
        "dl20",
        "-o",
        s(&a),
    ]);
    assert!(
        !ok && err.contains("rankmamba/none") && !err.contains("panicked"),
        "{err}"
    );
    // the four files came from the loopback hub, once each (then from hf-hub's cache)
    assert_eq!(hub.stop(), 8, "a metadata and a download request per file");
    // offline, from the cache the runs above filled: serve starts and answers
    let mut child = Command::new(env!("CARGO_BIN_EXE_rankmamba"))
        .args(["serve", "--model", "rankmamba/tiny", "--port", "0"])
        .env("HF_HOME", &hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let resp = ureq::get(&format!("{url}/health")).call();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(resp.unwrap().status(), 200);
}
