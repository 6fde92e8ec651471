//! `RmsNorm` (HF `MambaRMSNorm`): `weight * x / sqrt(mean(x^2) + eps)`, computed in fp32.

use burn::module::{Module, Param};
use burn::tensor::{DType, Tensor, backend::Backend};

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

    /// Normalises `[.., hidden]`. The statistics are computed in fp32 whatever the input
    /// dtype; the output has the weight's dtype, as in HF.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let w = self.weight.val();
        let wdtype = w.dtype();
        let x32 = if x.dtype() == DType::F32 {
            x
        } else {
            x.cast(DType::F32)
        };
        let var = x32.clone().square().mean_dim(D - 1);
        let normed = x32 * (var + self.eps).sqrt().recip();
        let normed = if wdtype == DType::F32 {
            normed
        } else {
            normed.cast(wdtype)
        };
        let mut shape = [1usize; D];
        shape[D - 1] = w.dims()[0];
        normed * w.reshape(shape)
    }
}
