//! `RmsNorm` (HF `MambaRMSNorm`): `weight * x / sqrt(mean(x^2) + eps)`, computed in fp32.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};

/// Root-mean-square normalisation over the last dimension, HF parameter name `weight`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Per-feature scale, `[hidden]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Unit scale.
    pub fn new(hidden: usize, eps: f64, device: &B::Device) -> Self {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([hidden], device)),
            eps,
        }
    }
}

impl<B: linear_kernels::NormBackend> RmsNorm<B> {
    /// Normalises `[.., hidden]`. The statistics are computed in fp32 whatever the input
    /// dtype (one kernel on the GPU backends: `linear_kernels::rms_norm`); the output has the
    /// weight's dtype, as in HF. HF rounds the normalised value to the input's dtype before
    /// the weight's product, this rounds once after it: in bf16 the two differ by up to one
    /// rounding step; in f32 they agree.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let w = self.weight.val();
        let wdtype = w.dtype();
        let y = linear_kernels::rms_norm(x, w, self.eps);
        if y.dtype() == wdtype {
            y
        } else {
            y.cast(wdtype)
        }
    }
}
