//! `rankmamba serve` over real HTTP on loopback: scores equal `rankmamba rerank`'s for the same
//! pairs, concurrent requests get the same answers, bad requests get TEI's error shapes and
//! statuses, a full server answers 429, and SIGTERM lets an in-flight request finish.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rankmamba, s, train_tiny};
use rankmamba::ir_metrics::Run;
use serde_json::{Value, json};

/// A running `rankmamba serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        Self::start_env(s(model), extra, &[])
    }

    fn start_env(model: &str, extra: &[&str], env: &[(&str, &Path)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rankmamba"))
            .args(["serve", "--model", model, "--port", "0"])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rankmamba serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line of serve: {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// Status and JSON body of a POST to /rerank.
    fn rerank(&self, body: &str) -> (u16, Value) {
        post(&format!("{}/rerank", self.url), body, "application/json")
    }

    fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{path}", self.url)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            Err(e) => panic!("{path}: {e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(url: &str, body: &str, content_type: &str) -> (u16, Value) {
    let r = ureq::post(url)
        .set("Content-Type", content_type)
        .send_string(body);
    let (code, text) = match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    };
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({code}): {text}"));
    (code, v)
}

/// The error body TEI sends: `{"error": "...", "error_type": kind}`.
fn assert_error(got: (u16, Value), code: u16, kind: &str, says: &str) {
    let (c, v) = got;
    assert_eq!(c, code, "{v}");
    assert_eq!(v["error_type"], kind, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(says), "{msg:?} should say {says:?}");
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            t.elapsed() < within,
            "the server did not stop within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Model directory trained for two steps (max length 64), and per query its text and its top
/// documents' texts with the scores `rerank` gave them.
struct Fixture {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    queries: Vec<(String, Vec<(String, f64)>)>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mamba");
    train_tiny(&model, "2", "64", &[]);
    let out = tmp.path().join("reranked.trec");
    let (ok, _, err) = rankmamba(&[
        "rerank",
        "--quiet",
        "--model",
        s(&model),
        "--dataset",
        "dl20",
        "--depth",
        "6",
        "--queries",
        "2",
        "-o",
        s(&out),
    ]);
    assert!(ok, "{err}");
    assert_eq!(err, "", "--quiet prints nothing on stderr");
    let run = Run::from_path(&out).unwrap();
    let c = rankmamba::study::Collection::load("dl20", rankmamba::study::Side::Test, Some(2), 6)
        .unwrap();
    let qtext = c.query_texts();
    let bm25 = &c.first_stage;
    let mut queries = Vec::new();
    for q in bm25.queries() {
        // the six BM25 candidates `rerank` scored, with the scores it gave
        let reranked = run.get(q.qid()).unwrap();
        let docs: Vec<(String, f64)> = q
            .ranked()
            .iter()
            .take(6)
            .map(|(d, _)| {
                let score = reranked.iter().find(|(id, _)| id == d).unwrap().1;
                let text = c.corpus.get(d).unwrap().contents().into_owned();
                (text, score)
            })
            .collect();
        queries.push((qtext[q.qid()].clone(), docs));
    }
    assert_eq!(queries.len(), 2);
    Fixture {
        _tmp: tmp,
        model,
        queries,
    }
}

fn body(query: &str, texts: &[&str], extra: Value) -> String {
    let mut v = json!({"query": query, "texts": texts, "truncate": true});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v.to_string()
}

#[test]
fn serves_rerank_scores_and_refuses_bad_requests() {
    let f = fixture();
    let server = Server::start(
        &f.model,
        &["--max-client-batch-size", "8", "--payload-limit", "20000"],
    );
    assert_eq!(server.get("/health").0, 200);
    let (code, info) = server.get("/info");
    assert_eq!(code, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["max_input_length"], 64, "{info}");
    assert_eq!(info["max_client_batch_size"], 8, "{info}");
    assert!(info["model_type"]["reranker"].is_object(), "{info}");

    // Raw scores equal `rerank`'s for the same pairs (batches differ: padding and order).
    let mut sequential = Vec::new();
    for (query, docs) in &f.queries {
        let texts: Vec<&str> = docs.iter().map(|(t, _)| t.as_str()).collect();
        let (code, v) = server.rerank(&body(query, &texts, json!({"raw_scores": true})));
        assert_eq!(code, 200, "{v}");
        let ranks = v.as_array().unwrap();
        assert_eq!(ranks.len(), texts.len());
        let mut prev = f64::INFINITY;
        for r in ranks {
            let (i, score) = (
                r["index"].as_u64().unwrap() as usize,
                r["score"].as_f64().unwrap(),
            );
            assert!(r.get("text").is_none(), "text only with return_text: {r}");
            let want = docs[i].1;
            assert!(
                (score - want).abs() <= 1e-4 * want.abs().max(1.0),
                "text {i}: served {score}, rerank wrote {want}"
            );
            assert!(score <= prev, "ranks sorted by decreasing score: {v}");
            prev = score;
        }
        // Without raw_scores: the sigmoid of the logit; return_text echoes each text.
        let (code, p) = server.rerank(&body(query, &texts, json!({"return_text": true})));
        assert_eq!(code, 200, "{p}");
        for r in p.as_array().unwrap() {
            let i = r["index"].as_u64().unwrap() as usize;
            let want = 1.0 / (1.0 + (-docs[i].1).exp());
            assert!((r["score"].as_f64().unwrap() - want).abs() < 1e-5, "{r}");
            assert_eq!(r["text"], texts[i], "{r}");
        }
        sequential.push(v);
    }

    // Sixteen concurrent clients get the same answers (their requests share forward passes).
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..16)
            .map(|k| {
                let (server, f) = (&server, &f);
                sc.spawn(move || {
                    let (query, docs) = &f.queries[k % 2];
                    let texts: Vec<&str> = docs.iter().map(|(t, _)| t.as_str()).collect();
                    (
                        k % 2,
                        server.rerank(&body(query, &texts, json!({"raw_scores": true}))),
                    )
                })
            })
            .collect();
        for h in handles {
            let (q, (code, v)) = h.join().unwrap();
            assert_eq!(code, 200, "{v}");
            for (a, b) in v
                .as_array()
                .unwrap()
                .iter()
                .zip(sequential[q].as_array().unwrap())
            {
                assert_eq!(a["index"], b["index"]);
                let (x, y) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{x} vs {y}");
            }
        }
    });

    // Bad requests: TEI's statuses and error bodies, and the server keeps serving.
    let (query, docs) = &f.queries[0];
    let text = docs[0].0.as_str();
    assert_error(
        server.rerank(&body(query, &[], json!({}))),
        413,
        "validation",
        "`texts` cannot be empty",
    );
    assert_error(
        server.rerank(&body(query, &[text; 9], json!({}))),
        413,
        "validation",
        "batch size 9 > maximum allowed batch size 8",
    );
    let long = "word ".repeat(200);
    assert_error(
        server.rerank(&body(query, &[&long], json!({"truncate": false}))),
        413,
        "validation",
        "`texts[0]`: the query and text take more than the model's 64 tokens",
    );
    assert_error(
        server.rerank(&body(
            query,
            &[text],
            json!({"truncation_direction": "Left"}),
        )),
        413,
        "validation",
        "truncation_direction",
    );
    assert_error(
        server.rerank(&body("", &[text], json!({}))),
        400,
        "empty",
        "`query` cannot be empty",
    );
    assert_error(
        server.rerank(&body(query, &[text, ""], json!({}))),
        400,
        "empty",
        "`texts[1]`",
    );
    let huge = "x".repeat(30_000);
    assert_error(
        server.rerank(&body(query, &[&huge], json!({}))),
        413,
        "validation",
        "length limit",
    );
    assert_error(
        server.rerank("{\"query\": \"q\""),
        400,
        "validation",
        "JSON",
    );
    assert_error(
        server.rerank("{\"texts\": [\"a\"]}"),
        422,
        "validation",
        "query",
    );
    assert_error(
        post(&format!("{}/rerank", server.url), "{}", "text/plain"),
        415,
        "validation",
        "Content-Type",
    );
    assert_eq!(server.get("/nothing-here").0, 404);
    let (code, v) = server.rerank(&body(query, &[text], json!({})));
    assert_eq!(code, 200, "still serving after bad requests: {v}");
    drop(server);

    // A Hub id: the directory comes from the Hugging Face cache (hf-hub's layout under
    // $HF_HOME/hub; offline, so nothing is fetched), and scores as the directory does.
    let hf_home = tempfile::tempdir().unwrap();
    let repo = hf_home.path().join("hub/models--rankmamba--tiny-reranker");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for file in [
        "rankmamba.json",
        "config.json",
        "tokenizer.json",
        "cross_encoder.mpk",
    ] {
        std::fs::copy(f.model.join(file), snap.join(file)).unwrap();
    }
    let offline = Path::new("1");
    let hub = Server::start_env(
        "rankmamba/tiny-reranker",
        &[],
        &[("HF_HOME", hf_home.path()), ("HF_HUB_OFFLINE", offline)],
    );
    let (code, info) = hub.get("/info");
    assert_eq!(code, 200, "{info}");
    assert!(
        info.contains("\"model_id\":\"rankmamba/tiny-reranker\""),
        "{info}"
    );
    let (query, docs) = &f.queries[1];
    let texts: Vec<&str> = docs.iter().map(|(t, _)| t.as_str()).collect();
    let (code, v) = hub.rerank(&body(query, &texts, json!({"raw_scores": true})));
    assert_eq!(code, 200, "{v}");
    for r in v.as_array().unwrap() {
        let (i, score) = (
            r["index"].as_u64().unwrap() as usize,
            r["score"].as_f64().unwrap(),
        );
        assert!(
            (score - docs[i].1).abs() <= 1e-4 * docs[i].1.abs().max(1.0),
            "{r}"
        );
    }
    drop(hub);
    // an id that is neither a directory nor in the cache: a clear error, not a panic
    let out = Command::new(env!("CARGO_BIN_EXE_rankmamba"))
        .args(["serve", "--model", "rankmamba/missing", "--port", "0"])
        .env("HF_HOME", hf_home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("rankmamba/missing") && !err.contains("panicked"),
        "{err}"
    );

    // The load test: bounded, loopback only, every request answered.
    let (ok, out, err) = rankmamba(&[
        "bench",
        "serve",
        "--model",
        s(&f.model),
        "--dataset",
        "dl20",
        "--clients",
        "1,3",
        "--requests",
        "3",
        "--texts",
        "4",
        "--json",
        "--quiet",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for (r, clients) in rows.iter().zip([1, 3]) {
        assert_eq!(r["clients"], clients, "{r}");
        assert_eq!(r["requests"], 3, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(
            r["p50_ms"].as_f64().unwrap() <= r["p99_ms"].as_f64().unwrap(),
            "{r}"
        );
    }
    // the warm-up request and the six measured ones all reached the model loop
    assert_eq!(v["server_requests"], 7, "{v}");
}

#[test]
fn a_full_server_answers_429_and_sigterm_finishes_in_flight_requests() {
    let f = fixture();
    let mut server = Server::start(&f.model, &["--max-concurrent-requests", "1"]);
    let (query, docs) = &f.queries[0];
    // A request slow enough to be in flight: 400 texts through the model on the CPU.
    let texts: Vec<&str> = docs
        .iter()
        .map(|(t, _)| t.as_str())
        .cycle()
        .take(400)
        .collect();
    let slow = body(query, &texts, json!({}));
    let url = server.url.clone();
    let in_flight =
        std::thread::spawn(move || post(&format!("{url}/rerank"), &slow, "application/json"));
    // while it runs, a second request finds no free slot (sent once the slow one is admitted:
    // sent before, the small request would take the slot and the slow one would get the 429)
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let mut saw_429 = false;
    while t.elapsed() < Duration::from_secs(20) && !in_flight.is_finished() {
        let got = server.rerank(&body(query, &[docs[0].0.as_str()], json!({})));
        if got.0 == 429 {
            assert_error(got, 429, "overloaded", "Model is overloaded");
            saw_429 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !saw_429 {
        panic!(
            "no 429 while the slow request was in flight; the slow request got {:?}",
            in_flight.join().unwrap()
        );
    }
    // SIGTERM now: the in-flight request still gets its answer, then the server exits cleanly.
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the signal"
    );
    sigterm(&server.child);
    let (code, v) = in_flight.join().unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 400);
    let status = wait_exit(&mut server.child, Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    // once stopped, the port refuses connections
    assert!(ureq::get(&format!("{}/health", server.url)).call().is_err());
}
