//! Causal-LM pretraining of the Mamba and GPT-NeoX backbones on a plain-text corpus, for the
//! controlled study: the same tokenizer, text, tokens and schedule for both architectures at
//! matched non-embedding size.
//!
//! [`pretrain`] packs the corpus ([`rank_heads::lm::PackedCorpus`]), trains a
//! [`rank_heads::CausalLm`] with the [`rank_heads::Trainer`] (AdamW, warmup + linear decay,
//! clipping, atomic checkpoints with exact resume, JSONL log, progress bar), evaluates the
//! held-out loss as it goes, and writes a HF checkpoint directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`) that `rankmamba train --model DIR` fine-tunes
//! like any other backbone, plus `pretrain_report.json`.

use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;
use transformer_baselines::FlashAttentionBackend;

use burn::module::{AutodiffModule, Module, ModuleDisplay};
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use mamba_blocks::{MambaConfig, MambaModel};
use mamba_ssm::SelectiveScanBackend;
use rank_heads::lm::PackedCorpus;
use rank_heads::{CausalLm, SequenceEncoder, TokenEmbedding, TrainConfig, Trainer, Warmup};
use serde::{Deserialize, Serialize};
use transformer_baselines::{GptNeoXConfig, GptNeoXModel};

/// Any error of pretraining, with the file or setting it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PretrainError(pub String);

fn wrap<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> PretrainError {
    move |e| PretrainError(format!("{what}: {e}"))
}

/// The backbone family pretrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LmArch {
    /// Mamba (v1), tied embedding.
    Mamba,
    /// GPT-NeoX (Pythia's layout), with the output head tied to the embedding as Mamba's.
    GptNeox,
}

/// Matched sizes: GPT-NeoX with `n` layers of width `d` against Mamba with `2n` layers of the
/// same width (one Mamba block has about half a transformer layer's parameters: `6d²` against
/// `12d²`), so that the non-embedding parameters agree within 10%.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LmSize {
    /// d 64; GPT-NeoX 2 layers, 4 heads; Mamba 4 layers (0.1M): for tests.
    #[cfg_attr(feature = "clap", value(name = "tiny"))]
    #[serde(rename = "tiny")]
    Tiny,
    /// d 384; GPT-NeoX 6 layers, 6 heads (10.7M); Mamba 12 layers (11.5M).
    #[cfg_attr(feature = "clap", value(name = "10m"))]
    #[serde(rename = "10m")]
    M10,
    /// d 640; GPT-NeoX 8 layers, 10 heads (39.4M); Mamba 16 layers (41.0M).
    #[cfg_attr(feature = "clap", value(name = "40m"))]
    #[serde(rename = "40m")]
    M40,
}

impl LmSize {
    /// `(width, GPT-NeoX layers, heads)`.
    fn dims(self) -> (usize, usize, usize) {
        match self {
            LmSize::Tiny => (64, 2, 4),
            LmSize::M10 => (384, 6, 6),
            LmSize::M40 => (640, 8, 10),
        }
    }
}

/// The Mamba of `size` with a vocabulary of `vocab` ids (end of text 0, padding 1).
pub fn mamba_config(size: LmSize, vocab: usize) -> MambaConfig {
    let (d, layers, _) = size.dims();
    let mut c = MambaConfig::new(d, 2 * layers, vocab);
    c.eos_token_id = 0;
    c.pad_token_id = 1;
    c
}

/// The GPT-NeoX of `size` with a vocabulary of `vocab` ids.
pub fn neox_config(size: LmSize, vocab: usize) -> GptNeoXConfig {
    let (d, layers, heads) = size.dims();
    GptNeoXConfig::new(d, layers, heads, vocab)
}

/// Settings of a pretraining run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainSettings {
    /// The architecture.
    pub arch: LmArch,
    /// The size.
    pub size: LmSize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Optimizer steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup as a fraction of the steps.
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of the initialisation and the data order.
    pub seed: u64,
    /// Evaluate the held-out loss every this many steps (and at the end).
    pub eval_every: usize,
    /// Held-out sequences evaluated (the first ones).
    pub eval_sequences: usize,
    /// Write a checkpoint every this many steps (resumable).
    pub checkpoint_every: Option<usize>,
    /// Stop after this many steps in this call (checkpointed; a rerun continues). Not part of
    /// the schedule: the run is the same however it is cut.
    #[serde(default)]
    pub stop_after: Option<usize>,
    /// Log a JSONL line every this many steps.
    pub log_every: usize,
    /// Show a progress bar.
    pub progress: bool,
}

/// One evaluation of the held-out loss.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ValPoint {
    /// Optimizer steps done.
    pub step: usize,
    /// Training tokens seen.
    pub tokens: usize,
    /// Mean next-token cross-entropy, nats per token.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
}

/// `pretrain_report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    /// The settings.
    pub settings: PretrainSettings,
    /// All parameters.
    pub params: usize,
    /// Parameters of the token embedding (the tied output head shares them).
    pub embedding_params: usize,
    /// `params - embedding_params`.
    pub non_embedding_params: usize,
    /// Tokenizer vocabulary.
    pub vocab_size: usize,
    /// Training sequences and tokens of the packed corpus.
    pub train_sequences: usize,
    /// Held-out sequences.
    pub valid_sequences: usize,
    /// Optimizer steps done (all calls).
    pub steps_done: usize,
    /// Training tokens seen (steps done x batch x sequence).
    pub tokens_seen: usize,
    /// Epochs over the training sequences.
    pub epochs: f64,
    /// Mean training loss of the last logged window.
    pub last_train_loss: f64,
    /// Training throughput of this call (tokens per second, evaluations excluded).
    pub tokens_per_s: f64,
    /// Held-out loss as training went.
    pub validation: Vec<ValPoint>,
}

/// The log, checkpoint and report files of an output directory.
pub const LOG_FILE: &str = "pretrain.jsonl";
/// The report.
pub const REPORT_FILE: &str = "pretrain_report.json";

/// Pretrains `settings.arch` on `corpus` into `out` on `device` (resuming from
/// `out/checkpoints` when it holds a checkpoint of the same schedule). `tokenizer_json` is
/// copied to `out/tokenizer.json`.
pub fn pretrain<B>(
    settings: &PretrainSettings,
    corpus: &PackedCorpus,
    tokenizer_json: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<PretrainReport, PretrainError>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
{
    let s = settings;
    if s.seq_len != corpus.seq_len() {
        return Err(PretrainError(format!(
            "the corpus was packed in sequences of {} tokens, the settings say {}",
            corpus.seq_len(),
            s.seq_len
        )));
    }
    B::seed(device, s.seed);
    match s.arch {
        LmArch::Mamba => {
            let c = mamba_config(s.size, corpus.vocab_size);
            let model: MambaModel<B> = c.init(device);
            run(s, corpus, model, device, out, |m: &MambaModel<B>, dir| {
                m.save_pretrained(&c, dir).map_err(wrap(dir.display()))
            })
        }
        LmArch::GptNeox => {
            let c = neox_config(s.size, corpus.vocab_size);
            let model = c.init::<B>(device).map_err(wrap("the GPT-NeoX config"))?;
            run(s, corpus, model, device, out, |m: &GptNeoXModel<B>, dir| {
                m.save_pretrained(&c, dir).map_err(wrap(dir.display()))
            })
        }
    }
    .and_then(|report| {
        let bytes = std::fs::read(tokenizer_json).map_err(wrap(tokenizer_json.display()))?;
        safe_write::write_bytes(&out.join("tokenizer.json"), &bytes)
            .map_err(wrap(out.join("tokenizer.json").display()))?;
        let path = out.join(REPORT_FILE);
        safe_write::write_bytes(
            &path,
            &serde_json::to_vec_pretty(&report).map_err(wrap(path.display()))?,
        )
        .map_err(wrap(path.display()))?;
        Ok(report)
    })
}

fn run<B, E>(
    s: &PretrainSettings,
    corpus: &PackedCorpus,
    encoder: E,
    device: &B::Device,
    out: &Path,
    save: impl Fn(&E, &Path) -> Result<(), PretrainError>,
) -> Result<PretrainReport, PretrainError>
where
    B: AutodiffBackend,
    E: SequenceEncoder<B> + TokenEmbedding<B> + AutodiffModule<B> + ModuleDisplay,
    E::InnerModule:
        SequenceEncoder<B::InnerBackend> + TokenEmbedding<B::InnerBackend> + ModuleDisplay,
{
    let params = Module::<B>::num_params(&encoder);
    let embedding_params = encoder.token_embedding().dims().iter().product::<usize>();
    let model = CausalLm::<B, E>::new(encoder);
    let config = TrainConfig {
        lr: s.lr,
        weight_decay: s.weight_decay,
        warmup: Warmup::Ratio(s.warmup),
        total_steps: s.steps,
        grad_clip_norm: Some(1.0),
        accumulation: 1,
        seed: s.seed,
        group_size: 1,
        loss: rank_heads::RankLoss::Lce,
        eval_every: Some(s.eval_every),
        checkpoint_every: s.checkpoint_every,
        keep_checkpoints: 2,
        log_every: s.log_every,
        progress: s.progress,
    };
    let ckpt = out.join("checkpoints");
    let mut trainer = match s.checkpoint_every {
        Some(_) => match Trainer::resume(model.clone(), config.clone(), &ckpt, device.clone())
            .map_err(wrap(ckpt.display()))?
        {
            Some(t) => t,
            None => Trainer::new(model, config, device.clone())
                .map_err(wrap("settings"))?
                .with_checkpoints(&ckpt)
                .map_err(wrap(ckpt.display()))?,
        },
        None => Trainer::new(model, config, device.clone()).map_err(wrap("settings"))?,
    };
    // the settings were checked by the Trainer above: only now is anything written
    std::fs::create_dir_all(out).map_err(wrap(out.display()))?;
    let log = out.join(LOG_FILE);
    if trainer.step == 0 {
        // a fresh run starts a fresh log
        safe_write::write_bytes(&log, b"").map_err(wrap(log.display()))?;
    }
    trainer = trainer.with_log(&log).map_err(wrap(log.display()))?;
    let rows = s.batch_size;
    let valid_rows = s.eval_sequences.min(corpus.valid_len());
    let inner_device = device.clone();
    let curve = RefCell::new(Vec::new());
    let eval_time = RefCell::new(0f64);
    let mut data = |i: usize| Ok(corpus.train_batch::<B>(i * rows, rows, s.seed, device));
    let mut eval = |m: &CausalLm<B::InnerBackend, E::InnerModule>| {
        let t0 = Instant::now();
        let (mut sum, mut count) = (0f64, 0usize);
        let mut start = 0;
        while start < valid_rows {
            let n = rows.min(valid_rows - start);
            let batch = corpus.valid_batch::<B::InnerBackend>(start, n, &inner_device);
            let (l, c) = m.loss_sum(&batch)?;
            sum += l.into_scalar().elem::<f64>();
            count += c;
            start += n;
        }
        let loss = sum / count.max(1) as f64;
        *eval_time.borrow_mut() += t0.elapsed().as_secs_f64();
        Ok(loss)
    };
    let t0 = Instant::now();
    let start_step = trainer.step;
    let report = trainer
        .train(s.stop_after, &mut data, Some(&mut eval))
        .map_err(wrap("pretraining"))?;
    let elapsed = t0.elapsed().as_secs_f64() - *eval_time.borrow();
    // the whole curve, this call's and earlier calls' evaluations, from the log
    let text = std::fs::read_to_string(&log).map_err(wrap(log.display()))?;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(wrap(format!("{}: {line}", log.display())))?;
        if let (Some(step), Some(loss)) = (v["step"].as_u64(), v["eval"].as_f64()) {
            let step = step as usize;
            let mut c = curve.borrow_mut();
            c.retain(|p: &ValPoint| p.step != step);
            c.push(ValPoint {
                step,
                tokens: step * rows * s.seq_len,
                loss,
                perplexity: loss.exp(),
            });
        }
    }
    save(&trainer.model.encoder, out)?;
    let tokens_seen = trainer.step * rows * s.seq_len;
    let trained_here = (trainer.step - start_step) * rows * s.seq_len;
    Ok(PretrainReport {
        settings: s.clone(),
        params,
        embedding_params,
        non_embedding_params: params - embedding_params,
        vocab_size: corpus.vocab_size,
        train_sequences: corpus.train_len(),
        valid_sequences: corpus.valid_len(),
        steps_done: trainer.step,
        tokens_seen,
        epochs: tokens_seen as f64 / corpus.train_tokens().max(1) as f64,
        last_train_loss: report.last_loss,
        tokens_per_s: trained_here as f64 / elapsed.max(1e-9),
        validation: curve.into_inner(),
    })
}
