//! Hub ids wherever a model is named (`train`, `rerank`, `serve`), fetched through hf-hub from
//! a loopback server that speaks the Hub's file protocol (`/{repo}/resolve/{revision}/{file}`,
//! range requests, `etag` and `x-repo-commit` headers) for one tiny repository: no machine here
//! reaches the real Hub.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::rankmamba;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Serves `files` (path under the endpoint -> bytes) until the process ends; counts requests.
fn hub(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(r) = lower.strip_prefix("range: bytes=") {
                    let (a, b) = r.trim().split_once('-').unwrap_or(("0", ""));
                    range = Some((a.parse().unwrap_or(0), b.parse().ok()));
                }
            }
            *counter.lock().unwrap() += 1;
            let response = match files.get(&path) {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
                Some(bytes) => {
                    // `bytes=0-0` is hf-hub's metadata probe, `bytes=N-` the download
                    let (start, end) = match range {
                        Some((a, Some(b))) => (a.min(bytes.len()), (b + 1).min(bytes.len())),
                        Some((a, None)) => (a.min(bytes.len()), bytes.len()),
                        None => (0, bytes.len()),
                    };
                    let body = &bytes[start..end.max(start)];
                    let etag = format!("{:016x}", fxhash(bytes));
                    let mut head = format!(
                        "HTTP/1.1 206 Partial Content\r\netag: \"{etag}\"\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\ncontent-range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        start + body.len().saturating_sub(1),
                        bytes.len(),
                        body.len()
                    )
                    .into_bytes();
                    head.extend_from_slice(body);
                    head
                }
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        }
    });
    (url, hits)
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn hub_ids_work_for_train_rerank_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("trained");
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "dl19",
        "--steps",
        "1",
        "--max-length",
        "48",
        "--out",
        s(&model),
    ]);
    assert!(ok, "{err}");
    let mut files = HashMap::new();
    for f in [
        "rankmamba.json",
        "config.json",
        "tokenizer.json",
        "cross_encoder.mpk",
    ] {
        files.insert(
            format!("/rankmamba/tiny/resolve/main/{f}"),
            std::fs::read(model.join(f)).unwrap(),
        );
    }
    let (endpoint, hits) = hub(files);
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
        *hits.lock().unwrap() >= 4,
        "the files came from the loopback hub"
    );
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
}
