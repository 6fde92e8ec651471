//! `MambaBlock`: pre-norm residual block, `x + mixer(norm(x))`.

use burn::module::Module;
use burn::tensor::{DType, Tensor, backend::Backend};
use mamba_ssm::SelectiveScanBackend;

use crate::{MambaConfig, MambaMixer, RmsNorm};

/// One residual block (HF `MambaBlock`, names `norm` and `mixer`).
#[derive(Module, Debug)]
pub struct MambaBlock<B: Backend> {
    /// Pre-norm.
    pub norm: RmsNorm<B>,
    /// The selective SSM mixer.
    pub mixer: MambaMixer<B>,
    /// Keep the residual stream in fp32 (matters in half precision only).
    pub residual_in_fp32: bool,
}

impl<B: Backend> MambaBlock<B> {
    /// A freshly initialised block.
    pub fn new(config: &MambaConfig, device: &B::Device) -> Self {
        MambaBlock {
            norm: RmsNorm::new(config.hidden_size, config.layer_norm_epsilon, device),
            mixer: MambaMixer::new(config, device),
            residual_in_fp32: config.residual_in_fp32,
        }
    }
}

impl<B: SelectiveScanBackend> MambaBlock<B> {
    /// `x`: `[batch, L, H]`, `mask` as in [`MambaMixer::forward`].
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<&Tensor<B, 2>>) -> Tensor<B, 3> {
        let pdtype = self.norm.weight.val().dtype();
        let residual = x.clone();
        let h = if x.dtype() == pdtype {
            x
        } else {
            x.cast(pdtype)
        };
        let h = self.mixer.forward(self.norm.forward(h), mask);
        if self.residual_in_fp32 && residual.dtype() != DType::F32 {
            residual.cast(DType::F32) + h.cast(DType::F32)
        } else if h.dtype() != residual.dtype() {
            residual.clone() + h.cast(residual.dtype())
        } else {
            residual + h
        }
    }
}
