//! `rankmamba data fetch` against a loopback HTTP server (127.0.0.1, random port) serving a local
//! copy of the data folder (found by the data lookup order: `../shared/data` here). No test reaches the
//! internet: every URL points at the loopback server or at a local folder.

mod common;
use common::rankmamba_env;

use rankmamba::fetch::{self, Dirs, FetchError, Options, Origin};
use rankmamba::rank_data::{Dataset, Layout};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn data() -> PathBuf {
    test_support::data_dir()
}

/// One request the server answered.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    range: Option<String>,
    status: u16,
    body_bytes: u64,
}

/// A small HTTP/1.1 file server on 127.0.0.1: GET only, `Range: bytes=N-` honoured (206),
/// 404 for missing files, one request per connection.
struct Server {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        Server::start_with(root, false)
    }

    /// `ignore_range`: answer 200 with the whole file to a `Range` request, as some servers do.
    fn start_with(root: &Path, ignore_range: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (root, log) = (root.to_path_buf(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, log) = (root.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &log, ignore_range);
                });
            }
        });
        Server { base, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.hits.lock().unwrap().clear();
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    log: &Mutex<Vec<Hit>>,
    ignore_range: bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let rel = path.trim_start_matches('/');
    let file = root.join(rel);
    let mut out = stream;
    let body = if rel.split('/').any(|c| c == "..") || !file.is_file() {
        None
    } else {
        Some(std::fs::read(&file)?)
    };
    let (status, head, payload): (u16, String, Vec<u8>) = match body {
        None => (404, "Not Found".into(), b"not found".to_vec()),
        Some(bytes) => {
            let len = bytes.len() as u64;
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|_| !ignore_range);
            match start {
                Some(s) if s >= len => (416, "Range Not Satisfiable".into(), Vec::new()),
                Some(s) => (
                    206,
                    format!(
                        "Partial Content\r\nContent-Range: bytes {s}-{}/{len}",
                        len - 1
                    ),
                    bytes[s as usize..].to_vec(),
                ),
                None => (200, "OK".into(), bytes),
            }
        }
    };
    log.lock().unwrap().push(Hit {
        path: path.clone(),
        range,
        status,
        body_bytes: payload.len() as u64,
    });
    write!(
        out,
        "HTTP/1.1 {status} {head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    out.write_all(&payload)?;
    out.flush()
}

fn opts(origin: Origin, cache: &Path) -> Options {
    Options {
        origin,
        dirs: Dirs::under(cache),
        progress: false,
    }
}

fn sha(path: &Path) -> String {
    fetch::sha256_file(path).unwrap()
}

#[test]
fn mirror_fetch_lays_out_what_dataset_open_reads() {
    let server = Server::start(&data());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Mirror(server.base.clone()), cache.path());
    for name in ["dl19", "scifact", "msmarco-sample", "gpt-neox-20b"] {
        let art = fetch::find(name).unwrap();
        let r = fetch::fetch(art, &o).unwrap();
        assert_eq!(r.written.len(), art.files.len(), "{name}");
        assert!(art.is_complete(&o.dirs), "{name}");
        for f in &art.files {
            assert_eq!(
                sha(&r.target.join(f.path)),
                sha(&data().join(art.tree_path).join(f.path))
            );
        }
        assert!(!art.staging(&o.dirs).exists(), "staging left behind");
    }
    let dl19 = Dataset::open_in(cache.path(), "dl19").unwrap();
    assert_eq!(dl19.layout(), Layout::TrecDl);
    assert_eq!(dl19.queries().unwrap().len(), 43);
    assert_eq!(
        dl19.run_names().unwrap(),
        ["bm25", "bm25-rm3", "openai-ada2", "splade-pp-ed", "tasb"]
    );
    dl19.run("bm25").unwrap();
    dl19.qrels("test").unwrap();
    let scifact = Dataset::open_in(cache.path(), "scifact").unwrap();
    assert_eq!(scifact.layout(), Layout::Beir);
    assert_eq!(scifact.splits().unwrap(), ["test", "train"]);
    let sample = Dataset::open_in(cache.path(), "msmarco-sample").unwrap();
    assert_eq!(sample.training_examples().unwrap().len(), 10);
    assert!(
        cache
            .path()
            .join("tokenizers/gpt-neox-20b/tokenizer.json")
            .is_file()
    );

    // A second fetch finds everything in place and asks the server nothing.
    server.clear();
    let r = fetch::fetch(fetch::find("dl19").unwrap(), &o).unwrap();
    assert!(r.written.is_empty() && r.present.len() == 8);
    assert!(server.hits().is_empty(), "{:?}", server.hits());
}

#[test]
fn resumes_a_partial_download_with_a_range_request() {
    let server = Server::start(&data());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Mirror(server.base.clone()), cache.path());
    let art = fetch::find("trec-dl-2019-passage").unwrap();
    let full = std::fs::read(data().join("trec-dl-2019-passage/collection.tsv")).unwrap();
    let have = 1_000_000usize;
    let part = art.part_file(&o.dirs, "collection.tsv");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, &full[..have]).unwrap();

    fetch::fetch(art, &o).unwrap();
    let coll = cache.path().join("trec-dl-2019-passage/collection.tsv");
    assert_eq!(std::fs::read(&coll).unwrap(), full);
    assert!(!part.exists());
    let hits: Vec<Hit> = server
        .hits()
        .into_iter()
        .filter(|h| h.path.ends_with("/collection.tsv"))
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(hits[0].status, 206);
    assert_eq!(hits[0].body_bytes, (full.len() - have) as u64);
    // The other files were fetched whole, without a range.
    assert!(
        server
            .hits()
            .iter()
            .filter(|h| !h.path.ends_with("/collection.tsv"))
            .all(|h| h.range.is_none() && h.status == 200)
    );
}

#[test]
fn a_server_that_ignores_range_restarts_the_file() {
    let server = Server::start_with(&data(), true);
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Mirror(server.base.clone()), cache.path());
    let art = fetch::find("msmarco-train-sample").unwrap();
    let part = art.part_file(&o.dirs, "train.jsonl");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, b"stale bytes that are not the file").unwrap();
    fetch::fetch(art, &o).unwrap();
    assert!(art.is_complete(&o.dirs));
    let hits = server.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].range.as_deref(), Some("bytes=33-"));
    assert_eq!(
        (hits[0].status, hits[0].body_bytes),
        (200, art.files[0].size)
    );
}

#[test]
fn a_bad_partial_file_fails_once_then_a_rerun_succeeds() {
    let server = Server::start(&data());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Mirror(server.base.clone()), cache.path());
    let art = fetch::find("msmarco-train-sample").unwrap();
    let part = art.part_file(&o.dirs, "train.jsonl");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, vec![b'x'; 5000]).unwrap();
    let err = fetch::fetch(art, &o).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert!(!part.exists() && !art.target(&o.dirs).exists());
    fetch::fetch(art, &o).unwrap();
    assert!(art.is_complete(&o.dirs));
    let ranges: Vec<Option<String>> = server.hits().into_iter().map(|h| h.range).collect();
    assert_eq!(ranges, [Some("bytes=5000-".to_string()), None]);
}

#[test]
fn a_corrupted_file_is_a_sha256_error_and_nothing_is_left_in_place() {
    let mirror = tempfile::tempdir().unwrap();
    let src = data().join("msmarco-train-sample/train.jsonl");
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[100] ^= 0x20; // same size, one flipped bit
    std::fs::create_dir_all(mirror.path().join("msmarco-train-sample")).unwrap();
    std::fs::write(
        mirror.path().join("msmarco-train-sample/train.jsonl"),
        &bytes,
    )
    .unwrap();
    let server = Server::start(mirror.path());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Mirror(server.base.clone()), cache.path());
    let art = fetch::find("msmarco-train-sample").unwrap();
    let err = fetch::fetch(art, &o).unwrap_err();
    let msg = err.to_string();
    match &err {
        FetchError::Checksum {
            what,
            expected,
            found,
            ..
        } => {
            assert_eq!(expected, art.files[0].sha256);
            assert_ne!(found, expected);
            assert!(what.contains("/msmarco-train-sample/train.jsonl"), "{what}");
        }
        e => panic!("expected a sha256 error, got {e:?}"),
    }
    assert!(
        msg.contains("sha256 mismatch")
            && msg.contains(art.files[0].sha256)
            && msg.contains("removed the bad local copy")
            && !msg.contains("the file was deleted"),
        "{msg}"
    );
    assert!(!art.target(&o.dirs).exists(), "target created");
    assert!(
        !art.part_file(&o.dirs, "train.jsonl").exists(),
        ".part kept"
    );
    assert!(!art.staging(&o.dirs).exists(), "empty staging folder kept");
    assert!(Dataset::open_in(cache.path(), "msmarco-sample").is_err());
}

#[test]
fn a_missing_file_is_a_clear_http_error() {
    let empty = tempfile::tempdir().unwrap();
    let server = Server::start(empty.path());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Mirror(server.base.clone()), cache.path());
    let art = fetch::find("gpt-neox-20b").unwrap();
    let err = fetch::fetch(art, &o).unwrap_err();
    let url = format!("{}/tokenizers/gpt-neox-20b/tokenizer.json", server.base);
    match &err {
        FetchError::Http { url: u, status, .. } => {
            assert_eq!(*status, 404);
            assert_eq!(u, &url);
        }
        e => panic!("expected an HTTP error, got {e:?}"),
    }
    assert_eq!(err.to_string(), format!("GET {url}: HTTP 404 Not Found"));
    assert!(!art.target(&o.dirs).exists());

    // Nothing listening: a transport error naming the URL.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = opts(
        Origin::Mirror(format!("http://127.0.0.1:{port}")),
        cache.path(),
    );
    let msg = fetch::fetch(art, &o).unwrap_err().to_string();
    let url = format!("http://127.0.0.1:{port}/tokenizers/gpt-neox-20b/tokenizer.json");
    assert!(msg.starts_with(&format!("GET {url}: ")), "{msg}");
    assert_eq!(msg.matches(&url).count(), 1, "{msg}");
}

#[test]
fn from_a_local_folder_copies_and_verifies() {
    let cache = tempfile::tempdir().unwrap();
    let o = opts(Origin::Local(data()), cache.path());
    for name in ["dl20", "gpt-neox-20b"] {
        let art = fetch::find(name).unwrap();
        let r = fetch::fetch(art, &o).unwrap();
        assert_eq!(r.written.len(), art.files.len());
        assert!(art.is_complete(&o.dirs));
    }
    let dl20 = Dataset::open_in(cache.path(), "dl20").unwrap();
    assert_eq!(dl20.queries().unwrap().len(), 54);
    assert_eq!(dl20.run("tasb").unwrap().len(), 54);

    // A local copy that differs from the pinned file is refused.
    let bad = tempfile::tempdir().unwrap();
    let dir = bad.path().join("tokenizers/gpt-neox-20b");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    let o = opts(Origin::Local(bad.path().to_path_buf()), cache2.path());
    let err = fetch::fetch(fetch::find("gpt-neox-20b").unwrap(), &o).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Size {
                expected: 2467981,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(!cache2.path().join("tokenizers/gpt-neox-20b").exists());
}

/// The upstream path: GitHub files fetched as is (a `--upstream-base` tree holding
/// `<host>/<path>`), and SciFact unpacked from a zip laid out as BEIR's `scifact.zip`.
#[test]
fn upstream_sources_through_a_local_base() {
    let up = tempfile::tempdir().unwrap();
    let d = data();
    for art in [
        fetch::find("msmarco-train-sample").unwrap(),
        fetch::find("gpt-neox-20b").unwrap(),
    ] {
        let url = art.sources[0].url.strip_prefix("https://").unwrap();
        let dst = up.path().join(url);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(d.join(art.tree_path).join(art.files[0].path), dst).unwrap();
    }
    let scifact = fetch::find("scifact").unwrap();
    let zip_path = up
        .path()
        .join(scifact.sources[0].url.strip_prefix("https://").unwrap());
    std::fs::create_dir_all(zip_path.parent().unwrap()).unwrap();
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let zopts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for f in &scifact.files {
        z.start_file(format!("scifact/{}", f.path), zopts).unwrap();
        let mut bytes = Vec::new();
        std::fs::File::open(d.join("scifact").join(f.path))
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        z.write_all(&bytes).unwrap();
    }
    z.finish().unwrap();

    let server = Server::start(up.path());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(
        Origin::Upstream {
            base: Some(server.base.clone()),
        },
        cache.path(),
    );
    for name in ["msmarco-train-sample", "gpt-neox-20b", "scifact"] {
        let art = fetch::find(name).unwrap();
        fetch::fetch(art, &o).unwrap();
        assert!(art.is_complete(&o.dirs), "{name}");
        assert!(!art.staging(&o.dirs).exists());
    }
    let hits = server.hits();
    assert!(
        hits.iter()
            .any(|h| h.path == "/raw.githubusercontent.com/BlinkDL/RWKV-LM/68c486ad1052fc192103e6fba36d1162d314f177/RWKV-v4/20B_tokenizer.json"),
        "{hits:?}"
    );
    let s = Dataset::open_in(cache.path(), "scifact").unwrap();
    assert_eq!(s.qrels("test").unwrap().len(), 300);
}

#[test]
fn cli_fetch_list_and_errors() {
    let server = Server::start(&data());
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path().to_str().unwrap();
    let (ok, out, err) = rankmamba_env(
        &[
            "data",
            "fetch",
            "dl19",
            "msmarco-sample",
            "--mirror",
            &server.base,
            "--cache",
            c,
            "--quiet",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("trec-dl-2019-passage: 8 file(s) written"),
        "{out}"
    );
    assert!(Dataset::open_in(c, "dl19").unwrap().run("bm25").is_ok());
    assert!(Dataset::open_in(c, "msmarco-train-sample").is_ok());

    let (ok, out, _) = rankmamba_env(
        &[
            "data",
            "fetch",
            "dl19",
            "--mirror",
            &server.base,
            "--cache",
            c,
        ],
        &[],
    );
    assert!(
        ok && out.contains("trec-dl-2019-passage: up to date"),
        "{out}"
    );

    let (ok, out, _) = rankmamba_env(&["data", "list", "--cache", c], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("trec-dl-2019-passage (also: dl19)"), "{out}");
    assert!(out.contains("all-MiniLM-L6-v2"), "{out}");
    assert!(
        out.contains(&format!(
            "in {}",
            Path::new(c).join("trec-dl-2019-passage").display()
        )),
        "{out}"
    );

    // --from, into the fetch folder ($RANKMAMBA_DATA here), where Dataset::open looks.
    let data_dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let from = data();
    let (ok, out, err) = rankmamba_env(
        &[
            "data",
            "fetch",
            "scifact",
            "--from",
            from.to_str().unwrap(),
            "-q",
        ],
        &[("RANKMAMBA_DATA", data_dir.path()), ("HOME", home.path())],
    );
    assert!(ok, "{out}{err}");
    assert!(Dataset::open_in(data_dir.path(), "scifact").is_ok());

    // $RANKMAMBA_FETCH_BASE as the mirror.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rankmamba"));
    let cache2 = tempfile::tempdir().unwrap();
    let st = cmd
        .args(["data", "fetch", "gpt-neox-20b", "-q", "--cache"])
        .arg(cache2.path())
        .env("RANKMAMBA_FETCH_BASE", &server.base)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(
        cache2
            .path()
            .join("tokenizers/gpt-neox-20b/tokenizer.json")
            .is_file()
    );

    let (ok, _, err) = rankmamba_env(&["data", "fetch", "nope", "--cache", c], &[]);
    assert!(!ok && err.contains("unknown artefact \"nope\""), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let s404 = Server::start(empty.path());
    let (ok, _, err) = rankmamba_env(
        &[
            "data",
            "fetch",
            "gpt-neox-20b",
            "--mirror",
            &s404.base,
            "--cache",
            c,
            "-q",
        ],
        &[],
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "GET {}/tokenizers/gpt-neox-20b/tokenizer.json: HTTP 404",
            s404.base
        )),
        "{err}"
    );
}
