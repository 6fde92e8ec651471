//! LayerNorm and RMSNorm over the last dimension, forward and backward in one kernel each.
//!
//! Burn 0.21 runs `LayerNorm` as about eight tensor operations forward (two means, a
//! subtraction, a square, a square root, a division, the scale and the shift) and about twice
//! as many backward, each a pass over the activations. Here:
//!
//! - [`NormBackend::norm_forward`]: one kernel, one cube per row: the statistics in f32, the
//!   output in the input's dtype, and the row's mean and `1 / sqrt(var + eps)` kept for the
//!   backward;
//! - [`NormBackend::norm_backward`]: one kernel for the input's gradient (one cube per row), one
//!   for the weight's and bias's (f32 partial sums over blocks of rows, then summed);
//! - `Autodiff<B>`: one graph node whose backward runs the inner backend's kernels;
//! - `Fusion<B>`: both as custom operations of the stream;
//! - NdArray and backends without kernels: Burn's operations (and Burn's autodiff of them).
//!
//! [`layer_norm`] and [`rms_norm`] take the weights as tensors; [`LayerNorm`] is a module with
//! `burn::nn::LayerNorm`'s fields (`gamma`, `beta`, `epsilon`) and records.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{DType, Tensor, TensorPrimitive, backend::Backend};
use std::sync::atomic::{AtomicBool, Ordering};

mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "fusion")]
mod fusion;

/// Which normalisation: `(x - mean) / sqrt(var + eps)` or `x / sqrt(mean(x²) + eps)`, each
/// times the weight, plus the bias if given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormKind {
    /// LayerNorm: centred, the biased variance.
    Layer,
    /// RMSNorm: not centred, the mean square.
    Rms,
}

/// A normalisation's output and what its backward needs: per row, the mean (zero for
/// [`NormKind::Rms`]) and `1 / sqrt(var + eps)`, both f32.
#[derive(Debug, Clone)]
pub struct NormForward<B: Backend> {
    /// `[rows, d]`, the input's dtype.
    pub output: Tensor<B, 2>,
    /// `[rows]`, f32.
    pub mean: Tensor<B, 1>,
    /// `[rows]`, f32.
    pub rstd: Tensor<B, 1>,
}

/// Gradients of a normalisation's input (its dtype), weight and bias if it has one (the
/// weight's dtype; `Autodiff` casts the bias's to the bias's dtype).
#[derive(Debug, Clone)]
pub struct NormGrads<B: Backend> {
    pub input: Tensor<B, 2>,
    pub weight: Tensor<B, 1>,
    pub bias: Option<Tensor<B, 1>>,
}

/// A backend that normalises rows in one kernel.
///
/// Implemented for NdArray (Burn's operations), for `Autodiff<B>` of any implementor, and with
/// the `cubecl` / `fusion` features for `CubeBackend` and `Fusion<B>`. The provided methods
/// are the reference computation in tensor operations (f32, f64 for f64 inputs).
pub trait NormBackend: Backend {
    /// Whether [`NormBackend::norm_forward`] and [`NormBackend::norm_backward`] are kernels of
    /// this backend (then `Autodiff` records one node for a normalisation); `false`:
    /// [`layer_norm`] and [`rms_norm`] run Burn's operations, differentiated by Burn.
    const NORM_KERNELS: bool = false;

    /// Normalises each row of `input` `[rows, d]` and applies `weight` `[d]` and `bias`.
    fn norm_forward(
        input: Tensor<Self, 2>,
        weight: Tensor<Self, 1>,
        bias: Option<Tensor<Self, 1>>,
        epsilon: f64,
        kind: NormKind,
    ) -> NormForward<Self> {
        norm_forward_ops(input, weight, bias, epsilon, kind)
    }

    /// The gradients, given `grad` = dLoss/dOutput and the forward's input, weight and saved
    /// statistics; the bias's gradient only when `has_bias`.
    fn norm_backward(
        grad: Tensor<Self, 2>,
        input: Tensor<Self, 2>,
        weight: Tensor<Self, 1>,
        mean: Tensor<Self, 1>,
        rstd: Tensor<Self, 1>,
        kind: NormKind,
        has_bias: bool,
    ) -> NormGrads<Self> {
        norm_backward_ops(grad, input, weight, mean, rstd, kind, has_bias)
    }
}

/// The dtype of the arithmetic and of the saved statistics for an input of `dtype`.
pub(crate) fn stats_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

pub(crate) fn cast<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

#[cfg(feature = "cubecl")]
pub(crate) fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

#[cfg(feature = "cubecl")]
pub(crate) fn tensor<B: Backend, const D: usize>(p: B::FloatTensorPrimitive) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// [`NormBackend::norm_forward`] as tensor operations.
pub fn norm_forward_ops<B: Backend>(
    input: Tensor<B, 2>,
    weight: Tensor<B, 1>,
    bias: Option<Tensor<B, 1>>,
    epsilon: f64,
    kind: NormKind,
) -> NormForward<B> {
    let dtype = input.dtype();
    let s = stats_dtype(dtype);
    let [rows, d] = input.dims();
    let x = cast(input, s);
    let (centred, mean) = match kind {
        NormKind::Layer => {
            let mean = x.clone().mean_dim(1);
            (x - mean.clone(), mean)
        }
        // not centred: the mean is saved as zero
        NormKind::Rms => {
            let zero = Tensor::<B, 2>::zeros([rows, 1], &x.device()).cast(s);
            (x, zero)
        }
    };
    let rstd = (centred.clone().square().mean_dim(1) + epsilon)
        .sqrt()
        .recip();
    let y = centred * rstd.clone() * cast(weight, s).reshape([1, d]);
    let y = match bias {
        Some(b) => y + cast(b, s).reshape([1, d]),
        None => y,
    };
    NormForward {
        output: cast(y, dtype),
        mean: mean.reshape([rows]),
        rstd: rstd.reshape([rows]),
    }
}

/// [`NormBackend::norm_backward`] as tensor operations:
/// `dx = rstd · (g - mean(g) - x̂ · mean(g · x̂))` with `g = dy · w` and `x̂ = (x - mean) · rstd`
/// (without the `mean(g)` term for RMSNorm), `dw = Σ dy · x̂`, `db = Σ dy` over the rows.
pub fn norm_backward_ops<B: Backend>(
    grad: Tensor<B, 2>,
    input: Tensor<B, 2>,
    weight: Tensor<B, 1>,
    mean: Tensor<B, 1>,
    rstd: Tensor<B, 1>,
    kind: NormKind,
    has_bias: bool,
) -> NormGrads<B> {
    let (dtype, wdtype) = (input.dtype(), weight.dtype());
    let s = stats_dtype(dtype);
    let [rows, d] = input.dims();
    let rstd = cast(rstd, s).reshape([rows, 1]);
    let xhat = (cast(input, s) - cast(mean, s).reshape([rows, 1])) * rstd.clone();
    let dy = cast(grad, s);
    let g = dy.clone() * cast(weight, s).reshape([1, d]);
    let proj = (g.clone() * xhat.clone()).mean_dim(1);
    let dx = match kind {
        NormKind::Layer => g.clone() - g.mean_dim(1) - xhat.clone() * proj,
        NormKind::Rms => g - xhat.clone() * proj,
    } * rstd;
    NormGrads {
        input: cast(dx, dtype),
        weight: cast((dy.clone() * xhat).sum_dim(0).reshape([d]), wdtype),
        bias: has_bias.then(|| cast(dy.sum_dim(0).reshape([d]), wdtype)),
    }
}

static NORM_KERNELS_ON: AtomicBool = AtomicBool::new(true);

/// Whether [`layer_norm`], [`rms_norm`] and [`LayerNorm`] use the backend's kernels where it
/// has them, in this process (default `true`; `false` runs Burn's operations everywhere, for
/// comparisons).
pub fn set_norm_kernels(on: bool) {
    NORM_KERNELS_ON.store(on, Ordering::Relaxed);
}

/// See [`set_norm_kernels`].
pub fn norm_kernels() -> bool {
    NORM_KERNELS_ON.load(Ordering::Relaxed)
}

/// `[..., d]` to `[rows, d]`.
fn rows<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 2> {
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = dims[..D - 1].iter().product();
    x.reshape([rows, d])
}

/// LayerNorm over the last dimension: `(x - mean) / sqrt(var + epsilon) * weight + bias`.
/// On backends with kernels, one kernel with f32 statistics, the output in `x`'s dtype; elsewhere
/// Burn's `layer_norm` operation (what `burn::nn::LayerNorm` runs).
pub fn layer_norm<B: NormBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    bias: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    if !B::NORM_KERNELS || !norm_kernels() || D == 0 {
        return Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
            x.into_primitive().tensor(),
            weight.into_primitive().tensor(),
            bias.map(|b| b.into_primitive().tensor()),
            epsilon,
        )));
    }
    let dims = x.dims();
    B::norm_forward(rows(x), weight, bias, epsilon, NormKind::Layer)
        .output
        .reshape(dims)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + epsilon) * weight`, the statistics in
/// f32 and the output in `x`'s dtype (one kernel where the backend has them).
pub fn rms_norm<B: NormBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    epsilon: f64,
) -> Tensor<B, D> {
    let dims = x.dims();
    let f = if B::NORM_KERNELS && norm_kernels() {
        B::norm_forward(rows(x), weight, None, epsilon, NormKind::Rms)
    } else {
        // Burn's operations, differentiated by Burn
        norm_forward_ops(rows(x), weight, None, epsilon, NormKind::Rms)
    };
    f.output.reshape(dims)
}

/// Configuration of a [`LayerNorm`] (as `burn::nn::LayerNormConfig`).
#[derive(Config, Debug)]
pub struct LayerNormConfig {
    /// The size of the last dimension.
    pub d_model: usize,
    /// Added to the variance. Default: 1e-5.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Whether the module has a bias (beta). Default: true.
    #[config(default = true)]
    pub bias: bool,
}

impl LayerNormConfig {
    /// Unit scale, zero bias.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LayerNorm<B> {
        LayerNorm {
            gamma: Initializer::Ones.init([self.d_model], device),
            beta: self
                .bias
                .then(|| Initializer::Zeros.init([self.d_model], device)),
            epsilon: self.epsilon,
        }
    }
}

/// LayerNorm over the last dimension through [`layer_norm`]: `burn::nn::LayerNorm`'s fields and
/// record, so weights saved from one load into the other.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// The scale, `[d_model]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// The bias, `[d_model]`.
    pub beta: Option<Param<Tensor<B, 1>>>,
    /// Added to the variance.
    pub epsilon: f64,
}

impl<B: NormBackend> LayerNorm<B> {
    /// Normalises `[..., d_model]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        layer_norm(
            x,
            self.gamma.val(),
            self.beta.as_ref().map(|b| b.val()),
            self.epsilon,
        )
    }
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::NormBackend;
    use burn::backend::NdArray;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
    };

    /// Burn's operations (and Burn's autodiff of them under `Autodiff`).
    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> NormBackend for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
    }
}
