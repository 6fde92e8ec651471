//! AdamW for Burn in one kernel launch per parameter tensor, with f32 state.
//!
//! Burn's `AdamW` updates each parameter with tensor operations (moments, bias corrections,
//! square root, division, decay), about ten kernel launches per parameter tensor on a GPU
//! backend: about 2,000 small kernels per step for a model of 200 parameter tensors, and the
//! device waits for the host while they are issued. [`FusedAdamW`] does the same update in one pass: each element's
//! parameter, gradient and moments are read once, the update is computed in f32, and the new
//! values are written once.
//!
//! The moments are f32 (f64 for an f64 parameter), and a bf16 or f16 parameter has an f32
//! master copy in the optimizer's state, as mixed-precision training keeps one. Stored in bf16
//! (Burn's `AdamW` of a bf16 model), the second moment cannot take in its `(1 - β2) g²`
//! increment (0.1% of its value, below bf16's 0.4% rounding step), an update `lr · δ` smaller
//! than the parameter's rounding step is lost, and f16 moments underflow.
//!
//! - [`AdamWBackend::adamw_step`] is that update for one tensor:
//!   - on `CubeBackend` (feature `cubecl`: CUDA, wgpu), one cubecl kernel;
//!   - on `Fusion<B>` (feature `fusion`), the same kernel as a custom operation of the stream;
//!   - on NdArray, Burn's tensor operations ([`adamw_tensor_ops`]), which a backend of your own
//!     gets by implementing the trait with its default method.
//! - [`FusedAdamW`] is a `burn::optim::SimpleOptimizer`; [`FusedAdamWConfig::init`] gives the
//!   `Optimizer` for a module, as `burn::optim::AdamWConfig::init` does.
//!
//! The update is the decoupled-weight-decay Adam of Loshchilov and Hutter, as Burn's and
//! PyTorch's `AdamW` compute it; with `t` the step (from 1), `g` the gradient:
//!
//! ```text
//! m = β1 m + (1 - β1) g            v = β2 v + (1 - β2) g²
//! p = p (1 - lr λ) - lr (m / (1 - β1^t)) / (sqrt(v / (1 - β2^t)) + ε)
//! ```
//!
//! The defaults are Burn's (`β1` 0.9, `β2` 0.999, `ε` 1e-5, `λ` 1e-4).
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::{GradientsParams, Optimizer};
//! use burn::tensor::Tensor;
//! use fused_optim::FusedAdamWConfig;
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let model: Linear<B> = LinearConfig::new(4, 2).init(&device);
//! let mut optim = FusedAdamWConfig::new().with_weight_decay(0.01).init::<B, Linear<B>>();
//! let loss = model.forward(Tensor::<B, 2>::ones([3, 4], &device)).sum();
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//! let model = optim.step(1e-3, model, grads);
//! # let _ = model;
//! ```

use burn::config::Config;
use burn::module::AutodiffModule;
use burn::optim::{
    LearningRate, SimpleOptimizer, adaptor::OptimizerAdaptor, grad_clipping::GradientClippingConfig,
};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor};

#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "fusion")]
mod fusion;

/// The scalars of one AdamW update: the hyperparameters and the step number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay `β1`.
    pub beta_1: f32,
    /// Second-moment decay `β2`.
    pub beta_2: f32,
    /// `ε`, added to the square root of the corrected second moment.
    pub epsilon: f32,
    /// Decoupled weight decay `λ` (the parameter is scaled by `1 - lr λ`).
    pub weight_decay: f32,
    /// The step number, from 1 (the bias corrections are `1 - β^t`).
    pub time: u32,
}

impl AdamWStep {
    /// `1 - lr λ`, the factor that scales the parameter before the update.
    pub fn decay(&self) -> f32 {
        1.0 - self.lr * self.weight_decay
    }

    /// `1 / (1 - β1^t)` and `1 / (1 - β2^t)`, computed in f64 and rounded once.
    pub fn corrections(&self) -> (f32, f32) {
        let t = self.time as i32;
        (
            (1.0 / (1.0 - (self.beta_1 as f64).powi(t))) as f32,
            (1.0 / (1.0 - (self.beta_2 as f64).powi(t))) as f32,
        )
    }
}

/// The result of one update: the parameter in its dtype, the f32 master copy of a bf16 or f16
/// parameter, and the moments (f32; f64 for an f64 parameter).
#[derive(Clone, Debug)]
pub struct AdamWUpdate<B: Backend> {
    /// The new parameter, in the parameter's dtype.
    pub param: Tensor<B, 1>,
    /// The new f32 master copy (`None` unless the parameter is bf16 or f16).
    pub master: Option<Tensor<B, 1>>,
    /// The new first moment.
    pub moment_1: Tensor<B, 1>,
    /// The new second moment.
    pub moment_2: Tensor<B, 1>,
}

/// A backend that runs one AdamW update of a tensor in one pass.
///
/// Implemented for NdArray (Burn's tensor operations), and with the `cubecl` / `fusion`
/// features for `CubeBackend` (one kernel) and `Fusion<B>` (the kernel as a custom operation).
/// The optimizer runs on the inner backend of `Autodiff`, so `Autodiff` needs no
/// implementation. Another backend of your own can implement it with the default method.
pub trait AdamWBackend: Backend {
    /// One update of `param` (any float dtype) with `grad` (cast to `param`'s dtype), the f32
    /// `master` copy of a bf16 / f16 parameter (`None`: the parameter's own values, on its
    /// first step or for f32 / f64) and the moments (in [`state_dtype`]), all of one length.
    /// Computed in f32 (f64 for an f64 parameter). Default: [`adamw_tensor_ops`].
    fn adamw_step(
        param: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        master: Option<Tensor<Self, 1>>,
        moment_1: Tensor<Self, 1>,
        moment_2: Tensor<Self, 1>,
        step: &AdamWStep,
    ) -> AdamWUpdate<Self> {
        adamw_tensor_ops(param, grad, master, moment_1, moment_2, step)
    }
}

/// The dtype of the optimizer's state and arithmetic for a parameter of `dtype`: f64 for an
/// f64 parameter, f32 otherwise.
pub fn state_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Whether a parameter of `dtype` keeps a master copy (bf16 and f16 do).
pub fn keeps_master(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

/// `t` in `dtype` (a no-op when it already is).
pub(crate) fn cast_to<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

#[cfg(feature = "cubecl")]
pub(crate) fn prim<B: Backend>(t: Tensor<B, 1>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

#[cfg(feature = "cubecl")]
pub(crate) fn tensor<B: Backend>(p: B::FloatTensorPrimitive) -> Tensor<B, 1> {
    Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(p))
}

/// The update as Burn tensor operations, in f32 (f64 for an f64 parameter): what
/// [`AdamWBackend::adamw_step`] does on NdArray, and for f64 parameters everywhere.
pub fn adamw_tensor_ops<B: Backend>(
    param: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    master: Option<Tensor<B, 1>>,
    moment_1: Tensor<B, 1>,
    moment_2: Tensor<B, 1>,
    step: &AdamWStep,
) -> AdamWUpdate<B> {
    let dtype = param.dtype();
    let state = state_dtype(dtype);
    let to = |t: Tensor<B, 1>| cast_to(t, state);
    let p = to(master.unwrap_or(param));
    let (g, m, v) = (to(grad), to(moment_1), to(moment_2));
    let (c1, c2) = step.corrections();
    let m = m.mul_scalar(step.beta_1) + g.clone().mul_scalar(1.0 - step.beta_1);
    let v = v.mul_scalar(step.beta_2) + g.square().mul_scalar(1.0 - step.beta_2);
    let delta = m.clone().mul_scalar(c1) / (v.clone().mul_scalar(c2).sqrt() + step.epsilon);
    let p = p.mul_scalar(step.decay()) - delta.mul_scalar(step.lr);
    let (param, master) = if keeps_master(dtype) {
        (p.clone().cast(dtype), Some(p))
    } else {
        (p, None)
    };
    AdamWUpdate {
        param,
        master,
        moment_1: m,
        moment_2: v,
    }
}

/// [`FusedAdamW`]'s configuration; the defaults are Burn's `AdamWConfig`'s.
#[derive(Config, Debug)]
pub struct FusedAdamWConfig {
    /// First-moment decay.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Second-moment decay.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the square root of the corrected second moment.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// Decoupled weight decay.
    #[config(default = 1e-4)]
    pub weight_decay: f32,
    /// Gradient clipping, applied by Burn's optimizer adaptor before the update.
    pub grad_clipping: Option<GradientClippingConfig>,
}

impl FusedAdamWConfig {
    /// The optimizer for module `M` (what `burn::optim::AdamWConfig::init` gives, with the
    /// update in one pass per tensor).
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
    ) -> OptimizerAdaptor<FusedAdamW, M, B>
    where
        B::InnerBackend: AdamWBackend,
    {
        let optim = OptimizerAdaptor::from(self.optimizer());
        match &self.grad_clipping {
            Some(clip) => optim.with_grad_clipping(clip.init()),
            None => optim,
        }
    }

    /// The per-tensor optimizer alone.
    pub fn optimizer(&self) -> FusedAdamW {
        FusedAdamW {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
        }
    }
}

/// AdamW whose update of each parameter tensor is one [`AdamWBackend::adamw_step`].
#[derive(Clone, Debug)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

/// The optimizer's state of one parameter tensor: the moments, the f32 master copy of a bf16
/// or f16 parameter, and the step count.
///
/// Saved and loaded as a Burn record, the tensors take the backend's float element type: a
/// state reloaded on `Cuda<bf16>` comes back rounded to bf16 (once; the updates continue in
/// f32).
#[derive(Record, Clone)]
pub struct AdamWState<B: Backend, const D: usize> {
    /// First moment, in [`state_dtype`] and the parameter's shape.
    pub moment_1: Tensor<B, D>,
    /// Second moment, in [`state_dtype`] and the parameter's shape.
    pub moment_2: Tensor<B, D>,
    /// The f32 values of a bf16 or f16 parameter (updates smaller than its rounding step
    /// accumulate here); `None` for f32 and f64.
    pub master: Option<Tensor<B, D>>,
    /// Steps taken.
    pub time: usize,
}

impl<B: AdamWBackend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let shape = tensor.shape();
        let n = shape.num_elements();
        let dtype = tensor.dtype();
        let device = tensor.device();
        let (moment_1, moment_2, master, time) = match state {
            Some(s) => (
                s.moment_1.reshape([n]),
                s.moment_2.reshape([n]),
                s.master.map(|t| t.reshape([n])),
                s.time,
            ),
            None => {
                let zeros = || Tensor::<B, 1>::zeros([n], (&device, state_dtype(dtype)));
                (zeros(), zeros(), None, 0)
            }
        };
        let time = time + 1;
        let step = AdamWStep {
            lr: lr as f32,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            // the bias corrections are 1 - β^t: at this t they are 1 for any β < 1
            time: time.min(i32::MAX as usize) as u32,
        };
        let grad = cast_to(grad, dtype);
        let u = B::adamw_step(
            tensor.reshape([n]),
            grad.reshape([n]),
            master,
            moment_1,
            moment_2,
            &step,
        );
        let state = AdamWState {
            moment_1: u.moment_1.reshape(shape.clone()),
            moment_2: u.moment_2.reshape(shape.clone()),
            master: u.master.map(|t| t.reshape(shape.clone())),
            time,
        };
        (u.param.reshape(shape), Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.moment_1 = state.moment_1.to_device(device);
        state.moment_2 = state.moment_2.to_device(device);
        state.master = state.master.map(|t| t.to_device(device));
        state
    }
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::AdamWBackend;
    use burn::backend::NdArray;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
    };

    /// Burn's tensor operations ([`super::adamw_tensor_ops`]).
    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> AdamWBackend
        for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
    }
}
