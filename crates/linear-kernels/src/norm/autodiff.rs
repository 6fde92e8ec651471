//! `Autodiff<B>`: when the inner backend has norm kernels, a normalisation is one node of Burn's
//! graph that saves the input, the weight and the row statistics; its backward runs the inner
//! backend's backward kernels and registers each gradient only where its parent is tracked.

use super::{
    NormBackend, NormForward, NormGrads, NormKind, cast, norm_backward_ops, norm_forward_ops,
};
use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{DType, Tensor, TensorPrimitive};

/// Parents, in order: input, weight, then the bias when `N == 3`.
#[derive(Debug)]
struct NormOp;

/// Input, weight, mean, rstd, kind, and the bias's dtype (its gradient's).
type State<B> = (
    Tensor<B, 2>,
    Tensor<B, 1>,
    Tensor<B, 1>,
    Tensor<B, 1>,
    NormKind,
    Option<DType>,
);

impl<B: NormBackend, const N: usize> Backward<B, N> for NormOp {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
        let (input, weight, mean, rstd, kind, bias_dtype) = ops.state;
        let g = B::norm_backward(grad, input, weight, mean, rstd, kind, N == 3);
        let NormGrads {
            input: d_input,
            weight: d_weight,
            bias: d_bias,
        } = g;
        let mut parents = ops.parents.into_iter();
        if let Some(node) = parents.next().flatten() {
            grads.register::<B>(node.id, d_input.into_primitive().tensor());
        }
        if let Some(node) = parents.next().flatten() {
            grads.register::<B>(node.id, d_weight.into_primitive().tensor());
        }
        if let (Some(node), Some(d), Some(dtype)) = (parents.next().flatten(), d_bias, bias_dtype) {
            grads.register::<B>(node.id, cast(d, dtype).into_primitive().tensor());
        }
    }
}

impl<B: NormBackend, C: CheckpointStrategy> NormBackend for Autodiff<B, C> {
    const NORM_KERNELS: bool = B::NORM_KERNELS;

    fn norm_forward(
        input: Tensor<Self, 2>,
        weight: Tensor<Self, 1>,
        bias: Option<Tensor<Self, 1>>,
        epsilon: f64,
        kind: NormKind,
    ) -> NormForward<Self> {
        if !B::NORM_KERNELS || B::ad_enabled(&input.device()) {
            // Burn's operations, differentiated by Burn (to any order when the inner backend
            // is itself differentiable)
            return norm_forward_ops(input, weight, bias, epsilon, kind);
        }
        let node2 = |t: &Tensor<Self, 2>| t.clone().into_primitive().tensor().node;
        let node1 = |t: &Tensor<Self, 1>| t.clone().into_primitive().tensor().node;
        let (x, w) = (input.clone().inner(), weight.clone().inner());
        let f = B::norm_forward(
            x.clone(),
            w.clone(),
            bias.as_ref().map(|b| b.clone().inner()),
            epsilon,
            kind,
        );
        let bias_dtype = bias.as_ref().map(|b| b.dtype());
        let state = (x, w, f.mean.clone(), f.rstd.clone(), kind, bias_dtype);
        let out = f.output.into_primitive().tensor();
        let out = match &bias {
            Some(b) => {
                let nodes = [node2(&input), node1(&weight), node1(b)];
                match Backward::<B, 3>::prepare::<C>(NormOp, nodes)
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(state, out),
                    OpsKind::UnTracked(prep) => prep.finish(out),
                }
            }
            None => {
                let nodes = [node2(&input), node1(&weight)];
                match Backward::<B, 2>::prepare::<C>(NormOp, nodes)
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(state, out),
                    OpsKind::UnTracked(prep) => prep.finish(out),
                }
            }
        };
        NormForward {
            output: Tensor::from_primitive(TensorPrimitive::Float(out)),
            mean: Tensor::from_inner(f.mean),
            rstd: Tensor::from_inner(f.rstd),
        }
    }

    fn norm_backward(
        grad: Tensor<Self, 2>,
        input: Tensor<Self, 2>,
        weight: Tensor<Self, 1>,
        mean: Tensor<Self, 1>,
        rstd: Tensor<Self, 1>,
        kind: NormKind,
        has_bias: bool,
    ) -> NormGrads<Self> {
        // Burn's operations (first order: `mean` and `rstd` are taken as given)
        norm_backward_ops(grad, input, weight, mean, rstd, kind, has_bias)
    }
}
