//! `Autodiff<B>`: when the inner backend has kernels, a product is one node of Burn's graph
//! that saves both operands; its backward runs `d_lhs = grad · rhsᵀ` and `d_rhs = lhsᵀ · grad`
//! with the forward's kernel (falling back to Burn's product where the kernel cannot run
//! a transposed operand), each only when that operand is tracked.

use super::{MatmulBackend, MatmulError, MatmulKernel, matmul};
use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{Tensor, TensorPrimitive};

#[derive(Debug)]
struct MatmulOp;

/// Parents, in order: lhs, rhs.
impl<B: MatmulBackend> Backward<B, 2> for MatmulOp {
    type State = (Tensor<B, 2>, Tensor<B, 2>, MatmulKernel);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let grad = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(grad));
        let (lhs, rhs, kernel) = ops.state;
        let [lhs_node, rhs_node] = ops.parents;
        if let Some(node) = lhs_node {
            let d = matmul(grad.clone(), rhs.transpose(), kernel);
            grads.register::<B>(node.id, d.into_primitive().tensor());
        }
        if let Some(node) = rhs_node {
            let d = matmul(lhs.transpose(), grad, kernel);
            grads.register::<B>(node.id, d.into_primitive().tensor());
        }
    }
}

impl<B: MatmulBackend, C: CheckpointStrategy> MatmulBackend for Autodiff<B, C> {
    const MATMUL_KERNELS: bool = B::MATMUL_KERNELS;

    fn try_matmul(
        lhs: Tensor<Self, 2>,
        rhs: Tensor<Self, 2>,
        kernel: MatmulKernel,
    ) -> Result<Tensor<Self, 2>, MatmulError> {
        if !B::MATMUL_KERNELS {
            // Burn's product, differentiated by Burn
            return super::burn_only(lhs, rhs, kernel);
        }
        let node = |t: &Tensor<Self, 2>| t.clone().into_primitive().tensor().node;
        let nodes = [node(&lhs), node(&rhs)];
        let (l, r) = (lhs.inner(), rhs.inner());
        // run first: an error leaves no node behind
        let out = B::try_matmul(l.clone(), r.clone(), kernel)?;
        let out = out.into_primitive().tensor();
        let out = match MatmulOp.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((l, r, kernel), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}
