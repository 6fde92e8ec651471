//! A reranking server speaking text-embeddings-inference's (TEI) HTTP API: `POST /rerank`,
//! `GET /health`, `GET /info`, with TEI's field names, status codes and error shapes, so that
//! clients written for TEI work unchanged.
//!
//! Two halves:
//! - the HTTP front end (axum on a tokio runtime in a background thread) validates a request,
//!   tokenizes its pairs on tokio's blocking pool and queues them;
//! - the model loop, on the thread that calls [`serve`] (the thread that owns the model and its
//!   device), takes every queued request whose pairs fit a token budget together, scores them in
//!   forward passes of at most `max_batch_tokens` padded tokens, and answers each request.
//!
//! So concurrent requests share forward passes: while the model runs, requests queue up, and the
//! next pass takes as many of them as the budget holds. A shutdown signal stops accepting
//! connections, lets in-flight requests finish and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rank_heads::{EncodedPair, PairEncoder, RankError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

/// Limits and descriptions of a server. The defaults are TEI's where TEI has one.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Served model's name in `/info`.
    pub model_id: String,
    /// Storage type of the weights, for `/info` (`float32`...).
    pub model_dtype: String,
    /// Padded tokens (rows x longest row) per forward pass.
    pub max_batch_tokens: usize,
    /// Rows per forward pass.
    pub max_batch_requests: usize,
    /// Texts per request (TEI's `max_client_batch_size`).
    pub max_client_batch_size: usize,
    /// Requests admitted at once; more are answered 429 (`overloaded`).
    pub max_concurrent_requests: usize,
    /// Request body size in bytes (TEI's `payload_limit`); larger bodies are answered 413.
    pub payload_limit: usize,
    /// Cut over-long texts when a request does not say (TEI's `auto_truncate`).
    pub auto_truncate: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            model_id: "rankmamba".into(),
            model_dtype: "float32".into(),
            max_batch_tokens: 16_384,
            max_batch_requests: 256,
            max_client_batch_size: 1_000,
            max_concurrent_requests: 512,
            payload_limit: 2_000_000,
            auto_truncate: false,
        }
    }
}

impl ServeConfig {
    /// Every limit positive.
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_batch_requests", self.max_batch_requests),
            ("max_client_batch_size", self.max_client_batch_size),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("payload_limit", self.payload_limit),
        ] {
            if v == 0 {
                anyhow::bail!("{name} must be positive");
            }
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits
        if self.max_concurrent_requests > Semaphore::MAX_PERMITS {
            anyhow::bail!(
                "max_concurrent_requests {} is above {}",
                self.max_concurrent_requests,
                Semaphore::MAX_PERMITS
            );
        }
        Ok(())
    }
}

/// `POST /rerank` body (TEI's `RerankRequest`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RerankRequest {
    /// The query.
    pub query: String,
    /// The texts to score against it.
    pub texts: Vec<String>,
    /// Cut texts that do not fit the model (default: the server's `auto_truncate`).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Which end is cut (`Right`, TEI's default, is the only one this server's templates cut).
    #[serde(default)]
    pub truncation_direction: Option<String>,
    /// Logits instead of sigmoid probabilities.
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text in its rank.
    #[serde(default)]
    pub return_text: bool,
}

/// One entry of the `/rerank` answer (TEI's `Rank`), sorted by decreasing score.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Rank {
    /// Position of the text in the request.
    pub index: usize,
    /// The text, with `return_text`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
    /// Sigmoid of the logit, or the logit with `raw_scores`.
    pub score: f32,
}

/// TEI's error kinds; each has its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorType {
    /// 503.
    Unhealthy,
    /// 424: the model failed.
    Backend,
    /// 429: too many requests at once.
    Overloaded,
    /// 422: the tokenizer failed.
    Tokenizer,
    /// 413: a limit was exceeded or a field is invalid.
    Validation,
    /// 400: an empty input.
    Empty,
}

impl ErrorType {
    /// TEI's status for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Validation => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Empty => StatusCode::BAD_REQUEST,
        }
    }
}

/// TEI's error body: `{"error": "...", "error_type": "validation"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
    /// Its kind.
    pub error_type: ErrorType,
}

/// An error answer: a status and TEI's error body.
#[derive(Debug)]
struct ApiError(StatusCode, ErrorResponse);

impl ApiError {
    fn new(kind: ErrorType, msg: impl Into<String>) -> Self {
        Self(
            kind.status(),
            ErrorResponse {
                error: msg.into(),
                error_type: kind,
            },
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// `GET /info` (TEI's `Info`, with the fields this server has).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// The model's name.
    pub model_id: String,
    /// Weight storage type.
    pub model_dtype: String,
    /// `{"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}`.
    pub model_type: serde_json::Value,
    /// Requests admitted at once.
    pub max_concurrent_requests: usize,
    /// Tokens of a (query, text) pair, template included.
    pub max_input_length: usize,
    /// Padded tokens per forward pass.
    pub max_batch_tokens: usize,
    /// Rows per forward pass.
    pub max_batch_requests: usize,
    /// Texts per request.
    pub max_client_batch_size: usize,
    /// Texts are cut when a request does not say.
    pub auto_truncate: bool,
    /// Threads that tokenize at once (tokio's blocking pool runs on every core).
    pub tokenization_workers: usize,
    /// This server's version.
    pub version: String,
}

/// One request's pairs on their way to the model loop.
struct Job {
    pairs: Vec<EncodedPair>,
    reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

#[derive(Clone)]
struct AppState {
    queue: mpsc::Sender<Job>,
    encoder: Arc<PairEncoder>,
    admit: Arc<Semaphore>,
    healthy: Arc<AtomicBool>,
    info: Arc<Info>,
    auto_truncate: bool,
    max_client_batch_size: usize,
}

/// What the model loop did, returned by [`serve`] after shutdown.
#[derive(Debug, Clone, Default)]
pub struct ServeStats {
    /// Requests answered by the model loop.
    pub requests: usize,
    /// Pairs scored.
    pub pairs: usize,
    /// Model loop iterations (each takes one or more queued requests).
    pub rounds: usize,
}

/// Serves `/rerank`, `/health` and `/info` on `listener` until `shutdown` resolves, scoring on
/// this thread with `score(pairs, max_batch_tokens)`, which returns one logit per pair in input
/// order (e.g. [`rank_heads::Reranker::score_encoded`]). `encoder` tokenizes requests as the
/// model expects. Returns after every accepted request was answered.
pub fn serve<S, F>(
    listener: std::net::TcpListener,
    cfg: ServeConfig,
    encoder: PairEncoder,
    mut score: S,
    shutdown: F,
) -> anyhow::Result<ServeStats>
where
    S: FnMut(&[EncodedPair], usize) -> Result<Vec<f32>, String>,
    F: Future<Output = ()> + Send + 'static,
{
    cfg.check()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rankmamba-serve")
        .build()?;
    let (tx, rx) = mpsc::channel::<Job>();
    let healthy = Arc::new(AtomicBool::new(true));
    let info = Info {
        model_id: cfg.model_id.clone(),
        model_dtype: cfg.model_dtype.clone(),
        model_type: serde_json::json!({"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}),
        max_concurrent_requests: cfg.max_concurrent_requests,
        max_input_length: encoder.max_length(),
        max_batch_tokens: cfg.max_batch_tokens,
        max_batch_requests: cfg.max_batch_requests,
        max_client_batch_size: cfg.max_client_batch_size,
        auto_truncate: cfg.auto_truncate,
        tokenization_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let state = AppState {
        queue: tx,
        encoder: Arc::new(encoder),
        admit: Arc::new(Semaphore::new(cfg.max_concurrent_requests)),
        healthy: healthy.clone(),
        info: Arc::new(info),
        auto_truncate: cfg.auto_truncate,
        max_client_batch_size: cfg.max_client_batch_size,
    };
    let app = axum::Router::new()
        .route("/rerank", post(rerank))
        .route("/health", get(health))
        .route("/info", get(info_handler))
        .layer(DefaultBodyLimit::max(cfg.payload_limit))
        .with_state(state);
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    // The front end owns the only queue senders (in the router's state): when it has shut
    // down and dropped them, the model loop below sees the queue close and returns.
    let front = std::thread::Builder::new()
        .name("rankmamba-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            })
        })?;
    let mut stats = ServeStats::default();
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        // Every queued request that fits the token budget alongside the first.
        let tokens = |j: &Job| j.pairs.iter().map(|p| p.ids.len()).sum::<usize>();
        let mut used = tokens(&first);
        let mut round = vec![first];
        while let Ok(j) = rx.try_recv() {
            let t = tokens(&j);
            if used + t > cfg.max_batch_tokens {
                pending = Some(j);
                break;
            }
            used += t;
            round.push(j);
        }
        let pairs: Vec<EncodedPair> = round.iter().flat_map(|j| j.pairs.clone()).collect();
        stats.rounds += 1;
        stats.pairs += pairs.len();
        stats.requests += round.len();
        // A panic inside the backend (cubecl reports an allocation failure by panicking) fails
        // this round's requests and marks the server unhealthy, instead of killing it.
        let scores = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            score(&pairs, cfg.max_batch_tokens)
        }))
        .unwrap_or_else(|p| {
            healthy.store(false, Ordering::SeqCst);
            Err(format!("the model panicked: {}", panic_text(&p)))
        })
        .and_then(|s| {
            if s.len() == pairs.len() {
                Ok(s)
            } else {
                Err(format!("{} scores for {} pairs", s.len(), pairs.len()))
            }
        });
        let mut offset = 0;
        for j in round {
            let n = j.pairs.len();
            let answer = match &scores {
                Ok(s) => Ok(s[offset..offset + n].to_vec()),
                Err(e) => Err(e.clone()),
            };
            offset += n;
            // a client that went away no longer waits for its answer
            let _ = j.reply.send(answer);
        }
    }
    match front.join() {
        Ok(r) => r?,
        Err(p) => anyhow::bail!("the HTTP front end panicked: {}", panic_text(&p)),
    }
    Ok(stats)
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Resolves on Ctrl-C or SIGTERM: the shutdown signal of `rankmamba serve`.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn health(State(s): State<AppState>) -> Result<StatusCode, ApiError> {
    if s.healthy.load(Ordering::SeqCst) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::new(ErrorType::Unhealthy, "unhealthy"))
    }
}

async fn info_handler(State(s): State<AppState>) -> Json<Info> {
    Json((*s.info).clone())
}

async fn rerank(
    State(s): State<AppState>,
    body: Result<Json<RerankRequest>, JsonRejection>,
) -> Result<Json<Vec<Rank>>, ApiError> {
    // axum's own rejections (a body over the limit, bad JSON, a missing field) in TEI's shape
    let Json(req) = body.map_err(|r| {
        let status = r.status();
        ApiError(
            status,
            ErrorResponse {
                error: r.body_text(),
                error_type: ErrorType::Validation,
            },
        )
    })?;
    let _permit = s
        .admit
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::new(ErrorType::Overloaded, "Model is overloaded"))?;
    if req.texts.is_empty() {
        return Err(ApiError::new(
            ErrorType::Validation,
            "`texts` cannot be empty",
        ));
    }
    if req.query.is_empty() {
        return Err(ApiError::new(ErrorType::Empty, "`query` cannot be empty"));
    }
    if let Some(i) = req.texts.iter().position(String::is_empty) {
        return Err(ApiError::new(
            ErrorType::Empty,
            format!("`texts[{i}]` cannot be empty"),
        ));
    }
    if req.texts.len() > s.max_client_batch_size {
        return Err(ApiError::new(
            ErrorType::Validation,
            format!(
                "batch size {} > maximum allowed batch size {}",
                req.texts.len(),
                s.max_client_batch_size
            ),
        ));
    }
    match req.truncation_direction.as_deref() {
        None | Some("Right" | "right") => {}
        Some(other) => {
            return Err(ApiError::new(
                ErrorType::Validation,
                format!(
                    "truncation_direction {other:?} is not supported: this model's template cuts the text at its end (\"Right\")"
                ),
            ));
        }
    }
    let truncate = req.truncate.unwrap_or(s.auto_truncate);
    let encoder = s.encoder.clone();
    let req = Arc::new(req);
    let r = req.clone();
    let pairs = tokio::task::spawn_blocking(move || encode(&encoder, &r, truncate))
        .await
        .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization failed: {e}")))??;
    let (tx, rx) = oneshot::channel();
    s.queue
        .send(Job { pairs, reply: tx })
        .map_err(|_| ApiError::new(ErrorType::Unhealthy, "the model loop has stopped"))?;
    let scores = rx
        .await
        .map_err(|_| ApiError::new(ErrorType::Backend, "the model loop dropped the request"))?
        .map_err(|e| ApiError::new(ErrorType::Backend, e))?;
    let mut ranks = Vec::with_capacity(scores.len());
    for (index, logit) in scores.into_iter().enumerate() {
        if logit.is_nan() {
            return Err(ApiError::new(ErrorType::Backend, "score is NaN"));
        }
        let score = if req.raw_scores {
            logit
        } else {
            1.0 / (1.0 + (-logit).exp())
        };
        ranks.push(Rank {
            index,
            text: req.return_text.then(|| req.texts[index].clone()),
            score,
        });
    }
    // by decreasing score; equal scores keep request order
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(Json(ranks))
}

fn encode(
    encoder: &PairEncoder,
    req: &RerankRequest,
    truncate: bool,
) -> Result<Vec<EncodedPair>, ApiError> {
    let max = encoder.max_length();
    req.texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let e = encoder.encode_pair(&req.query, text).map_err(|e| match e {
                RankError::Tokenizer(m) => {
                    ApiError::new(ErrorType::Tokenizer, format!("`texts[{i}]`: {m}"))
                }
                other => ApiError::new(ErrorType::Validation, format!("`texts[{i}]`: {other}")),
            })?;
            if e.truncated && !truncate {
                return Err(ApiError::new(
                    ErrorType::Validation,
                    format!(
                        "`texts[{i}]`: the query and text take more than the model's {max} tokens (max_input_length); send \"truncate\": true to cut the text"
                    ),
                ));
            }
            Ok(e)
        })
        .collect()
}

/// The address a listener bound to, for printing (`http://127.0.0.1:8080`).
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Loads the cross-encoder of model directory `dir` (written by `rankmamba train`) on `device`
/// and [`serve`]s it: forward passes through the inference backend (no autodiff graph), batch
/// widths padded to a multiple of `pad_multiple` tokens.
pub fn serve_dir<B, F>(
    dir: &std::path::Path,
    device: &B::Device,
    pad_multiple: usize,
    listener: std::net::TcpListener,
    cfg: ServeConfig,
    shutdown: F,
) -> anyhow::Result<ServeStats>
where
    B: burn::tensor::backend::AutodiffBackend
        + mamba_ssm::SelectiveScanBackend
        + transformer_baselines::FlashAttentionBackend,
    B::InnerBackend: mamba_ssm::SelectiveScanBackend + transformer_baselines::FlashAttentionBackend,
    F: Future<Output = ()> + Send + 'static,
{
    use crate::models::{Init, ModelCard, ModelVisitor, with_model};
    use burn::module::{AutodiffModule, ModuleDisplay};
    use rank_heads::{CrossEncoder, Reranker, SequenceEncoder};

    struct Visitor<B: burn::tensor::backend::AutodiffBackend, F> {
        encoder: PairEncoder,
        device: B::Device,
        listener: std::net::TcpListener,
        cfg: ServeConfig,
        shutdown: F,
    }
    impl<B, F> ModelVisitor<B> for Visitor<B, F>
    where
        B: burn::tensor::backend::AutodiffBackend,
        F: Future<Output = ()> + Send + 'static,
    {
        type Output = anyhow::Result<ServeStats>;
        fn visit<E>(self, model: CrossEncoder<B, E>) -> Self::Output
        where
            E: SequenceEncoder<B> + AutodiffModule<B> + ModuleDisplay,
            E::InnerModule: SequenceEncoder<B::InnerBackend> + ModuleDisplay,
        {
            let valid = model.valid();
            let r = Reranker {
                model: &valid,
                encoder: &self.encoder,
                batch_size: self.cfg.max_batch_requests,
                device: self.device.clone(),
            };
            serve(
                self.listener,
                self.cfg,
                self.encoder.clone(),
                |pairs, budget| r.score_encoded(pairs, budget).map_err(|e| e.to_string()),
                self.shutdown,
            )
        }
    }
    let card = ModelCard::read(dir)?;
    let encoder = card.pair_encoder(dir)?.with_pad_multiple(pad_multiple);
    let v = Visitor::<B, F> {
        encoder,
        device: device.clone(),
        listener,
        cfg,
        shutdown,
    };
    with_model::<B, _>(dir, &Init::Trained, device, v)?
}
