//! `Autodiff<B>`: when the inner backend has flash kernels, attention is one node of Burn's
//! graph that saves `q`, `k`, `v`, the output and the row log-sum-exp, and whose backward is the
//! inner backend's [`FlashAttentionBackend::flash_attention_backward`]. Without kernels Burn's
//! autodiff differentiates the tensor-op formulation.

use super::{FlashAttentionBackend, FlashConfig, tensor_ops};
use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{Tensor, TensorPrimitive};

#[derive(Debug)]
struct FlashAttentionOp;

/// What the backward needs: q, k, v, the output, the log-sum-exp, the keep mask, the causal
/// flag and the kernel settings, all on the inner backend.
type State<B> = (
    [Tensor<B, 4>; 4],
    Tensor<B, 3>,
    Option<Tensor<B, 2>>,
    bool,
    FlashConfig,
);

/// Parents, in order: q, k, v.
impl<B: FlashAttentionBackend> Backward<B, 3> for FlashAttentionOp {
    type State = State<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_o = grads.consume::<B>(&ops.node);
        let d_o = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(d_o));
        let ([q, k, v, o], lse, keep, causal, config) = ops.state;
        let (dq, dk, dv) = B::flash_attention_backward(q, k, v, o, lse, d_o, keep, causal, &config);
        for (node, g) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g.into_primitive().tensor());
            }
        }
    }
}

/// The graph node over the inner backend's kernels: the output, and with `want_lse` the row
/// log-sum-exp (not differentiable: no double backward). One forward either way.
fn node_forward<B: FlashAttentionBackend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<B, C>, 4>,
    k: Tensor<Autodiff<B, C>, 4>,
    v: Tensor<Autodiff<B, C>, 4>,
    keep: Option<Tensor<Autodiff<B, C>, 2>>,
    causal: bool,
    config: &FlashConfig,
    want_lse: bool,
) -> (Tensor<Autodiff<B, C>, 4>, Option<Tensor<B, 3>>) {
    let node = |t: &Tensor<Autodiff<B, C>, 4>| t.clone().into_primitive().tensor().node;
    let nodes = [node(&q), node(&k), node(&v)];
    // the mask is not differentiated
    let keep = keep.map(Tensor::inner);
    let (q, k, v) = (q.inner(), k.inner(), v.inner());
    let (o, lse) = match FlashAttentionOp
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (o, lse) = B::flash_attention_train(
                q.clone(),
                k.clone(),
                v.clone(),
                keep.clone(),
                causal,
                config,
            );
            let saved = want_lse.then(|| lse.clone());
            let state = ([q, k, v, o.clone()], lse, keep, causal, config.clone());
            (prep.finish(state, o.into_primitive().tensor()), saved)
        }
        OpsKind::UnTracked(prep) => {
            let (o, lse) = if want_lse {
                let (o, lse) = B::flash_attention_train(q, k, v, keep, causal, config);
                (o, Some(lse))
            } else {
                (B::flash_attention(q, k, v, keep, causal, config), None)
            };
            (prep.finish(o.into_primitive().tensor()), lse)
        }
    };
    (Tensor::from_primitive(TensorPrimitive::Float(o)), lse)
}

impl<B: FlashAttentionBackend, C: CheckpointStrategy> FlashAttentionBackend for Autodiff<B, C> {
    const FLASH_KERNELS: bool = B::FLASH_KERNELS;

    fn flash_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> Tensor<Self, 4> {
        if !B::FLASH_KERNELS {
            return tensor_ops::forward(q, k, v, keep, causal).0;
        }
        node_forward(q, k, v, keep, causal, config, false).0
    }

    fn flash_attention_train(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        if !B::FLASH_KERNELS {
            // Burn's autodiff over the tensor ops (the log-sum-exp is a by-product)
            return tensor_ops::forward(q, k, v, keep, causal);
        }
        let (o, lse) = node_forward(q, k, v, keep, causal, config, true);
        (o, Tensor::from_inner(lse.expect("asked for")))
    }

    fn flash_attention_backward(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        o: Tensor<Self, 4>,
        lse: Tensor<Self, 3>,
        d_o: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> (Tensor<Self, 4>, Tensor<Self, 4>, Tensor<Self, 4>) {
        // no double backward: the inner backend's backward, untracked
        let (dq, dk, dv) = B::flash_attention_backward(
            q.inner(),
            k.inner(),
            v.inner(),
            o.inner(),
            lse.inner(),
            d_o.inner(),
            keep.map(Tensor::inner),
            causal,
            config,
        );
        (
            Tensor::from_inner(dq),
            Tensor::from_inner(dk),
            Tensor::from_inner(dv),
        )
    }
}
