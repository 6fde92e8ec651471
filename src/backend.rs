//! The Burn backends this build was compiled with (root features `ndarray`, `wgpu`, `cuda`),
//! and the run-time choice between them (`--backend cpu|wgpu|cuda`).

/// CPU backend (default feature `ndarray`).
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;

/// Portable GPU backend through wgpu (feature `wgpu`).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// NVIDIA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// Names of the backends compiled into this build.
pub fn available() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "ndarray") {
        v.push("cpu");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}

/// What Burn's autodiff keeps for the backward pass (`--checkpointing`).
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
#[serde(rename_all = "lowercase")]
pub enum Checkpointing {
    /// Every intermediate a backward op needs is kept (`Autodiff<B>`).
    #[default]
    None,
    /// Burn's `BalancedCheckpointing`: the outputs of memory-bound ops (element-wise work) are
    /// recomputed in the backward pass instead of kept; less memory, some recomputation.
    Balanced,
}

impl Checkpointing {
    /// The lowercase name (`none`, `balanced`).
    pub fn name(self) -> &'static str {
        match self {
            Checkpointing::None => "none",
            Checkpointing::Balanced => "balanced",
        }
    }
}

/// A backend chosen at run time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// NdArray on the CPU (feature `ndarray`, the default).
    Cpu,
    /// wgpu: Vulkan, Metal, DX12 (feature `wgpu`).
    Wgpu,
    /// CUDA (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// The lowercase name (`cpu`, `wgpu`, `cuda`).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Default padding multiple of batch widths: 1 on the CPU (no compilation per shape), 64
    /// on the JIT-compiling GPU backends (Burn's cubecl backends compile, and with `autotune`
    /// tune, kernels per shape: padding only to the longest pair made nearly every batch a new
    /// shape, and an H200 run spent minutes compiling).
    pub fn pad_multiple(self) -> usize {
        match self {
            BackendKind::Cpu => 1,
            BackendKind::Wgpu | BackendKind::Cuda => 64,
        }
    }

    /// An error unless this build contains the backend.
    pub fn ensure_compiled(self) -> anyhow::Result<()> {
        if available().contains(&self.name()) {
            Ok(())
        } else {
            Err(self.not_compiled())
        }
    }

    /// The error for a backend this build does not contain.
    pub fn not_compiled(self) -> anyhow::Error {
        let feature = match self {
            BackendKind::Cpu => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        };
        anyhow::anyhow!(
            "backend `{}` is not compiled into this build (it has: {}); rebuild with `--features {feature}`",
            self.name(),
            available().join(", ")
        )
    }
}

/// `$body` with `$B` bound to `Autodiff<$inner>` (selector `none`, fixed when the macro is
/// expanded) or, for a run-time [`Checkpointing`] value, to `Autodiff<$inner>` or
/// `Autodiff<$inner, BalancedCheckpointing>` (used by [`with_backend!`] and
/// `with_bench_backend!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __with_checkpointing {
    (none, $inner:ty, |$B:ident| $body:expr) => {{
        #[allow(dead_code)]
        type $B = burn::backend::Autodiff<$inner>;
        $body
    }};
    ($ckpt:expr, $inner:ty, |$B:ident| $body:expr) => {
        match $ckpt {
            $crate::backend::Checkpointing::None => {
                $crate::__with_checkpointing!(none, $inner, |$B| $body)
            }
            $crate::backend::Checkpointing::Balanced => {
                #[allow(dead_code)]
                type $B = burn::backend::Autodiff<
                    $inner,
                    burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing,
                >;
                $body
            }
        }
    };
}

/// Runs `$body` with `$B` bound to the autodiff backend of `$kind` and `$dev` to its default
/// device; evaluates to `anyhow::Result<_>` (an error for a backend not compiled in). The form
/// with a [`Checkpointing`] value picks the autodiff checkpointing strategy at run time (it
/// compiles `$body` twice per backend, so only the training commands use it).
///
/// ```ignore
/// with_backend!(kind, |B, dev| train::<B>(&dev, &settings))
/// ```
#[macro_export]
macro_rules! with_backend {
    (@arms $kind:expr, $ckpt:tt, |$B:ident, $dev:ident| $body:expr) => {{
        #[allow(unreachable_patterns)]
        match $kind {
            #[cfg(feature = "ndarray")]
            $crate::backend::BackendKind::Cpu => {
                let $dev = burn::backend::ndarray::NdArrayDevice::default();
                ::anyhow::Result::Ok($crate::__with_checkpointing!(
                    $ckpt,
                    $crate::backend::Cpu,
                    |$B| $body
                ))
            }
            #[cfg(feature = "wgpu")]
            $crate::backend::BackendKind::Wgpu => {
                let $dev = burn::backend::wgpu::WgpuDevice::default();
                // an allocation failure in the device thread is an error, not a panic
                $crate::guard::device_guarded(|| {
                    ::anyhow::Result::Ok($crate::__with_checkpointing!(
                        $ckpt,
                        $crate::backend::Wgpu,
                        |$B| $body
                    ))
                })
            }
            #[cfg(feature = "cuda")]
            $crate::backend::BackendKind::Cuda => {
                let $dev = burn::backend::cuda::CudaDevice::default();
                // an allocation failure in the device thread is an error, not a panic
                $crate::guard::device_guarded(|| {
                    ::anyhow::Result::Ok($crate::__with_checkpointing!(
                        $ckpt,
                        $crate::backend::Cuda,
                        |$B| $body
                    ))
                })
            }
            other => ::anyhow::Result::Err(other.not_compiled()),
        }
    }};
    ($kind:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::with_backend!(@arms $kind, none, |$B, $dev| $body)
    };
    ($kind:expr, $ckpt:expr, |$B:ident, $dev:ident| $body:expr) => {
        $crate::with_backend!(@arms $kind, $ckpt, |$B, $dev| $body)
    };
}
