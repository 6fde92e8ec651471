//! `CausalConv1d`: Mamba's depthwise causal convolution over the sequence.
//!
//! `y[b, c, t] = bias[c] + sum_j weight[c, 0, j] * x[b, c, t - (k - 1) + j]`, with `x` zero
//! before the first position. The parameters and their names are those of HF's
//! `nn.Conv1d(d, d, k, groups=d, padding=k-1)` (`weight [d, 1, k]`, `bias [d]`), so checkpoints
//! load unchanged.
//!
//! Why not Burn's `Conv1d` with `groups = d`: Burn 0.21's weight gradient of a grouped
//! convolution runs one convolution and one slice-assign per group (`conv_weight_grad_groups`
//! in burn-backend and in burn-cubecl's fallback), so Mamba-130M's 24 layers x 1536 channels cost
//! tens of thousands of kernel launches per training step on a GPU. The convolution runs as
//! `mamba_ssm::causal_conv1d`: one fused kernel forward (SiLU fused with [`CausalConv1d::forward_silu`])
//! and one backward on the cubecl backends, `k` shifted multiply-adds on the others, one
//! autodiff node with a hand-written backward everywhere.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Tensor, backend::Backend};
use mamba_ssm::SelectiveScanBackend;

/// Depthwise causal convolution, `[batch, d, L] -> [batch, d, L]`.
#[derive(Module, Debug)]
pub struct CausalConv1d<B: Backend> {
    /// `[d, 1, k]`, as in `nn.Conv1d(groups=d)`.
    pub weight: Param<Tensor<B, 3>>,
    /// `[d]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> CausalConv1d<B> {
    /// PyTorch's default `Conv1d` initialisation (fan-in `k`): weight and bias uniform in
    /// `+-1/sqrt(k)`.
    pub fn new(channels: usize, kernel: usize, bias: bool, device: &B::Device) -> Self {
        let bound = 1.0 / (kernel as f64).sqrt();
        let init = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        CausalConv1d {
            weight: init.init([channels, 1, kernel], device),
            bias: bias.then(|| init.init([channels], device)),
        }
    }

    /// Kernel width `k`.
    pub fn kernel_size(&self) -> usize {
        self.weight.dims()[2]
    }
}

impl<B: SelectiveScanBackend> CausalConv1d<B> {
    /// `x`: `[batch, d, L]`.
    ///
    /// # Panics
    /// When `x` is not `[batch, d, L]` with this convolution's `d` channels and positive sizes
    /// (the error of [`mamba_ssm::causal_conv1d`]).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.run(x, false)
    }

    /// `silu(self.forward(x))`, with the SiLU fused into the convolution's kernel.
    pub fn forward_silu(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.run(x, true)
    }

    fn run(&self, x: Tensor<B, 3>, silu: bool) -> Tensor<B, 3> {
        let [channels, _, k] = self.weight.dims();
        // [d, 1, k] -> [d, k]: same layout
        let w = self.weight.val().reshape([channels, k]);
        let bias = self.bias.as_ref().map(|b| b.val());
        mamba_ssm::causal_conv1d(x, w, bias, silu).unwrap_or_else(|e| panic!("CausalConv1d: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::PaddingConfig1d;
    use burn::nn::conv::Conv1dConfig;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type Ad = Autodiff<NdArray>;

    /// Against Burn's own grouped `Conv1d` (an independent implementation): forward and the
    /// gradients of x, weight and bias agree.
    #[test]
    fn matches_burn_grouped_conv1d() {
        let dev = Default::default();
        let (b, d, len, k) = (3, 5, 11, 4);
        let ours = CausalConv1d::<Ad>::new(d, k, true, &dev);
        let mut theirs = Conv1dConfig::new(d, d, k)
            .with_groups(d)
            .with_padding(PaddingConfig1d::Explicit(k - 1, 0))
            .init::<Ad>(&dev);
        theirs.weight = Param::from_tensor(ours.weight.val().detach().require_grad());
        theirs.bias = Some(Param::from_tensor(
            ours.bias.as_ref().unwrap().val().detach().require_grad(),
        ));
        let x = Tensor::<Ad, 3>::random([b, d, len], Distribution::Normal(0.0, 1.0), &dev);
        let x1 = x.clone().detach().require_grad();
        let x2 = x.detach().require_grad();
        let g = Tensor::<Ad, 3>::random([b, d, len], Distribution::Normal(0.0, 1.0), &dev);
        let y1 = ours.forward(x1.clone());
        let y2 = theirs.forward(x2.clone());
        y1.clone()
            .into_data()
            .assert_approx_eq::<f32>(&y2.clone().into_data(), Tolerance::absolute(1e-5));
        let gr1 = (y1 * g.clone()).sum().backward();
        let gr2 = (y2 * g).sum().backward();
        let cmp = |a: TensorData, b: TensorData| {
            a.assert_approx_eq::<f32>(&b, Tolerance::absolute(1e-4));
        };
        cmp(
            x1.grad(&gr1).unwrap().into_data(),
            x2.grad(&gr2).unwrap().into_data(),
        );
        cmp(
            ours.weight.val().grad(&gr1).unwrap().into_data(),
            theirs.weight.val().grad(&gr2).unwrap().into_data(),
        );
        cmp(
            ours.bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&gr1)
                .unwrap()
                .into_data(),
            theirs
                .bias
                .as_ref()
                .unwrap()
                .val()
                .grad(&gr2)
                .unwrap()
                .into_data(),
        );
    }

    /// `forward_silu` is `silu(forward)`, and its gradients are those of Burn's grouped
    /// `Conv1d` followed by `activation::silu`.
    #[test]
    fn forward_silu_matches_burn_grouped_conv1d_then_silu() {
        use burn::tensor::activation::silu;
        let dev = Default::default();
        for (b, d, len, k, bias) in [(3, 5, 11, 4, true), (2, 4, 3, 4, false), (1, 3, 7, 1, true)] {
            let ours = CausalConv1d::<Ad>::new(d, k, bias, &dev);
            let mut theirs = Conv1dConfig::new(d, d, k)
                .with_groups(d)
                .with_bias(bias)
                .with_padding(PaddingConfig1d::Explicit(k - 1, 0))
                .init::<Ad>(&dev);
            theirs.weight = Param::from_tensor(ours.weight.val().detach().require_grad());
            theirs.bias = ours
                .bias
                .as_ref()
                .map(|b| Param::from_tensor(b.val().detach().require_grad()));
            let x = Tensor::<Ad, 3>::random([b, d, len], Distribution::Normal(0.0, 1.0), &dev);
            let x1 = x.clone().detach().require_grad();
            let x2 = x.detach().require_grad();
            let g = Tensor::<Ad, 3>::random([b, d, len], Distribution::Normal(0.0, 1.0), &dev);
            let y1 = ours.forward_silu(x1.clone());
            let y2 = silu(theirs.forward(x2.clone()));
            y1.clone()
                .into_data()
                .assert_approx_eq::<f32>(&y2.clone().into_data(), Tolerance::absolute(1e-5));
            silu(ours.forward(x1.clone()))
                .into_data()
                .assert_approx_eq::<f32>(&y1.clone().into_data(), Tolerance::absolute(1e-6));
            let gr1 = (y1 * g.clone()).sum().backward();
            let gr2 = (y2 * g).sum().backward();
            let cmp = |a: TensorData, b: TensorData| {
                a.assert_approx_eq::<f32>(&b, Tolerance::absolute(1e-4));
            };
            cmp(
                x1.grad(&gr1).unwrap().into_data(),
                x2.grad(&gr2).unwrap().into_data(),
            );
            cmp(
                ours.weight.val().grad(&gr1).unwrap().into_data(),
                theirs.weight.val().grad(&gr2).unwrap().into_data(),
            );
            if let (Some(b1), Some(b2)) = (&ours.bias, &theirs.bias) {
                cmp(
                    b1.val().grad(&gr1).unwrap().into_data(),
                    b2.val().grad(&gr2).unwrap().into_data(),
                );
            }
        }
    }

    /// Causality by hand: a unit impulse at position t reaches t..t+k-1 with the reversed taps.
    #[test]
    fn impulse_response_is_the_reversed_kernel() {
        let dev = Default::default();
        let conv = CausalConv1d::<NdArray> {
            weight: Param::from_tensor(Tensor::from_floats([[[1.0, 2.0, 3.0]]], &dev)),
            bias: None,
        };
        let x = Tensor::<NdArray, 3>::from_floats([[[0.0, 1.0, 0.0, 0.0, 0.0]]], &dev);
        let y = conv.forward(x).into_data();
        y.assert_eq(&TensorData::from([[[0.0f32, 3.0, 2.0, 1.0, 0.0]]]), false);
    }
}
