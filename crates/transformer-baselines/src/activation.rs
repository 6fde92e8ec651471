//! The feed-forward activations named by HF configs (`hidden_act`).

use burn::tensor::{Tensor, activation, backend::Backend};
use serde::Deserialize;

/// An activation as named in a HF `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HiddenAct {
    /// `gelu`: the exact (erf) GELU, as `torch.nn.functional.gelu`.
    #[serde(rename = "gelu")]
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation of GELU.
    #[serde(alias = "gelu_pytorch_tanh", rename = "gelu_new")]
    GeluTanh,
    /// `relu`.
    #[serde(rename = "relu")]
    Relu,
    /// `silu` / `swish`.
    #[serde(alias = "swish", rename = "silu")]
    Silu,
}

impl HiddenAct {
    /// The name HF writes in `config.json`.
    pub fn hf_name(self) -> &'static str {
        match self {
            HiddenAct::Gelu => "gelu",
            HiddenAct::GeluTanh => "gelu_new",
            HiddenAct::Relu => "relu",
            HiddenAct::Silu => "silu",
        }
    }
}

impl HiddenAct {
    /// Applies the activation element-wise.
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Gelu => activation::gelu(x),
            Self::GeluTanh => activation::gelu_approximate(x),
            Self::Relu => activation::relu(x),
            Self::Silu => activation::silu(x),
        }
    }
}
