//! Selective scan vs attention core, Mamba block vs transformer layer, at the same token count.
//!
//! Shapes (Mamba-130m / BERT-base widths): `tokens = batch x L` fixed per grid; scan core:
//! `u, delta, z: [batch, d_inner = 2 x d_model, L]`, `A: [d_inner, 16]`, `B, C: [batch, 1, 16, L]`,
//! D, delta_bias, softplus on (the official `selective_scan_fn` in Mamba's setting); attention
//! core: `q, k, v: [batch, heads, L, d_model / heads]`, non-causal, the last `padding` of each
//! row's keys masked (none by default), through `transformer_baselines::attention::attention`
//! with the grid's implementation (this workspace's flash kernels by default; Burn's `attention`
//! or the matmul-softmax reference); Mamba block:
//! `mamba_blocks::MambaBlock` of the 130m preset (RMSNorm, in_proj, causal conv, x_proj,
//! dt_proj, scan, gate, out_proj, residual); transformer layer: one BERT-base layer
//! (`BertLayer`: attention with q/k/v/o projections, post-norms, GELU MLP 3072).
//! Forward runs on the inner (non-autodiff) backend; forward + backward on the autodiff
//! backend, ending in `sum(out).backward()` with every input and parameter tracked.

use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};
use mamba_blocks::{MambaBlock, MambaConfig};
use mamba_ssm::{ScanInputs, SelectiveScanBackend, selective_scan};
use serde::{Deserialize, Serialize};
use transformer_baselines::attention::attention;
use transformer_baselines::bert::BertLayer;
use transformer_baselines::{BertConfig, FlashAttentionBackend};

use super::{Timing, guarded, measure, ms_since, sync};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The selective scan alone (mamba-ssm).
    Scan,
    /// The attention core alone (softmax(q k^T / sqrt(d)) v).
    Attention,
    /// One Mamba block (130m preset width).
    MambaBlock,
    /// One BERT-base encoder layer.
    BertLayer,
}

impl Part {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Part::Scan => "scan",
            Part::Attention => "attention",
            Part::MambaBlock => "mamba-block",
            Part::BertLayer => "bert-layer",
        }
    }

    /// What this part is compared with.
    pub fn counterpart(self) -> Part {
        match self {
            Part::Scan => Part::Attention,
            Part::Attention => Part::Scan,
            Part::MambaBlock => Part::BertLayer,
            Part::BertLayer => Part::MambaBlock,
        }
    }

    /// Every part, scan-side first.
    pub fn all() -> Vec<Part> {
        vec![
            Part::Scan,
            Part::Attention,
            Part::MambaBlock,
            Part::BertLayer,
        ]
    }
}

/// Forward, or forward + backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// Forward only (inner backend, no autodiff).
    Fwd,
    /// Forward then backward of `sum(out)` (autodiff backend).
    FwdBwd,
}

impl Pass {
    /// `fwd` / `fwd+bwd`.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Fwd => "fwd",
            Pass::FwdBwd => "fwd+bwd",
        }
    }
}

/// Sizes of a grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanGrid {
    /// Sequence lengths.
    pub lens: Vec<usize>,
    /// Tokens per call (`batch = max(1, tokens / L)`).
    pub tokens: usize,
    /// Model width (768: Mamba-130m and BERT-base); d_inner = 2 x d_model.
    pub d_model: usize,
    /// Attention heads (12); head size d_model / heads.
    pub heads: usize,
    /// SSM state size (16).
    pub state: usize,
    /// Parts measured.
    pub parts: Vec<Part>,
    /// Passes measured.
    pub passes: Vec<Pass>,
    /// Untimed repetitions first.
    pub warmup: usize,
    /// Timed repetitions.
    pub reps: usize,
    /// The attention of the attention part and the BERT layer.
    #[serde(default)]
    pub attention: super::AttentionKind,
    /// Fraction of each row's keys masked as padding (the last ones) in the attention part
    /// and the BERT layer.
    #[serde(default)]
    pub padding: f64,
}

impl ScanGrid {
    /// The H200 grid: L 128..8192 at 65,536 tokens, Mamba-130m / BERT-base widths.
    pub fn gpu_default() -> Self {
        ScanGrid {
            lens: vec![128, 512, 2048, 8192],
            tokens: 65_536,
            d_model: 768,
            heads: 12,
            state: 16,
            parts: Part::all(),
            passes: vec![Pass::Fwd, Pass::FwdBwd],
            warmup: 3,
            reps: 10,
            attention: super::AttentionKind::Flash,
            padding: 0.0,
        }
    }

    /// Batch at length `len`.
    pub fn batch(&self, len: usize) -> usize {
        (self.tokens / len).max(1)
    }

    /// The `[batch, len]` key-padding mask of `padding` (`None` without padding).
    fn key_padding<B: Backend>(
        &self,
        batch: usize,
        len: usize,
        device: &B::Device,
    ) -> Option<Tensor<B, 2, burn::tensor::Bool>> {
        let padded = ((self.padding * len as f64).round() as usize).min(len.saturating_sub(1));
        (padded > 0).then(|| {
            let pos = Tensor::<B, 1, burn::tensor::Int>::arange(0..len as i64, device)
                .reshape([1, len])
                .expand([batch, len]);
            pos.greater_equal_elem((len - padded) as i64)
        })
    }
}

/// One measured cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRow {
    /// What.
    pub part: Part,
    /// Forward or forward + backward.
    pub pass: Pass,
    /// Sequence length.
    pub len: usize,
    /// Batch.
    pub batch: usize,
    /// batch x L.
    pub tokens: usize,
    /// The timing (absent on error).
    pub timing: Option<Timing>,
    /// tokens / median time.
    pub tokens_per_s: Option<f64>,
    /// Why it has no timing.
    pub error: Option<String>,
}

/// Measures one cell.
pub fn measure_cell<B>(
    grid: &ScanGrid,
    part: Part,
    pass: Pass,
    len: usize,
    device: &B::Device,
) -> anyhow::Result<Timing>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
{
    let batch = grid.batch(len);
    let imp = grid.attention.implementation();
    let d_inner = 2 * grid.d_model;
    let (w, r) = (grid.warmup, grid.reps);
    match (part, pass) {
        (Part::Scan, Pass::Fwd) => {
            let inputs =
                ScanInputs::<B::InnerBackend>::random([batch, d_inner, len, grid.state], device);
            sync::<B::InnerBackend>(device)?;
            measure(w, r, || {
                let t0 = Instant::now();
                let out = selective_scan(inputs.clone(), false)?;
                drop(out);
                sync::<B::InnerBackend>(device)?;
                Ok(ms_since(t0))
            })
        }
        (Part::Scan, Pass::FwdBwd) => {
            let base = ScanInputs::<B>::random([batch, d_inner, len, grid.state], device);
            sync::<B>(device)?;
            measure(w, r, || {
                let mut inputs = base.clone();
                inputs.u = inputs.u.require_grad();
                inputs.delta = inputs.delta.require_grad();
                inputs.a = inputs.a.require_grad();
                inputs.b = inputs.b.require_grad();
                inputs.c = inputs.c.require_grad();
                inputs.z = inputs.z.map(|z| z.require_grad());
                inputs.d = inputs.d.map(|d| d.require_grad());
                inputs.delta_bias = inputs.delta_bias.map(|d| d.require_grad());
                let t0 = Instant::now();
                let out = selective_scan(inputs, false)?;
                let grads = out.y.sum().backward();
                drop(grads);
                sync::<B>(device)?;
                Ok(ms_since(t0))
            })
        }
        (Part::Attention, pass) => {
            let head = grid.d_model / grid.heads;
            let shape = [batch, grid.heads, len, head];
            match pass {
                Pass::Fwd => {
                    let r3 = || {
                        Tensor::<B::InnerBackend, 4>::random(
                            shape,
                            Distribution::Normal(0.0, 1.0),
                            device,
                        )
                    };
                    let (q, k, v) = (r3(), r3(), r3());
                    let pad = grid.key_padding::<B::InnerBackend>(batch, len, device);
                    sync::<B::InnerBackend>(device)?;
                    measure(w, r, || {
                        let t0 = Instant::now();
                        let o = attention(q.clone(), k.clone(), v.clone(), pad.clone(), false, imp);
                        drop(o);
                        sync::<B::InnerBackend>(device)?;
                        Ok(ms_since(t0))
                    })
                }
                Pass::FwdBwd => {
                    let r3 =
                        || Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
                    let (q, k, v) = (r3(), r3(), r3());
                    let pad = grid.key_padding::<B>(batch, len, device);
                    sync::<B>(device)?;
                    measure(w, r, || {
                        let (q, k, v) = (
                            q.clone().require_grad(),
                            k.clone().require_grad(),
                            v.clone().require_grad(),
                        );
                        let t0 = Instant::now();
                        let o = attention(q, k, v, pad.clone(), false, imp);
                        drop(o.sum().backward());
                        sync::<B>(device)?;
                        Ok(ms_since(t0))
                    })
                }
            }
        }
        (Part::MambaBlock, pass) => {
            let mut cfg = MambaConfig::preset("130m")?;
            cfg.hidden_size = grid.d_model;
            cfg.state_size = grid.state;
            cfg.time_step_rank = grid.d_model.div_ceil(16);
            let shape = [batch, len, grid.d_model];
            match pass {
                Pass::Fwd => {
                    let block = MambaBlock::<B::InnerBackend>::new(&cfg, device);
                    let x = Tensor::<B::InnerBackend, 3>::random(
                        shape,
                        Distribution::Normal(0.0, 1.0),
                        device,
                    );
                    sync::<B::InnerBackend>(device)?;
                    measure(w, r, || {
                        let t0 = Instant::now();
                        drop(block.forward(x.clone(), None));
                        sync::<B::InnerBackend>(device)?;
                        Ok(ms_since(t0))
                    })
                }
                Pass::FwdBwd => {
                    let block = MambaBlock::<B>::new(&cfg, device);
                    let x = Tensor::<B, 3>::random(shape, Distribution::Normal(0.0, 1.0), device);
                    sync::<B>(device)?;
                    measure(w, r, || {
                        let x = x.clone().require_grad();
                        let t0 = Instant::now();
                        drop(block.forward(x, None).sum().backward());
                        sync::<B>(device)?;
                        Ok(ms_since(t0))
                    })
                }
            }
        }
        (Part::BertLayer, pass) => {
            let mut cfg = BertConfig::bert_base();
            cfg.hidden_size = grid.d_model;
            cfg.num_attention_heads = grid.heads;
            cfg.intermediate_size = 4 * grid.d_model;
            cfg.num_hidden_layers = 1;
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(len);
            let shape = [batch, len, grid.d_model];
            match pass {
                Pass::Fwd => {
                    let layer = first_layer(cfg.init::<B::InnerBackend>(device)?)?;
                    let x = Tensor::<B::InnerBackend, 3>::random(
                        shape,
                        Distribution::Normal(0.0, 1.0),
                        device,
                    );
                    let pad = grid.key_padding::<B::InnerBackend>(batch, len, device);
                    sync::<B::InnerBackend>(device)?;
                    measure(w, r, || {
                        let t0 = Instant::now();
                        drop(layer.forward(x.clone(), pad.clone(), imp));
                        sync::<B::InnerBackend>(device)?;
                        Ok(ms_since(t0))
                    })
                }
                Pass::FwdBwd => {
                    let layer = first_layer(cfg.init::<B>(device)?)?;
                    let x = Tensor::<B, 3>::random(shape, Distribution::Normal(0.0, 1.0), device);
                    let pad = grid.key_padding::<B>(batch, len, device);
                    sync::<B>(device)?;
                    measure(w, r, || {
                        let x = x.clone().require_grad();
                        let t0 = Instant::now();
                        drop(layer.forward(x, pad.clone(), imp).sum().backward());
                        sync::<B>(device)?;
                        Ok(ms_since(t0))
                    })
                }
            }
        }
    }
}

fn first_layer<B: Backend>(
    model: transformer_baselines::BertModel<B>,
) -> anyhow::Result<BertLayer<B>> {
    model
        .encoder
        .layer
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("BERT config with no layer"))
}

/// Measures the whole grid; a failing cell (out of memory, say) is recorded with its error.
/// `progress` is called after each cell with its row.
pub fn run_grid<B>(
    grid: &ScanGrid,
    device: &B::Device,
    mut progress: impl FnMut(&ScanRow),
) -> Vec<ScanRow>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
{
    let mut rows = Vec::new();
    for &len in &grid.lens {
        let batch = grid.batch(len);
        for &part in &grid.parts {
            for &pass in &grid.passes {
                let r = guarded(|| measure_cell::<B>(grid, part, pass, len, device));
                let tokens = batch * len;
                let (timing, error) = match r {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(format!("{e:#}"))),
                };
                rows.push(ScanRow {
                    part,
                    pass,
                    len,
                    batch,
                    tokens,
                    tokens_per_s: timing.map(|t| tokens as f64 / (t.median_ms * 1e-3)),
                    timing,
                    error,
                });
                if let Some(row) = rows.last() {
                    progress(row);
                }
            }
        }
    }
    rows
}

/// `time(part) / time(counterpart)` at the same L and pass, when both were measured.
pub fn ratio(rows: &[ScanRow], row: &ScanRow) -> Option<f64> {
    let other = rows
        .iter()
        .find(|o| o.part == row.part.counterpart() && o.pass == row.pass && o.len == row.len)?;
    Some(row.timing?.median_ms / other.timing?.median_ms)
}

/// A markdown table: one line per (L, part, pass) with ms, tokens/s and the ratio to the
/// counterpart (scan / attention, Mamba block / BERT layer).
pub fn table(rows: &[ScanRow]) -> String {
    let mut s = String::from(
        "| L | batch | part | pass | ms (median) | min..max ms | tokens/s | ratio to counterpart |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        match r.timing {
            Some(t) => s.push_str(&format!(
                "| {} | {} | {} | {} | {:.3} | {:.3}..{:.3} | {} | {} |\n",
                r.len,
                r.batch,
                r.part.name(),
                r.pass.name(),
                t.median_ms,
                t.min_ms,
                t.max_ms,
                fmt_rate(r.tokens_per_s.unwrap_or(0.0)),
                ratio(rows, r).map_or("-".into(), |x| format!(
                    "{x:.2}x vs {}",
                    r.part.counterpart().name()
                )),
            )),
            None => s.push_str(&format!(
                "| {} | {} | {} | {} | error: {} | | | |\n",
                r.len,
                r.batch,
                r.part.name(),
                r.pass.name(),
                r.error.as_deref().unwrap_or("?")
            )),
        }
    }
    s
}

/// `1.23M` style.
pub fn fmt_rate(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}
