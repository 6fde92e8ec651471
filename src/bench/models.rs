//! Cross-encoder throughput: training steps and reranking inference for the study's configs.
//!
//! Models are randomly initialised from the configs (`mamba-130m`, `mamba-370m`: the
//! state-spaces presets; `bert-base`; `pythia-160m`, `pythia-410m`) behind
//! `rank_heads::CrossEncoder` (pooling: `[CLS]` for BERT, the last token otherwise; dropout 0.1
//! on the pooled vector; `Linear(H, 1)`). Token ids are random in the model's vocabulary, every
//! sequence is full length (mask all ones), made on the host and uploaded per batch, as a
//! reranker would. `*-tiny` configs exist for smoke tests.
//!
//! - Training step: `rows = queries x group` sequences of `L` tokens; forward, LCE over
//!   `[queries, group]`, backward, `GradientsParams`, AdamW step (lr 2e-5, weight decay 0.01;
//!   `fused_optim::FusedAdamW` or Burn's `AdamW`); timed from the forward to the device sync
//!   after the optimizer step (the batch upload is outside the timer). With `phases`, the
//!   device is also synced before the optimizer step, which is timed alone.
//! - Reranking: the model's inference copy (`valid()`, no autodiff); `queries x candidates`
//!   (query, document) pairs scored in batches of `batch` rows (a batch may span queries),
//!   scores read back to the host after each batch; timed end to end including the upload of
//!   each batch's ids.

use std::time::Instant;
use transformer_baselines::FlashAttentionBackend;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use fused_optim::{AdamWBackend, FusedAdamWConfig};
use mamba_blocks::{MambaConfig, MambaModel};
use mamba_ssm::SelectiveScanBackend;
use rank_heads::{CrossEncoder, Pooling, RankLoss, Scorer, TokenBatch};
use serde::{Deserialize, Serialize};
use transformer_baselines::{BertConfig, GptNeoXConfig, HiddenAct};

use super::{Timing, guarded, measure, ms_since, summarize, sync};

/// A model configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Mamba-130m preset (d 768, 24 layers).
    #[value(name = "mamba-130m")]
    #[serde(rename = "mamba-130m")]
    Mamba130m,
    /// Mamba-370m preset (d 1024, 48 layers).
    #[value(name = "mamba-370m")]
    #[serde(rename = "mamba-370m")]
    Mamba370m,
    /// BERT-base (d 768, 12 layers).
    BertBase,
    /// Pythia-160m (GPT-NeoX, d 768, 12 layers).
    #[value(name = "pythia-160m")]
    #[serde(rename = "pythia-160m")]
    Pythia160m,
    /// Pythia-410m (GPT-NeoX, d 1024, 24 layers).
    #[value(name = "pythia-410m")]
    #[serde(rename = "pythia-410m")]
    Pythia410m,
    /// Smoke-test Mamba (d 32, 2 layers, vocabulary 512).
    MambaTiny,
    /// Smoke-test BERT (d 32, 2 layers, 2 heads, vocabulary 512).
    BertTiny,
    /// Smoke-test GPT-NeoX (d 32, 2 layers, 2 heads, vocabulary 512).
    PythiaTiny,
}

impl ModelKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mamba130m => "mamba-130m",
            ModelKind::Mamba370m => "mamba-370m",
            ModelKind::BertBase => "bert-base",
            ModelKind::Pythia160m => "pythia-160m",
            ModelKind::Pythia410m => "pythia-410m",
            ModelKind::MambaTiny => "mamba-tiny",
            ModelKind::BertTiny => "bert-tiny",
            ModelKind::PythiaTiny => "pythia-tiny",
        }
    }

    /// The study's training configs.
    pub fn study_train() -> Vec<ModelKind> {
        vec![
            ModelKind::Mamba130m,
            ModelKind::BertBase,
            ModelKind::Pythia160m,
            ModelKind::Pythia410m,
            ModelKind::Mamba370m,
        ]
    }
}

/// Settings of `bench train`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainBench {
    /// Queries per step.
    pub queries: usize,
    /// Documents per query (LCE group; the first is the "positive").
    pub group: usize,
    /// Tokens per sequence.
    pub len: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Autodiff checkpointing strategy.
    #[serde(default)]
    pub checkpointing: crate::backend::Checkpointing,
    /// The transformers' attention.
    #[serde(default)]
    pub attention: super::AttentionKind,
    /// The kernel of every projection's product (`linear_kernels`).
    #[serde(default)]
    pub matmul: linear_kernels::MatmulKernel,
    /// The optimizer's implementation.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// The LayerNorm / RMSNorm implementation.
    #[serde(default)]
    pub norm: NormImpl,
    /// Sync the device between backward and the optimizer step, and time the optimizer alone
    /// (the step loses the overlap of the two).
    #[serde(default)]
    pub phases: bool,
}

/// Which AdamW a training bench runs (the same update either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// `fused_optim::FusedAdamW`: one kernel per parameter tensor.
    #[default]
    FusedAdamw,
    /// Burn's `AdamW`: about ten kernel launches per parameter tensor.
    Adamw,
}

/// Which LayerNorm / RMSNorm a bench runs (the same function either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormImpl {
    /// `linear_kernels`' kernels (one launch forward, two backward) where the backend has them.
    #[default]
    Kernel,
    /// Burn's tensor operations.
    Burn,
}

impl NormImpl {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            NormImpl::Kernel => "kernel",
            NormImpl::Burn => "burn",
        }
    }
}

impl OptimizerKind {
    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::FusedAdamw => "fused-adamw",
            OptimizerKind::Adamw => "adamw",
        }
    }
}

/// Settings of `bench rerank`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RerankBench {
    /// Candidates per query.
    pub candidates: usize,
    /// Tokens per (query, document) sequence.
    pub len: usize,
    /// Rows per forward call.
    pub batches: Vec<usize>,
    /// Queries timed per batch size.
    pub queries: usize,
    /// Untimed forward calls per batch size first.
    pub warmup: usize,
}

/// One training measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRow {
    /// Model.
    pub model: ModelKind,
    /// Parameters.
    pub params: Option<usize>,
    /// Sequences per step.
    pub rows: usize,
    /// Tokens per step.
    pub tokens: usize,
    /// Step time (absent on error).
    pub timing: Option<Timing>,
    /// tokens / median step time.
    pub tokens_per_s: Option<f64>,
    /// The optimizer step alone, with `phases` (between syncs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer_timing: Option<Timing>,
    /// Why there is no timing.
    pub error: Option<String>,
}

/// One reranking measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RerankRow {
    /// Model.
    pub model: ModelKind,
    /// Rows per forward call.
    pub batch: usize,
    /// Documents scored in the timed region.
    pub docs: usize,
    /// Seconds of the timed region.
    pub seconds: Option<f64>,
    /// Documents per second.
    pub docs_per_s: Option<f64>,
    /// Milliseconds per query (`candidates` documents).
    pub ms_per_query: Option<f64>,
    /// Why there is no timing.
    pub error: Option<String>,
}

/// Vocabulary, pooling and a config description of a model kind.
fn vocab(kind: ModelKind) -> usize {
    match kind {
        ModelKind::Mamba130m | ModelKind::Mamba370m => 50_280,
        ModelKind::BertBase => 30_522,
        ModelKind::Pythia160m | ModelKind::Pythia410m => 50_304,
        _ => 512,
    }
}

fn mamba_config(kind: ModelKind) -> anyhow::Result<MambaConfig> {
    Ok(match kind {
        ModelKind::Mamba130m => MambaConfig::preset("130m")?,
        ModelKind::Mamba370m => MambaConfig::preset("370m")?,
        _ => MambaConfig::new(32, 2, 512),
    })
}

fn bert_config(kind: ModelKind) -> BertConfig {
    let mut c = BertConfig::bert_base();
    if kind == ModelKind::BertTiny {
        c.vocab_size = 512;
        c.hidden_size = 32;
        c.num_hidden_layers = 2;
        c.num_attention_heads = 2;
        c.intermediate_size = 64;
        c.hidden_act = HiddenAct::Gelu;
    }
    c
}

fn pythia_config(kind: ModelKind) -> GptNeoXConfig {
    match kind {
        ModelKind::Pythia160m => GptNeoXConfig::pythia_160m(),
        ModelKind::Pythia410m => GptNeoXConfig::pythia_410m(),
        _ => {
            let mut c = GptNeoXConfig::pythia_70m();
            c.vocab_size = 512;
            c.hidden_size = 32;
            c.num_hidden_layers = 2;
            c.num_attention_heads = 2;
            c.intermediate_size = 128;
            c
        }
    }
}

/// Runs `$body` with `$model` bound to a fresh `CrossEncoder<$B, _>` of `$kind`.
macro_rules! with_cross_encoder {
    ($kind:expr, $B:ty, $dev:expr, |$model:ident| $body:expr) => {
        with_cross_encoder!($kind, $B, $dev, super::AttentionKind::Flash, |$model| $body)
    };
    ($kind:expr, $B:ty, $dev:expr, $attention:expr, |$model:ident| $body:expr) => {{
        let attention: super::AttentionKind = $attention;
        let kind: ModelKind = $kind;
        match kind {
            ModelKind::Mamba130m | ModelKind::Mamba370m | ModelKind::MambaTiny => {
                let enc = MambaModel::<$B>::new(&mamba_config(kind)?, $dev);
                let $model = CrossEncoder::new(enc, Pooling::LastToken, 0.1, $dev);
                $body
            }
            ModelKind::BertBase | ModelKind::BertTiny => {
                let enc = bert_config(kind)
                    .init::<$B>($dev)?
                    .with_attention(attention.implementation());
                let $model = CrossEncoder::new(enc, Pooling::Cls, 0.1, $dev);
                $body
            }
            ModelKind::Pythia160m | ModelKind::Pythia410m | ModelKind::PythiaTiny => {
                let enc = pythia_config(kind)
                    .init::<$B>($dev)?
                    .with_attention(attention.implementation());
                let $model = CrossEncoder::new(enc, Pooling::LastToken, 0.1, $dev);
                $body
            }
        }
    }};
}

/// A small deterministic generator for token ids (splitmix64).
struct Ids(u64);

impl Ids {
    fn next(&mut self, n: usize) -> i64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n as u64) as i64
    }
}

/// A full-length random batch `[rows, len]` uploaded to `device`.
fn random_batch<B: Backend>(
    rows: usize,
    len: usize,
    vocab: usize,
    ids: &mut Ids,
    device: &B::Device,
) -> TokenBatch<B> {
    let v: Vec<i64> = (0..rows * len).map(|_| ids.next(vocab)).collect();
    let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(v, [rows, len]), device);
    TokenBatch {
        input_ids,
        token_type_ids: Tensor::zeros([rows, len], device),
        attention_mask: Tensor::ones([rows, len], device),
    }
}

fn num_params<B: Backend, M: burn::module::Module<B>>(m: &M) -> usize {
    m.num_params()
}

/// Times training steps of one model.
pub fn train_one<B>(kind: ModelKind, s: &TrainBench, device: &B::Device) -> TrainRow
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: AdamWBackend,
{
    let rows = s.queries * s.group;
    let tokens = rows * s.len;
    linear_kernels::set_default_kernel(s.matmul);
    linear_kernels::set_norm_kernels(s.norm == NormImpl::Kernel);
    let r = guarded(|| -> anyhow::Result<(usize, (Timing, Option<Timing>))> {
        with_cross_encoder!(kind, B, device, s.attention, |model| {
            let params = num_params::<B, _>(&model);
            let t = match s.optimizer {
                OptimizerKind::FusedAdamw => {
                    let optim = FusedAdamWConfig::new().with_weight_decay(0.01).init();
                    train_steps::<B, _, _>(model, optim, kind, s, device)?
                }
                OptimizerKind::Adamw => {
                    let optim = AdamWConfig::new().with_weight_decay(0.01).init();
                    train_steps::<B, _, _>(model, optim, kind, s, device)?
                }
            };
            Ok((params, t))
        })
    })
    .map_err(|e| {
        e.context(format!(
            "{} training step of {tokens} tokens ({} queries x {} documents x {} tokens)",
            kind.name(),
            s.queries,
            s.group,
            s.len
        ))
    });
    match r {
        Ok((params, (t, optimizer_timing))) => TrainRow {
            model: kind,
            params: Some(params),
            rows,
            tokens,
            tokens_per_s: Some(tokens as f64 / (t.median_ms * 1e-3)),
            timing: Some(t),
            optimizer_timing,
            error: None,
        },
        Err(e) => TrainRow {
            model: kind,
            params: None,
            rows,
            tokens,
            timing: None,
            tokens_per_s: None,
            optimizer_timing: None,
            error: Some(format!("{e:#}")),
        },
    }
}

/// The timed steps, and the optimizer alone with `phases`.
fn train_steps<B, M, O>(
    model: M,
    mut optim: O,
    kind: ModelKind,
    s: &TrainBench,
    device: &B::Device,
) -> anyhow::Result<(Timing, Option<Timing>)>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Scorer<B>,
    O: Optimizer<M, B>,
{
    let rows = s.queries * s.group;
    let mut ids = Ids(17);
    let v = vocab(kind);
    let mut holder = Some(model);
    let mut optim_ms = Vec::new();
    let t = measure(s.warmup, s.steps, || {
        let batch = random_batch::<B>(rows, s.len, v, &mut ids, device);
        sync::<B>(device)?;
        let m = holder.take().ok_or_else(|| anyhow::anyhow!("model lost"))?;
        let t0 = Instant::now();
        let scores = m.score(&batch)?;
        let loss = RankLoss::Lce.compute(scores.reshape([s.queries, s.group]));
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let t1 = if s.phases {
            sync::<B>(device)?;
            Some(Instant::now())
        } else {
            None
        };
        let m = optim.step(2e-5, m, grads);
        sync::<B>(device)?;
        let ms = ms_since(t0);
        if let Some(t1) = t1 {
            optim_ms.push(ms_since(t1));
        }
        holder = Some(m);
        Ok(ms)
    })?;
    drop(holder);
    // the warm-up steps' optimizer times are not kept
    let timed = optim_ms.split_off(optim_ms.len().saturating_sub(t.reps));
    Ok((t, summarize(timed)))
}

/// Times reranking of one model at each batch size.
pub fn rerank_one<B>(kind: ModelKind, s: &RerankBench, device: &B::Device) -> Vec<RerankRow>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
{
    let r = guarded(|| -> anyhow::Result<Vec<RerankRow>> {
        with_cross_encoder!(kind, B, device, |model| {
            let model = model.valid();
            Ok(s.batches
                .iter()
                .map(|&b| {
                    match guarded(|| {
                        rerank_batches::<B::InnerBackend, _>(&model, kind, s, b, device)
                    }) {
                        Ok((docs, secs)) => RerankRow {
                            model: kind,
                            batch: b,
                            docs,
                            seconds: Some(secs),
                            docs_per_s: Some(docs as f64 / secs),
                            ms_per_query: Some(secs * 1e3 * s.candidates as f64 / docs as f64),
                            error: None,
                        },
                        Err(e) => error_row(kind, b, &e),
                    }
                })
                .collect())
        })
    });
    r.unwrap_or_else(|e| s.batches.iter().map(|&b| error_row(kind, b, &e)).collect())
}

fn error_row(kind: ModelKind, batch: usize, e: &anyhow::Error) -> RerankRow {
    RerankRow {
        model: kind,
        batch,
        docs: 0,
        seconds: None,
        docs_per_s: None,
        ms_per_query: None,
        error: Some(format!("{e:#}")),
    }
}

fn rerank_batches<B: Backend, M: Scorer<B>>(
    model: &M,
    kind: ModelKind,
    s: &RerankBench,
    batch: usize,
    device: &B::Device,
) -> anyhow::Result<(usize, f64)> {
    let v = vocab(kind);
    let mut ids = Ids(99);
    let score = |rows: usize, ids: &mut Ids| -> anyhow::Result<()> {
        let b = random_batch::<B>(rows, s.len, v, ids, device);
        let scores = model.score(&b)?;
        let data = scores.into_data();
        anyhow::ensure!(data.num_elements() == rows, "wrong number of scores");
        Ok(())
    };
    for _ in 0..s.warmup {
        score(batch, &mut ids)?;
    }
    sync::<B>(device)?;
    let docs = s.queries * s.candidates;
    let t0 = Instant::now();
    let mut done = 0;
    while done < docs {
        let rows = batch.min(docs - done);
        score(rows, &mut ids)?;
        done += rows;
    }
    sync::<B>(device)?;
    Ok((docs, t0.elapsed().as_secs_f64()))
}

/// Markdown table of training rows.
pub fn train_table(rows: &[TrainRow], s: &TrainBench) -> String {
    let base = rows
        .iter()
        .find(|r| r.model == ModelKind::BertBase)
        .and_then(|r| r.tokens_per_s);
    let mut t = format!(
        "training step: {} queries x {} docs x {} tokens = {} tokens, LCE, {}\n\n| model | params | step ms (median) | min..max ms | tokens/s | vs bert-base | optimizer ms |\n|---|---|---|---|---|---|---|\n",
        s.queries,
        s.group,
        s.len,
        s.queries * s.group * s.len,
        s.optimizer.name()
    );
    for r in rows {
        match (r.timing, r.tokens_per_s) {
            (Some(tm), Some(tps)) => t.push_str(&format!(
                "| {} | {:.1}M | {:.1} | {:.1}..{:.1} | {} | {} | {} |\n",
                r.model.name(),
                r.params.unwrap_or(0) as f64 / 1e6,
                tm.median_ms,
                tm.min_ms,
                tm.max_ms,
                super::scan::fmt_rate(tps),
                base.map_or("-".into(), |b| format!("{:.2}x", tps / b)),
                r.optimizer_timing
                    .map_or("-".into(), |o| format!("{:.1}", o.median_ms)),
            )),
            _ => t.push_str(&format!(
                "| {} | | error: {} | | | | |\n",
                r.model.name(),
                r.error.as_deref().unwrap_or("?")
            )),
        }
    }
    t
}

/// Markdown table of reranking rows.
pub fn rerank_table(rows: &[RerankRow], s: &RerankBench) -> String {
    let mut t = format!(
        "reranking: {} candidates per query, {} tokens, {} queries timed per batch size\n\n| model | batch | docs/s | ms per query | docs timed |\n|---|---|---|---|---|\n",
        s.candidates, s.len, s.queries
    );
    for r in rows {
        match (r.docs_per_s, r.ms_per_query) {
            (Some(d), Some(q)) => t.push_str(&format!(
                "| {} | {} | {:.1} | {:.2} | {} |\n",
                r.model.name(),
                r.batch,
                d,
                q,
                r.docs
            )),
            _ => t.push_str(&format!(
                "| {} | {} | error: {} | | |\n",
                r.model.name(),
                r.batch,
                r.error.as_deref().unwrap_or("?")
            )),
        }
    }
    t
}
