//! Throughput measurements shared by `rankmamba bench {scan,train,rerank}` and the criterion
//! bench `benches/scan_vs_attention.rs`.
//!
//! - [`scan`]: the selective scan (mamba-ssm) against the attention core at the same token
//!   count, and a Mamba block against a transformer (BERT) layer, forward and
//!   forward + backward.
//! - [`models`]: cross-encoder training steps (forward + backward + AdamW, LCE over groups)
//!   and reranking inference (documents/s, ms per query) for the study's model configs.
//!
//! Timings are wall clock between device synchronisations (`Backend::sync`), after warm-up
//! repetitions (which also absorb JIT compilation and autotuning on the GPU backends); the
//! median of the timed repetitions is reported. Inputs are random (values do not change the
//! amount of work in any of these models).

pub mod matmul;
pub mod models;
pub mod plot;
pub mod scan;

pub use crate::guard::guarded;

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Floating-point type of the whole model (Burn 0.21 has no autocast: a bf16 run keeps
/// parameters, activations and optimizer state in bf16; the scan kernels and reductions
/// accumulate in f32).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    F32,
    /// bf16 everywhere (CUDA backend only).
    Bf16,
}

impl Precision {
    /// `f32` / `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Which attention the transformer parts run (`transformer_baselines::AttentionImpl`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    /// This workspace's flash attention (cubecl kernels forward and backward on CUDA / wgpu).
    #[default]
    Flash,
    /// The flash attention's scalar kernels (no tensor cores).
    FlashScalar,
    /// The flash attention's tiled kernels (tensor cores for f16 / bf16 on CUDA; the scalar
    /// units elsewhere).
    FlashTiled,
    /// Burn's `attention` (flash kernels forward only with `autotune`; decomposed into matmul +
    /// softmax under autodiff).
    Burn,
    /// The plain matmul-softmax reference.
    Reference,
}

impl AttentionKind {
    /// `flash` / `flash-scalar` / `flash-tiled` / `burn` / `reference`.
    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::Flash => "flash",
            AttentionKind::FlashScalar => "flash-scalar",
            AttentionKind::FlashTiled => "flash-tiled",
            AttentionKind::Burn => "burn",
            AttentionKind::Reference => "reference",
        }
    }

    /// The models' setting.
    pub fn implementation(self) -> transformer_baselines::AttentionImpl {
        match self {
            AttentionKind::Flash => transformer_baselines::AttentionImpl::Flash,
            AttentionKind::FlashScalar => transformer_baselines::AttentionImpl::FlashWith(
                transformer_baselines::FlashKernel::Scalar,
            ),
            AttentionKind::FlashTiled => transformer_baselines::AttentionImpl::FlashWith(
                transformer_baselines::FlashKernel::Tiled,
            ),
            AttentionKind::Burn => transformer_baselines::AttentionImpl::Burn,
            AttentionKind::Reference => transformer_baselines::AttentionImpl::Reference,
        }
    }
}

/// Median and spread of timed repetitions, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timing {
    /// Median.
    pub median_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Timed repetitions.
    pub reps: usize,
}

/// Runs `f` `warmup` times untimed, then `reps` times timed; `f` returns the milliseconds of
/// its timed region (so it can leave input preparation outside the timer).
pub fn measure(
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut v = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        v.push(f()?);
    }
    Ok(summarize(v).expect("at least one repetition"))
}

/// Median, extremes and count of `v` milliseconds (`None` when empty).
pub fn summarize(mut v: Vec<f64>) -> Option<Timing> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(Timing {
        median_ms: if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            0.5 * (v[v.len() / 2 - 1] + v[v.len() / 2])
        },
        min_ms: v[0],
        max_ms: v[v.len() - 1],
        reps: v.len(),
    })
}

/// The common frame of a bench's output: which bench, where, its settings and its rows.
pub struct BenchOutput<'a, S: serde::Serialize, R: serde::Serialize> {
    /// `scan`, `train` or `rerank`.
    pub bench: &'a str,
    /// Backend measured.
    pub backend: crate::backend::BackendKind,
    /// Precision measured.
    pub precision: Precision,
    /// The key and value of the settings in the JSON (`settings`, `grid`).
    pub settings: (&'a str, &'a S),
    /// The measured rows.
    pub rows: &'a R,
}

impl<S: serde::Serialize, R: serde::Serialize> BenchOutput<'_, S, R> {
    /// Prints one JSON object (bench, backend, precision, settings, build, rows) with `json`,
    /// else `header`, a blank line and `table`.
    pub fn print(&self, json: bool, header: &str, table: &str) -> anyhow::Result<()> {
        if json {
            let mut v = serde_json::json!({
                "bench": self.bench,
                "backend": self.backend,
                "precision": self.precision,
                "build": build_info(),
                "rows": self.rows,
            });
            v[self.settings.0] = serde_json::to_value(self.settings.1)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("{header}\n");
            print!("{table}");
        }
        Ok(())
    }
}

/// Milliseconds since `t0`.
pub fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// Waits for the device's queued work; an execution failure becomes an error.
pub fn sync<B: burn::tensor::backend::Backend>(device: &B::Device) -> anyhow::Result<()> {
    B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))
}

/// The build's description for result files: commit (from `RANKMAMBA_COMMIT` at build time,
/// set by `scripts/bench_gpu.sh`), features, profile.
pub fn build_info() -> serde_json::Value {
    let mut features = crate::backend::available();
    if cfg!(feature = "autotune") {
        features.push("autotune");
    }
    if cfg!(feature = "fusion") {
        features.push("fusion");
    }
    serde_json::json!({
        "commit": option_env!("RANKMAMBA_COMMIT").unwrap_or("unknown"),
        "features": features,
        "release": !cfg!(debug_assertions),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })
}

/// Runs `$body` with `$B` bound to the autodiff backend of (`$kind`, `$precision`) and `$dev` to
/// its default device; evaluates to `anyhow::Result<_>`. bf16 exists on CUDA only (the CPU
/// scan and NdArray compute in f32; wgpu's half support depends on the adapter). As with
/// [`with_backend!`](crate::with_backend), a form with a [`Checkpointing`](crate::backend::Checkpointing)
/// value picks the autodiff checkpointing strategy at run time.
#[macro_export]
macro_rules! with_bench_backend {
    (@arms $kind:expr, $precision:expr, $ckpt:tt, |$B:ident, $dev:ident| $body:expr) => {{
        use $crate::backend::BackendKind as __K;
        use $crate::bench::Precision as __P;
        #[allow(unreachable_patterns)]
        match ($kind, $precision) {
            #[cfg(feature = "ndarray")]
            (__K::Cpu, __P::F32) => {
                let $dev = burn::backend::ndarray::NdArrayDevice::default();
                ::anyhow::Result::Ok($crate::__with_checkpointing!(
                    $ckpt,
                    $crate::backend::Cpu,
                    |$B| $body
                ))
            }
            #[cfg(feature = "wgpu")]
            (__K::Wgpu, __P::F32) => {
                let $dev = burn::backend::wgpu::WgpuDevice::default();
                ::anyhow::Result::Ok($crate::__with_checkpointing!(
                    $ckpt,
                    $crate::backend::Wgpu,
                    |$B| $body
                ))
            }
            #[cfg(feature = "cuda")]
            (__K::Cuda, __P::F32) => {
                let $dev = burn::backend::cuda::CudaDevice::default();
                ::anyhow::Result::Ok($crate::__with_checkpointing!(
                    $ckpt,
                    burn::backend::Cuda<f32>,
                    |$B| $body
                ))
            }
            #[cfg(feature = "cuda")]
            (__K::Cuda, __P::Bf16) => {
                let $dev = burn::backend::cuda::CudaDevice::default();
                ::anyhow::Result::Ok($crate::__with_checkpointing!(
                    $ckpt,
                    burn::backend::Cuda<burn::tensor::bf16>,
                    |$B| $body
                ))
            }
            (k, p) => ::anyhow::Result::Err(if !$crate::backend::available().contains(&k.name()) {
                k.not_compiled()
            } else {
                ::anyhow::anyhow!(
                    "precision {} is not available on backend {} (bf16 runs on cuda only)",
                    p.name(),
                    k.name()
                )
            }),
        }
    }};
    ($kind:expr, $precision:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::with_bench_backend!(@arms $kind, $precision, none, |$B, $dev| $body)
    };
    ($kind:expr, $precision:expr, $ckpt:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::with_bench_backend!(@arms $kind, $precision, $ckpt, |$B, $dev| $body)
    };
}
