//! Dense layers for Burn whose matrix products run the cubecl matmul kernel you name.
//!
//! Burn 0.21's CUDA and wgpu backends, built without `autotune`, run every product with one
//! kernel (`cubek`'s simple cyclic CMMA). With `autotune` they time about twenty candidate
//! kernels per new shape on first use, which takes minutes per model. cubek has faster kernels
//! for large products, for instance on Hopper its TMA-loaded MMA kernels, but Burn offers no way to
//! pick one. This crate does:
//!
//! - [`MatmulBackend::try_matmul`] runs `lhs · rhs` (2-D) with a named [`MatmulKernel`]:
//!   - on `CubeBackend` (feature `cubecl`), the named cubek kernel;
//!   - on `Fusion<B>` (feature `fusion`), the same kernel, as a custom operation;
//!   - on `Autodiff<B>`, one graph node whose backward runs its two products with the same
//!     kernel;
//!   - on NdArray and any backend without kernels, Burn's own product (autodiff included).
//! - [`matmul`] is the same call that falls back to Burn's product when the kernel cannot run:
//!   the hardware lacks it, or the operands' layout or alignment do not suit it.
//! - [`linear`] is `burn::nn::Linear::forward` through [`matmul`] with the process default
//!   kernel ([`set_default_kernel`]); the backbones of this workspace use it for every
//!   projection.
//!
//! The crate also normalises: [`layer_norm`], [`rms_norm`] and the [`LayerNorm`] module run one
//! kernel forward and two backward on `CubeBackend` and `Fusion<B>` (one graph node under
//! `Autodiff`), with f32 statistics; [`NormBackend`] is the trait.
//!
//! [`MatmulKernel::Auto`] (the default) picks the warp-specialized TMA + MMA kernel where it
//! runs (CUDA, Hopper and later) and Burn's kernel elsewhere. A product that contracts a long
//! dimension into a small output (a weight gradient over all tokens: `Xᵀ · dY`) is split along
//! the contraction into a batched product of f32 partial sums, so that it fills the device.
//! `docs/benchmarks.md` has the measured kernels.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::nn::LinearConfig;
//! use burn::tensor::Tensor;
//!
//! let device = Default::default();
//! let layer = LinearConfig::new(4, 3).init::<NdArray>(&device);
//! let x = Tensor::<NdArray, 3>::ones([2, 5, 4], &device);
//! let y = linear_kernels::linear(&layer, x.clone());
//! let burn = layer.forward(x);
//! y.into_data().assert_approx_eq::<f32>(&burn.into_data(), Default::default());
//! ```

use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "fusion")]
mod fusion;
mod norm;

pub use norm::{
    LayerNorm, LayerNormConfig, NormBackend, NormForward, NormGrads, NormKind, layer_norm,
    norm_backward_ops, norm_forward_ops, norm_kernels, rms_norm, set_norm_kernels,
};

/// Which kernel runs a product. The names are cubek's (`cubek::matmul::launch::Strategy`);
/// each reads its operands from global memory with a different loader and multiplies tiles
/// with tensor-core instructions (`Mma`: PTX `mma`, `Cmma`: cooperative-matrix `wmma`) or with
/// the units' registers (`Unit`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum MatmulKernel {
    /// [`MatmulKernel::SpecializedTmaMma`] where it runs, else Burn's kernel.
    #[default]
    Auto,
    /// Burn's own product (`Tensor::matmul`): cubek's simple cyclic CMMA kernel without Burn's
    /// `autotune` feature, the autotuned choice with it.
    Burn,
    /// Tiles loaded by the Tensor Memory Accelerator (CUDA, Hopper and later), several rows per
    /// plane, PTX `mma`.
    TmaMma,
    /// As [`MatmulKernel::TmaMma`] with `wmma`.
    TmaCmma,
    /// TMA loads by producer planes, `mma` by consumer planes, double-buffered.
    SpecializedTmaMma,
    /// Double-buffered cyclic loads (any tensor-core device), PTX `mma`.
    DoubleCyclicMma,
    /// Single-buffered cyclic loads, several rows per plane, PTX `mma`.
    CyclicMma,
    /// Register tiles on every unit, no tensor cores (any device, lavapipe included).
    Unit,
}

impl MatmulKernel {
    /// Every kernel, in the order of [`MatmulKernel::name`]'s list.
    pub const ALL: [MatmulKernel; 8] = [
        Self::Auto,
        Self::Burn,
        Self::TmaMma,
        Self::TmaCmma,
        Self::SpecializedTmaMma,
        Self::DoubleCyclicMma,
        Self::CyclicMma,
        Self::Unit,
    ];

    /// The kernel's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Burn => "burn",
            Self::TmaMma => "tma-mma",
            Self::TmaCmma => "tma-cmma",
            Self::SpecializedTmaMma => "specialized-tma-mma",
            Self::DoubleCyclicMma => "double-cyclic-mma",
            Self::CyclicMma => "cyclic-mma",
            Self::Unit => "unit",
        }
    }
}

impl fmt::Display for MatmulKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatmulKernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown matmul kernel {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Why a named kernel did not run a product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matmul kernel {kernel} cannot run [{m}, {k}] x [{k}, {n}] ({dtype}): {reason}")]
pub struct MatmulError {
    /// The kernel asked for.
    pub kernel: MatmulKernel,
    /// Rows of the left operand.
    pub m: usize,
    /// The contracted size.
    pub k: usize,
    /// Columns of the right operand.
    pub n: usize,
    /// The operands' storage type.
    pub dtype: String,
    /// What the backend or the kernel said.
    pub reason: String,
}

impl MatmulError {
    pub(crate) fn new<B: Backend>(
        kernel: MatmulKernel,
        lhs: &Tensor<B, 2>,
        rhs: &Tensor<B, 2>,
        reason: impl Into<String>,
    ) -> Self {
        let [m, k] = lhs.dims();
        let [_, n] = rhs.dims();
        Self {
            kernel,
            m,
            k,
            n,
            dtype: format!("{:?}", lhs.dtype()),
            reason: reason.into(),
        }
    }
}

/// A backend whose 2-D products can run a named [`MatmulKernel`].
///
/// Implemented for NdArray (Burn's product), for `Autodiff<B>` of any implementor (one node
/// whose backward runs the inner backend's kernel), and with the `cubecl` / `fusion` features
/// for `CubeBackend` and `Fusion<B>`.
pub trait MatmulBackend: Backend {
    /// Whether the backend has kernels of its own (then `Autodiff` records one node whose
    /// backward calls [`MatmulBackend::try_matmul`]); `false`: Burn's autodiff differentiates
    /// Burn's product.
    const MATMUL_KERNELS: bool = false;

    /// `lhs` `[m, k]` times `rhs` `[k, n]` with `kernel`, in the operands' dtype (f32
    /// accumulation for f16 / bf16). Errors when the kernel cannot run this product here.
    /// Default: Burn's product for [`MatmulKernel::Auto`] and [`MatmulKernel::Burn`].
    fn try_matmul(
        lhs: Tensor<Self, 2>,
        rhs: Tensor<Self, 2>,
        kernel: MatmulKernel,
    ) -> Result<Tensor<Self, 2>, MatmulError> {
        burn_only(lhs, rhs, kernel)
    }
}

/// Burn's product for [`MatmulKernel::Auto`] and [`MatmulKernel::Burn`], an error for a named
/// kernel: what a backend without kernels of its own runs.
pub(crate) fn burn_only<B: Backend>(
    lhs: Tensor<B, 2>,
    rhs: Tensor<B, 2>,
    kernel: MatmulKernel,
) -> Result<Tensor<B, 2>, MatmulError> {
    match kernel {
        MatmulKernel::Auto | MatmulKernel::Burn => Ok(lhs.matmul(rhs)),
        _ => Err(MatmulError::new(
            kernel,
            &lhs,
            &rhs,
            "this backend has only Burn's product",
        )),
    }
}

/// `lhs` `[m, k]` times `rhs` `[k, n]` with `kernel` where it can run, else Burn's product.
/// Panics, as `Tensor::matmul` does, when the inner sizes differ.
pub fn matmul<B: MatmulBackend>(
    lhs: Tensor<B, 2>,
    rhs: Tensor<B, 2>,
    kernel: MatmulKernel,
) -> Tensor<B, 2> {
    let (m, k) = (lhs.dims()[0], lhs.dims()[1]);
    let [k2, n] = rhs.dims();
    assert_eq!(k, k2, "matmul of [{m}, {k}] and [{k2}, {n}]");
    match B::try_matmul(lhs.clone(), rhs.clone(), kernel) {
        Ok(out) => out,
        Err(_) => lhs.matmul(rhs),
    }
}

static DEFAULT_KERNEL: AtomicU8 = AtomicU8::new(0);

/// Sets the kernel that [`linear`] uses in this process (default [`MatmulKernel::Auto`]).
pub fn set_default_kernel(kernel: MatmulKernel) {
    let index = MatmulKernel::ALL
        .iter()
        .position(|k| *k == kernel)
        .expect("every kernel is listed");
    DEFAULT_KERNEL.store(index as u8, Ordering::Relaxed);
}

/// The kernel that [`linear`] uses in this process.
pub fn default_kernel() -> MatmulKernel {
    MatmulKernel::ALL[DEFAULT_KERNEL.load(Ordering::Relaxed) as usize]
}

/// `layer.forward(x)` (`x` `[..., d_input]`) with the product run by [`matmul`] and the
/// process default kernel. Falls back to Burn's `Linear::forward` on backends without kernels,
/// where it is the same computation.
pub fn linear<B: MatmulBackend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    linear_with(layer, x, default_kernel())
}

/// [`linear`] with an explicit kernel.
pub fn linear_with<B: MatmulBackend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    kernel: MatmulKernel,
) -> Tensor<B, D> {
    if !B::MATMUL_KERNELS || D < 2 || kernel == MatmulKernel::Burn {
        return layer.forward(x);
    }
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows: usize = dims[..D - 1].iter().product();
    let weight = layer.weight.val();
    let d_out = weight.dims()[1];
    let y = matmul(x.reshape([rows, d_in]), weight, kernel);
    let y = match &layer.bias {
        Some(b) => y + b.val().unsqueeze_dim(0),
        None => y,
    };
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

/// How many slices the `cubecl` backend's split along `k` cuts a `[m, k] x [k, n]` product into on a device with `sms`
/// multiprocessors: powers of two (at most 64) while the output's 128 x 128 tiles times the
/// slices stay under four per multiprocessor and each slice keeps at least 1,024 of `k`.
#[cfg_attr(not(feature = "cubecl"), allow(dead_code))]
pub(crate) fn split_k_slices(m: usize, n: usize, k: usize, sms: usize) -> usize {
    let tiles = m.div_ceil(128) * n.div_ceil(128);
    let mut s = 1;
    while s < 64 && k.is_multiple_of(2 * s) && k / (2 * s) >= 1024 && tiles * s < 4 * sms {
        s *= 2;
    }
    s
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::MatmulBackend;
    use burn::backend::NdArray;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
    };

    /// Burn's product (and Burn's autodiff of it under `Autodiff`).
    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> MatmulBackend
        for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_round_trip_and_unknown_names_are_listed() {
        for k in MatmulKernel::ALL {
            assert_eq!(k.name().parse::<MatmulKernel>(), Ok(k));
        }
        let err = "tma".parse::<MatmulKernel>().unwrap_err();
        assert!(err.contains("\"tma\"") && err.contains("tma-mma"), "{err}");
    }

    #[test]
    fn the_default_kernel_is_process_wide() {
        assert_eq!(default_kernel(), MatmulKernel::Auto);
        set_default_kernel(MatmulKernel::Unit);
        assert_eq!(default_kernel(), MatmulKernel::Unit);
        set_default_kernel(MatmulKernel::Auto);
    }

    #[test]
    fn weight_gradients_over_many_tokens_are_split_and_large_outputs_are_not() {
        // H100: 132 multiprocessors; BERT-base's weight gradients over 65,536 tokens
        assert_eq!(split_k_slices(768, 768, 65_536, 132), 16);
        assert_eq!(split_k_slices(768, 3072, 65_536, 132), 4);
        assert_eq!(split_k_slices(1536, 768, 65_536, 132), 8);
        // each slice keeps 1,024 of k; an odd k is not split
        assert_eq!(split_k_slices(8, 8, 4096, 132), 4);
        assert_eq!(split_k_slices(8, 8, 65_537, 132), 1);
        // enough output tiles already
        assert_eq!(split_k_slices(8192, 8192, 65_536, 132), 1);
    }
}
