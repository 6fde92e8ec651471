//! `rankmamba serve`: a trained reranker behind text-embeddings-inference's `/rerank` API, and
//! `rankmamba bench serve`: a bounded load test of it on loopback.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::serve::{Rank, RerankRequest, ServeConfig, serve_dir, shutdown_signal};
use rankmamba::with_backend;

/// Server limits shared by `serve` and `bench serve`.
#[derive(ClapArgs, Clone)]
pub struct Limits {
    /// Padded tokens (rows x longest row) per forward pass; queued requests share a pass up to
    /// this budget.
    #[arg(long, default_value_t = 16_384)]
    pub max_batch_tokens: usize,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 256)]
    pub max_batch_requests: usize,
    /// Texts per request; more are answered 413.
    #[arg(long, default_value_t = 1_000)]
    pub max_client_batch_size: usize,
    /// Requests in flight at once; more are answered 429.
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Request body size in bytes; larger bodies are answered 413.
    #[arg(long, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Cut texts that do not fit the model when a request does not set `truncate`.
    #[arg(long)]
    pub auto_truncate: bool,
    /// Pad batch widths to a multiple of N tokens (default: 1 on cpu, 64 on GPU backends).
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
}

#[derive(ClapArgs)]
pub struct Args {
    /// Model directory written by `rankmamba train`, or a Hub id of such a directory.
    #[arg(long)]
    pub model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed on the first line of standard output).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub limits: Limits,
}

fn config(limits: &Limits, model_id: &str) -> ServeConfig {
    ServeConfig {
        model_id: model_id.to_string(),
        model_dtype: "float32".into(),
        max_batch_tokens: limits.max_batch_tokens,
        max_batch_requests: limits.max_batch_requests,
        max_client_batch_size: limits.max_client_batch_size,
        max_concurrent_requests: limits.max_concurrent_requests,
        payload_limit: limits.payload_limit,
        auto_truncate: limits.auto_truncate,
    }
}

pub fn run(a: Args) -> Result<()> {
    a.limits.backend.ensure_compiled()?;
    let cfg = config(&a.limits, &a.model);
    cfg.check()?;
    let dir = rankmamba::models::trained_dir(Path::new(&a.model))?;
    let listener = TcpListener::bind((a.host.as_str(), a.port))
        .with_context(|| format!("binding {}:{}", a.host, a.port))?;
    let addr = listener.local_addr()?;
    let pad = a
        .limits
        .pad_multiple
        .unwrap_or_else(|| a.limits.backend.pad_multiple());
    // The address first (a client or a test waits for this line), then the log on stderr.
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", rankmamba::serve::url(addr))?;
    out.flush()?;
    eprintln!(
        "serving {} on {} ({}): POST /rerank, GET /health, GET /info; Ctrl-C or SIGTERM stops",
        dir.display(),
        rankmamba::serve::url(addr),
        a.limits.backend.name()
    );
    let stats = with_backend!(a.limits.backend, |B, dev| serve_dir::<B, _>(
        &dir,
        &dev,
        pad,
        listener,
        cfg.clone(),
        shutdown_signal()
    ))??;
    eprintln!(
        "stopped: {} requests, {} pairs in {} model rounds",
        stats.requests, stats.pairs, stats.rounds
    );
    Ok(())
}

#[derive(ClapArgs)]
pub struct BenchArgs {
    /// Model directory written by `rankmamba train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Collection whose queries and BM25 top texts make the requests.
    #[arg(long, default_value = "dl19")]
    pub dataset: String,
    /// Texts per request (a query's BM25 top N).
    #[arg(long, default_value_t = 20)]
    pub texts: usize,
    /// Concurrent clients, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub clients: Vec<usize>,
    /// Requests per measurement (the measurement also stops after --duration).
    #[arg(long, default_value_t = 64)]
    pub requests: usize,
    /// Seconds per measurement at most.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Cut over-long texts (sent as `truncate: true`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub truncate: bool,
    /// Print JSON (settings, rows, server rounds) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No per-level progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: Limits,
}

/// One load level's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadRow {
    pub clients: usize,
    pub requests: usize,
    pub texts_per_request: usize,
    pub seconds: f64,
    pub docs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
}

/// Percentile `q` (0..=1) of sorted `v`, nearest rank.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub fn bench(a: BenchArgs) -> Result<()> {
    a.limits.backend.ensure_compiled()?;
    if a.texts == 0 || a.requests == 0 || a.clients.contains(&0) || a.clients.is_empty() {
        bail!("--texts, --requests and every --clients value must be positive");
    }
    if !(a.duration.is_finite() && a.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    let cfg = config(&a.limits, &a.model.display().to_string());
    cfg.check()?;
    rankmamba::models::ModelCard::read(&a.model)?;
    // Requests: each judged test query with its BM25 top --texts texts.
    let c = rankmamba::study::Collection::load(
        &a.dataset,
        rankmamba::study::Side::Test,
        None,
        a.texts,
    )?;
    let qtext = c.query_texts();
    let mut bodies: Vec<String> = Vec::new();
    for q in c.first_stage.queries() {
        let Some(query) = qtext.get(q.qid()) else {
            continue;
        };
        let texts: Vec<String> = q
            .ranked()
            .iter()
            .take(a.texts)
            .filter_map(|(d, _)| c.corpus.get(d).map(|d| d.contents().into_owned()))
            .collect();
        if texts.len() == a.texts {
            bodies.push(serde_json::to_string(&RerankRequest {
                query: query.clone(),
                texts,
                truncate: Some(a.truncate),
                truncation_direction: None,
                raw_scores: true,
                return_text: false,
            })?);
        }
    }
    if bodies.is_empty() {
        bail!("{}: no query has {} first-stage texts", a.dataset, a.texts);
    }
    // The server on loopback in a thread of its own (its model loop runs there).
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let url = format!("{}/rerank", rankmamba::serve::url(listener.local_addr()?));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pad = a
        .limits
        .pad_multiple
        .unwrap_or_else(|| a.limits.backend.pad_multiple());
    let backend = a.limits.backend;
    let dir = a.model.clone();
    let server = std::thread::spawn(move || {
        with_backend!(backend, |B, dev| serve_dir::<B, _>(
            &dir,
            &dev,
            pad,
            listener,
            cfg.clone(),
            async {
                let _ = stop_rx.await;
            }
        ))
    });
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    // One warm-up request (first-use allocations, kernel compilation on GPU backends).
    if let Err(e) = post(&agent, &url, &bodies[0]) {
        // the server's own error (a model that does not load) says more than the client's
        let _ = stop_tx.send(());
        if let Ok(Ok(Err(server_error))) = server.join() {
            return Err(server_error);
        }
        return Err(e.context("warm-up request"));
    }
    let mut rows = Vec::new();
    for &clients in &a.clients {
        let next = Arc::new(AtomicUsize::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..clients {
                let (next, latencies, errors, agent, url, bodies) =
                    (&next, &latencies, &errors, &agent, &url, &bodies);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= a.requests || Instant::now() > deadline {
                            break;
                        }
                        let t = Instant::now();
                        match post(agent, url, &bodies[i % bodies.len()]) {
                            Ok(_) => latencies
                                .lock()
                                .unwrap()
                                .push(t.elapsed().as_secs_f64() * 1e3),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
        let seconds = t0.elapsed().as_secs_f64();
        let mut lat = Arc::try_unwrap(latencies)
            .map_err(|_| anyhow::anyhow!("latency list still shared"))?
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        lat.sort_by(f64::total_cmp);
        let done = lat.len();
        let row = LoadRow {
            clients,
            requests: done,
            texts_per_request: a.texts,
            seconds,
            docs_per_s: (done * a.texts) as f64 / seconds,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            errors: errors.load(Ordering::SeqCst),
        };
        if !a.quiet {
            eprintln!(
                "{clients} clients: {done} requests in {seconds:.1} s, {:.1} docs/s",
                row.docs_per_s
            );
        }
        rows.push(row);
    }
    let _ = stop_tx.send(());
    let stats = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))???;
    if a.json {
        let v = serde_json::json!({
            "backend": backend.name(),
            "model": a.model.display().to_string(),
            "dataset": a.dataset,
            "texts_per_request": a.texts,
            "max_batch_tokens": a.limits.max_batch_tokens,
            "rows": rows,
            "server_requests": stats.requests,
            "server_rounds": stats.rounds,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "| clients | requests | texts/request | docs/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            r.clients, r.requests, r.texts_per_request, r.docs_per_s, r.p50_ms, r.p99_ms, r.errors
        );
    }
    println!(
        "\nbackend {}, {}, server: {} requests in {} model rounds ({:.2} requests per round)",
        backend.name(),
        a.model.display(),
        stats.requests,
        stats.rounds,
        stats.requests as f64 / stats.rounds.max(1) as f64
    );
    Ok(())
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<Vec<Rank>> {
    let resp = agent
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(body)
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    Ok(serde_json::from_str(&resp.into_string()?)?)
}
