//! `SelectiveScanBackend` for Burn's `Fusion<B>` (what `burn::backend::{Wgpu, Cuda}` are with
//! Burn's `fusion` feature): the scan and its backward are registered in the fusion stream as
//! custom operations, executed by the inner backend's kernels (they are not fused with their
//! neighbours). The causal convolution and its backward likewise.

use crate::input::{Dims, ScanGrads, ScanInputs, ScanOutput};
use crate::{KernelConfig, SelectiveScanBackend};
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive, backend::Backend};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::marker::PhantomData;

/// Which optional inputs travel with an operation (inputs are u, delta, A, B, C, then D, z,
/// delta_bias when present).
#[derive(Clone, Copy, Debug)]
struct Present {
    d: bool,
    z: bool,
    bias: bool,
    softplus: bool,
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(p: B::FloatTensorPrimitive) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn split<B: Backend>(inp: ScanInputs<B>) -> (Vec<B::FloatTensorPrimitive>, Present) {
    let present = Present {
        d: inp.d.is_some(),
        z: inp.z.is_some(),
        bias: inp.delta_bias.is_some(),
        softplus: inp.delta_softplus,
    };
    let mut v = vec![
        prim(inp.u),
        prim(inp.delta),
        prim(inp.a),
        prim(inp.b),
        prim(inp.c),
    ];
    v.extend(inp.d.map(prim));
    v.extend(inp.z.map(prim));
    v.extend(inp.delta_bias.map(prim));
    (v, present)
}

fn join<B: Backend>(
    prims: &mut impl Iterator<Item = B::FloatTensorPrimitive>,
    p: Present,
) -> ScanInputs<B> {
    let mut next = || prims.next().expect("operation inputs");
    ScanInputs {
        u: tensor(next()),
        delta: tensor(next()),
        a: tensor(next()),
        b: tensor(next()),
        c: tensor(next()),
        d: p.d.then(|| tensor(next())),
        z: p.z.then(|| tensor(next())),
        delta_bias: p.bias.then(|| tensor(next())),
        delta_softplus: p.softplus,
    }
}

/// The scan (`backward: false`; outputs y and the last state, then with `saved` the states
/// the inner training forward saves for the backward) or its backward (inputs end with dy,
/// then with `saved` those states; outputs the gradients of the inputs, in input order), run
/// by the inner backend.
#[derive(Clone, Debug)]
struct ScanOp<B> {
    desc: CustomOpIr,
    present: Present,
    backward: bool,
    saved: bool,
    config: KernelConfig,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + SelectiveScanBackend> Operation<B::FusionRuntime> for ScanOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let mut prims = self
            .desc
            .inputs
            .iter()
            .map(|t| handles.get_float_tensor::<B>(t))
            .collect::<Vec<_>>()
            .into_iter();
        let inp = join::<B>(&mut prims, self.present);
        let outs: Vec<B::FloatTensorPrimitive> = if self.backward {
            let dy = tensor(prims.next().expect("dy"));
            let saved = self
                .saved
                .then(|| tensor(prims.next().expect("saved states")));
            let g = B::selective_scan_backward_saved_with_config(inp, dy, saved, &self.config);
            let mut v = vec![
                prim(g.du),
                prim(g.ddelta),
                prim(g.da),
                prim(g.db),
                prim(g.dc),
            ];
            v.extend(g.dd.map(prim));
            v.extend(g.dz.map(prim));
            v.extend(g.ddelta_bias.map(prim));
            v
        } else if self.saved {
            let (out, saved) = B::selective_scan_train_with_config(inp, true, &self.config);
            // declared at registration from `selective_scan_saved_len_with_config` (the same
            // settings)
            let saved = saved.expect("the training forward saved nothing after announcing it");
            vec![
                prim(out.y),
                prim(out.last_state.expect("asked for")),
                prim(saved),
            ]
        } else {
            let out = B::selective_scan_with_config(inp, true, &self.config);
            vec![prim(out.y), prim(out.last_state.expect("asked for"))]
        };
        for (ir, t) in self.desc.outputs.iter().zip(outs) {
            handles.register_float_tensor::<B>(&ir.id, t);
        }
    }
}

/// The forward operation; `train`: also the inner backend's saved states, when it saves any.
fn forward<B: FusionBackend + SelectiveScanBackend>(
    inputs: ScanInputs<Fusion<B>>,
    return_last_state: bool,
    train: bool,
    config: &KernelConfig,
) -> (ScanOutput<Fusion<B>>, Option<Tensor<Fusion<B>, 1>>) {
    let [batch, dim, len] = inputs.u.dims();
    let [_, groups, n, _] = inputs.b.dims();
    let dtype = inputs.u.dtype();
    let dims = Dims {
        batch,
        dim,
        len,
        state: n,
        groups,
    };
    let saved_len = if train {
        B::selective_scan_saved_len_with_config(&inputs.u.device(), dims, dtype, config)
    } else {
        None
    };
    let (prims, present) = split(inputs);
    let client = prims[0].client.clone();
    let streams = OperationStreams::with_inputs(prims.iter());
    let out =
        |shape: Shape, dtype: DType| TensorIr::uninit(client.create_empty_handle(), shape, dtype);
    let mut outputs = vec![
        out(Shape::from([batch, dim, len]), dtype),
        out(Shape::from([batch, dim, n]), dtype),
    ];
    if let Some(k) = saved_len {
        outputs.push(out(Shape::from([k]), DType::F32));
    }
    let inputs: Vec<TensorIr> = prims.into_iter().map(|t| t.into_ir()).collect();
    let desc = CustomOpIr::new("mamba_ssm_selective_scan", &inputs, &outputs);
    let op = ScanOp::<B> {
        desc: desc.clone(),
        present,
        backward: false,
        saved: saved_len.is_some(),
        config: config.clone(),
        _b: PhantomData,
    };
    let mut outs = client
        .register(streams, OperationIr::Custom(desc), op)
        .into_iter();
    let y = tensor(outs.next().expect("y"));
    let last = tensor(outs.next().expect("last state"));
    let saved = saved_len.map(|_| tensor(outs.next().expect("saved states")));
    (
        ScanOutput {
            y,
            last_state: return_last_state.then_some(last),
        },
        saved,
    )
}

/// The causal convolution (`backward: false`; inputs x, weight, then bias when present;
/// output y) or its backward (inputs x, weight, bias when present, dy; outputs dx, dweight,
/// then dbias when present), run by the inner backend.
#[derive(Clone, Debug)]
struct ConvOp<B> {
    desc: CustomOpIr,
    has_bias: bool,
    silu: bool,
    backward: bool,
    config: KernelConfig,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + SelectiveScanBackend> Operation<B::FusionRuntime> for ConvOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let mut prims = self
            .desc
            .inputs
            .iter()
            .map(|t| handles.get_float_tensor::<B>(t))
            .collect::<Vec<_>>()
            .into_iter();
        let mut next = || prims.next().expect("operation inputs");
        let x: Tensor<B, 3> = tensor(next());
        let weight: Tensor<B, 2> = tensor(next());
        let bias: Option<Tensor<B, 1>> = self.has_bias.then(|| tensor(next()));
        let outs: Vec<B::FloatTensorPrimitive> = if self.backward {
            let dy = tensor(next());
            let (dx, dw, db) =
                B::causal_conv1d_backward_with_config(x, weight, bias, self.silu, dy, &self.config);
            let mut v = vec![prim(dx), prim(dw)];
            v.extend(db.map(prim));
            v
        } else {
            vec![prim(B::causal_conv1d_with_config(
                x,
                weight,
                bias,
                self.silu,
                &self.config,
            ))]
        };
        for (ir, t) in self.desc.outputs.iter().zip(outs) {
            handles.register_float_tensor::<B>(&ir.id, t);
        }
    }
}

impl<B: FusionBackend + SelectiveScanBackend> SelectiveScanBackend for Fusion<B> {
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
        let shape = Shape::from(x.dims());
        let dtype = x.dtype();
        let has_bias = bias.is_some();
        let mut prims = vec![prim(x), prim(weight)];
        prims.extend(bias.map(prim));
        let client = prims[0].client.clone();
        let streams = OperationStreams::with_inputs(prims.iter());
        let out = TensorIr::uninit(client.create_empty_handle(), shape, dtype);
        let inputs: Vec<TensorIr> = prims.into_iter().map(|t| t.into_ir()).collect();
        let desc = CustomOpIr::new("mamba_ssm_causal_conv1d", &inputs, &[out]);
        let op = ConvOp::<B> {
            desc: desc.clone(),
            has_bias,
            silu,
            backward: false,
            config: config.clone(),
            _b: PhantomData,
        };
        let mut outs = client
            .register(streams, OperationIr::Custom(desc), op)
            .into_iter();
        tensor(outs.next().expect("y"))
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
        let x_shape = Shape::from(x.dims());
        let w_shape = Shape::from(weight.dims());
        // each gradient in its input's dtype (the inner backend casts them back)
        let (dt_x, dt_w) = (x.dtype(), weight.dtype());
        let b_meta = bias.as_ref().map(|b| (Shape::from(b.dims()), b.dtype()));
        let mut prims = vec![prim(x), prim(weight)];
        prims.extend(bias.map(prim));
        prims.push(prim(dy));
        let client = prims[0].client.clone();
        let streams = OperationStreams::with_inputs(prims.iter());
        let out = |shape: Shape, dtype: DType| {
            TensorIr::uninit(client.create_empty_handle(), shape, dtype)
        };
        let mut outputs = vec![out(x_shape, dt_x), out(w_shape, dt_w)];
        let has_bias = b_meta.is_some();
        outputs.extend(b_meta.map(|(s, d)| out(s, d)));
        let inputs: Vec<TensorIr> = prims.into_iter().map(|t| t.into_ir()).collect();
        let desc = CustomOpIr::new("mamba_ssm_causal_conv1d_backward", &inputs, &outputs);
        let op = ConvOp::<B> {
            desc: desc.clone(),
            has_bias,
            silu,
            backward: true,
            config: config.clone(),
            _b: PhantomData,
        };
        let mut outs = client
            .register(streams, OperationIr::Custom(desc), op)
            .into_iter();
        let mut next = || outs.next().expect("gradient");
        let dx = tensor(next());
        let dw = tensor(next());
        let db = has_bias.then(|| tensor(next()));
        (dx, dw, db)
    }

    fn selective_scan(inputs: ScanInputs<Self>, return_last_state: bool) -> ScanOutput<Self> {
        forward(inputs, return_last_state, false, &KernelConfig::default()).0
    }

    fn selective_scan_with_config(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
        config: &KernelConfig,
    ) -> ScanOutput<Self> {
        forward(inputs, return_last_state, false, config).0
    }

    fn selective_scan_train(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
    ) -> (ScanOutput<Self>, Option<Tensor<Self, 1>>) {
        forward(inputs, return_last_state, true, &KernelConfig::default())
    }

    fn selective_scan_train_with_config(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
        config: &KernelConfig,
    ) -> (ScanOutput<Self>, Option<Tensor<Self, 1>>) {
        forward(inputs, return_last_state, true, config)
    }

    fn selective_scan_saved_len(device: &B::Device, dims: Dims, dtype: DType) -> Option<usize> {
        B::selective_scan_saved_len(device, dims, dtype)
    }

    fn selective_scan_saved_len_with_config(
        device: &B::Device,
        dims: Dims,
        dtype: DType,
        config: &KernelConfig,
    ) -> Option<usize> {
        B::selective_scan_saved_len_with_config(device, dims, dtype, config)
    }

    fn selective_scan_backward(inputs: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        Self::selective_scan_backward_saved(inputs, dy, None)
    }

    fn selective_scan_backward_saved(
        inputs: ScanInputs<Self>,
        dy: Tensor<Self, 3>,
        saved: Option<Tensor<Self, 1>>,
    ) -> ScanGrads<Self> {
        Self::selective_scan_backward_saved_with_config(inputs, dy, saved, &KernelConfig::default())
    }

    fn selective_scan_backward_saved_with_config(
        inputs: ScanInputs<Self>,
        dy: Tensor<Self, 3>,
        saved: Option<Tensor<Self, 1>>,
        config: &KernelConfig,
    ) -> ScanGrads<Self> {
        let [batch, dim, len] = inputs.u.dims();
        let [_, groups, n, _] = inputs.b.dims();
        // each gradient in its input's dtype (the inner backend casts them back)
        let dtype: DType = inputs.u.dtype();
        let dt = |t: Option<DType>| t.unwrap_or(dtype);
        let (dt_delta, dt_a, dt_b, dt_c) = (
            inputs.delta.dtype(),
            inputs.a.dtype(),
            inputs.b.dtype(),
            inputs.c.dtype(),
        );
        let dt_d = dt(inputs.d.as_ref().map(|t| t.dtype()));
        let dt_z = dt(inputs.z.as_ref().map(|t| t.dtype()));
        let dt_bias = dt(inputs.delta_bias.as_ref().map(|t| t.dtype()));
        let (mut prims, present) = split(inputs);
        prims.push(prim(dy));
        let has_saved = saved.is_some();
        prims.extend(saved.map(prim));
        let client = prims[0].client.clone();
        let streams = OperationStreams::with_inputs(prims.iter());
        let out = |shape: Shape, dtype: DType| {
            TensorIr::uninit(client.create_empty_handle(), shape, dtype)
        };
        let x = Shape::from([batch, dim, len]);
        let bc = Shape::from([batch, groups, n, len]);
        let mut outputs = vec![
            out(x.clone(), dtype),
            out(x.clone(), dt_delta),
            out(Shape::from([dim, n]), dt_a),
            out(bc.clone(), dt_b),
            out(bc, dt_c),
        ];
        if present.d {
            outputs.push(out(Shape::from([dim]), dt_d));
        }
        if present.z {
            outputs.push(out(x, dt_z));
        }
        if present.bias {
            outputs.push(out(Shape::from([dim]), dt_bias));
        }
        let inputs: Vec<TensorIr> = prims.into_iter().map(|t| t.into_ir()).collect();
        let desc = CustomOpIr::new("mamba_ssm_selective_scan_backward", &inputs, &outputs);
        let op = ScanOp::<B> {
            desc: desc.clone(),
            present,
            backward: true,
            saved: has_saved,
            config: config.clone(),
            _b: PhantomData,
        };
        let mut outs = client
            .register(streams, OperationIr::Custom(desc), op)
            .into_iter();
        let mut next = || outs.next().expect("gradient");
        ScanGrads {
            du: tensor(next()),
            ddelta: tensor(next()),
            da: tensor(next()),
            db: tensor(next()),
            dc: tensor(next()),
            dd: present.d.then(|| tensor(next())),
            dz: present.z.then(|| tensor(next())),
            ddelta_bias: present.bias.then(|| tensor(next())),
        }
    }
}
