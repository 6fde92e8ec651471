//! `Autodiff<B>`: the scan is one node of Burn's graph whose backward calls the inner
//! backend's hand-written backward (`SelectiveScanBackend::selective_scan_backward`), instead
//! of differentiating a loop of tensor ops. The causal convolution likewise
//! (`SelectiveScanBackend::causal_conv1d_backward`).

use crate::input::{ScanGrads, ScanInputs, ScanOutput};
use crate::{KernelConfig, SelectiveScanBackend};
use burn::backend::Autodiff;
use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{Tensor, TensorPrimitive};

#[derive(Debug)]
struct SelectiveScanOp;

/// Parents, in order: u, delta, A, B, C, D, z, delta_bias.
const PARENTS: usize = 8;

impl<B: SelectiveScanBackend> Backward<B, PARENTS> for SelectiveScanOp {
    /// The inputs, what the inner backend's training forward saved for its backward, and
    /// the kernel settings of both.
    type State = (ScanInputs<B>, Option<Tensor<B, 1>>, KernelConfig);

    fn backward(
        self,
        ops: Ops<Self::State, PARENTS>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<B>(&ops.node);
        let dy = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(dy));
        let ScanGrads {
            du,
            ddelta,
            da,
            db,
            dc,
            dd,
            dz,
            ddelta_bias,
        } = B::selective_scan_backward_saved_with_config(
            ops.state.0,
            dy,
            ops.state.1,
            &ops.state.2,
        );
        let outgoing: [Option<TensorPrimitive<B>>; PARENTS] = [
            Some(du.into_primitive()),
            Some(ddelta.into_primitive()),
            Some(da.into_primitive()),
            Some(db.into_primitive()),
            Some(dc.into_primitive()),
            dd.map(Tensor::into_primitive),
            dz.map(Tensor::into_primitive),
            ddelta_bias.map(Tensor::into_primitive),
        ];
        for (node, g) in ops.parents.into_iter().zip(outgoing) {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<B>(node.id, g.tensor());
            }
        }
    }
}

/// The same inputs on the inner backend (untracked).
fn inner_inputs<B: SelectiveScanBackend, C: CheckpointStrategy>(
    inp: ScanInputs<Autodiff<B, C>>,
) -> ScanInputs<B> {
    ScanInputs {
        u: inp.u.inner(),
        delta: inp.delta.inner(),
        a: inp.a.inner(),
        b: inp.b.inner(),
        c: inp.c.inner(),
        d: inp.d.map(Tensor::inner),
        z: inp.z.map(Tensor::inner),
        delta_bias: inp.delta_bias.map(Tensor::inner),
        delta_softplus: inp.delta_softplus,
    }
}

#[derive(Debug)]
struct CausalConvOp;

/// The convolution's inputs on the inner backend, the SiLU flag and the kernel settings.
type ConvState<B> = (
    Tensor<B, 3>,
    Tensor<B, 2>,
    Option<Tensor<B, 1>>,
    bool,
    KernelConfig,
);

/// Parents, in order: x, weight, bias.
impl<B: SelectiveScanBackend> Backward<B, 3> for CausalConvOp {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let dy = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(dy));
        let (x, weight, bias, silu, config) = ops.state;
        let (dx, dw, db) =
            B::causal_conv1d_backward_with_config(x, weight, bias, silu, dy, &config);
        let outgoing: [Option<TensorPrimitive<B>>; 3] = [
            Some(dx.into_primitive()),
            Some(dw.into_primitive()),
            db.map(Tensor::into_primitive),
        ];
        for (node, g) in ops.parents.into_iter().zip(outgoing) {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<B>(node.id, g.tensor());
            }
        }
    }
}

impl<B: SelectiveScanBackend, C: CheckpointStrategy> SelectiveScanBackend for Autodiff<B, C> {
    fn causal_conv1d(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
    ) -> Tensor<Self, 3> {
        Self::causal_conv1d_with_config(x, weight, bias, silu, &KernelConfig::default())
    }

    fn causal_conv1d_with_config(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        config: &KernelConfig,
    ) -> Tensor<Self, 3> {
        let device = x.device();
        let nodes = [
            x.clone().into_primitive().tensor().node,
            weight.clone().into_primitive().tensor().node,
            bias.as_ref().map_or_else(
                // an untracked leaf stands in for an absent bias
                || {
                    Tensor::<Self, 1>::zeros([1], &device)
                        .into_primitive()
                        .tensor()
                        .node
                },
                |b| b.clone().into_primitive().tensor().node,
            ),
        ];
        let (x, weight, bias) = (x.inner(), weight.inner(), bias.map(Tensor::inner));
        let y = match CausalConvOp.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::causal_conv1d_with_config(
                    x.clone(),
                    weight.clone(),
                    bias.clone(),
                    silu,
                    config,
                );
                prep.finish(
                    (x, weight, bias, silu, config.clone()),
                    y.into_primitive().tensor(),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(
                B::causal_conv1d_with_config(x, weight, bias, silu, config)
                    .into_primitive()
                    .tensor(),
            ),
        };
        Tensor::from_primitive(TensorPrimitive::Float(y))
    }

    fn causal_conv1d_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        dy: Tensor<Self, 3>,
    ) -> (Tensor<Self, 3>, Tensor<Self, 2>, Option<Tensor<Self, 1>>) {
        Self::causal_conv1d_backward_with_config(
            x,
            weight,
            bias,
            silu,
            dy,
            &KernelConfig::default(),
        )
    }

    fn causal_conv1d_backward_with_config(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        dy: Tensor<Self, 3>,
        config: &KernelConfig,
    ) -> (Tensor<Self, 3>, Tensor<Self, 2>, Option<Tensor<Self, 1>>) {
        // no double backward: run the inner backend's backward untracked
        let (dx, dw, db) = B::causal_conv1d_backward_with_config(
            x.inner(),
            weight.inner(),
            bias.map(Tensor::inner),
            silu,
            dy.inner(),
            config,
        );
        (
            Tensor::from_inner(dx),
            Tensor::from_inner(dw),
            db.map(Tensor::from_inner),
        )
    }

    fn selective_scan(inp: ScanInputs<Self>, return_last_state: bool) -> ScanOutput<Self> {
        Self::selective_scan_with_config(inp, return_last_state, &KernelConfig::default())
    }

    fn selective_scan_with_config(
        inp: ScanInputs<Self>,
        return_last_state: bool,
        config: &KernelConfig,
    ) -> ScanOutput<Self> {
        let device = inp.u.device();
        // an untracked leaf stands in for absent optional inputs
        let dummy = || {
            Tensor::<Self, 1>::zeros([1], &device)
                .into_primitive()
                .tensor()
                .node
        };
        let node3 = |t: &Tensor<Self, 3>| t.clone().into_primitive().tensor().node;
        let nodes = [
            node3(&inp.u),
            node3(&inp.delta),
            inp.a.clone().into_primitive().tensor().node,
            inp.b.clone().into_primitive().tensor().node,
            inp.c.clone().into_primitive().tensor().node,
            inp.d
                .as_ref()
                .map_or_else(dummy, |d| d.clone().into_primitive().tensor().node),
            inp.z.as_ref().map_or_else(dummy, node3),
            inp.delta_bias
                .as_ref()
                .map_or_else(dummy, |b| b.clone().into_primitive().tensor().node),
        ];
        let inner = inner_inputs(inp);
        // tracked: the training forward, whose saved states spare the backward a recompute
        let (y, last_state) = match SelectiveScanOp
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, saved) =
                    B::selective_scan_train_with_config(inner.clone(), return_last_state, config);
                let y = out.y.into_primitive().tensor();
                (
                    prep.finish((inner, saved, config.clone()), y),
                    out.last_state,
                )
            }
            OpsKind::UnTracked(prep) => {
                let out = B::selective_scan_with_config(inner, return_last_state, config);
                (prep.finish(out.y.into_primitive().tensor()), out.last_state)
            }
        };
        ScanOutput {
            y: Tensor::from_primitive(TensorPrimitive::Float(y)),
            last_state: last_state.map(<Tensor<Self, 3>>::from_inner),
        }
    }

    fn selective_scan_backward(inp: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        // no double backward: run the inner backend's backward untracked
        let inner = inner_inputs(inp);
        outer_grads(B::selective_scan_backward(inner, dy.inner()))
    }

    fn selective_scan_backward_saved_with_config(
        inp: ScanInputs<Self>,
        dy: Tensor<Self, 3>,
        saved: Option<Tensor<Self, 1>>,
        config: &KernelConfig,
    ) -> ScanGrads<Self> {
        // no double backward: run the inner backend's backward untracked
        let inner = inner_inputs(inp);
        outer_grads(B::selective_scan_backward_saved_with_config(
            inner,
            dy.inner(),
            saved.map(Tensor::inner),
            config,
        ))
    }
}

/// The inner backend's gradients as untracked tensors of `Autodiff`.
fn outer_grads<B: SelectiveScanBackend, C: CheckpointStrategy>(
    g: ScanGrads<B>,
) -> ScanGrads<Autodiff<B, C>> {
    ScanGrads {
        du: Tensor::from_inner(g.du),
        ddelta: Tensor::from_inner(g.ddelta),
        da: Tensor::from_inner(g.da),
        db: Tensor::from_inner(g.db),
        dc: Tensor::from_inner(g.dc),
        dd: g.dd.map(Tensor::from_inner),
        dz: g.dz.map(Tensor::from_inner),
        ddelta_bias: g.ddelta_bias.map(Tensor::from_inner),
    }
}
