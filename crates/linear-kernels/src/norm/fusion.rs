//! `NormBackend` for Burn's `Fusion<B>`: the forward and the backward are custom operations of
//! the fusion stream that the inner backend runs (its kernels on `CubeBackend`).

use super::{NormBackend, NormForward, NormGrads, NormKind, cast, prim, stats_dtype, tensor};
use burn::tensor::{DType, Shape, Tensor};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::marker::PhantomData;

#[derive(Clone, Debug)]
enum Pass {
    /// Inputs: x, weight, then the bias if any. Outputs: y, mean, rstd.
    Forward { epsilon: f64, has_bias: bool },
    /// Inputs: dy, x, weight, mean, rstd. Outputs: dx, dweight, then dbias if any.
    Backward { has_bias: bool },
}

#[derive(Clone, Debug)]
struct NormOp<B> {
    desc: CustomOpIr,
    kind: NormKind,
    pass: Pass,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + NormBackend> Operation<B::FusionRuntime> for NormOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let inputs = &self.desc.inputs;
        let get2 = |handles: &mut HandleContainer<_>, i: usize| -> Tensor<B, 2> {
            tensor(handles.get_float_tensor::<B>(&inputs[i]))
        };
        let get1 = |handles: &mut HandleContainer<_>, i: usize| -> Tensor<B, 1> {
            tensor(handles.get_float_tensor::<B>(&inputs[i]))
        };
        let outs: Vec<B::FloatTensorPrimitive> = match self.pass {
            Pass::Forward { epsilon, has_bias } => {
                let x = get2(handles, 0);
                let w = get1(handles, 1);
                let b = has_bias.then(|| get1(handles, 2));
                let f = B::norm_forward(x, w, b, epsilon, self.kind);
                vec![prim(f.output), prim(f.mean), prim(f.rstd)]
            }
            Pass::Backward { has_bias } => {
                let (dy, x) = (get2(handles, 0), get2(handles, 1));
                let w = get1(handles, 2);
                let (mean, rstd) = (get1(handles, 3), get1(handles, 4));
                let g = B::norm_backward(dy, x, w, mean, rstd, self.kind, has_bias);
                [prim(g.input), prim(g.weight)]
                    .into_iter()
                    .chain(g.bias.map(prim))
                    .collect()
            }
        };
        assert_eq!(
            outs.len(),
            self.desc.outputs.len(),
            "norm: the inner backend's outputs differ from those registered"
        );
        for (out, t) in self.desc.outputs.iter().zip(outs) {
            handles.register_float_tensor::<B>(&out.id, t);
        }
    }
}

/// Registers `op`'s custom operation over `inputs` with outputs of these shapes and dtypes.
fn register<B: FusionBackend + NormBackend>(
    name: &'static str,
    inputs: Vec<burn::tensor::ops::FloatTensor<Fusion<B>>>,
    outputs: &[(Shape, DType)],
    kind: NormKind,
    pass: Pass,
) -> Vec<burn::tensor::ops::FloatTensor<Fusion<B>>> {
    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(&inputs);
    let outputs: Vec<_> = outputs
        .iter()
        .map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape.clone(), *dtype))
        .collect();
    let inputs: Vec<_> = inputs.into_iter().map(|t| t.into_ir()).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    let op = NormOp::<B> {
        desc: desc.clone(),
        kind,
        pass,
        _b: PhantomData,
    };
    client.register(streams, OperationIr::Custom(desc), op)
}

impl<B: FusionBackend + NormBackend> NormBackend for Fusion<B> {
    const NORM_KERNELS: bool = B::NORM_KERNELS;

    fn norm_forward(
        input: Tensor<Self, 2>,
        weight: Tensor<Self, 1>,
        bias: Option<Tensor<Self, 1>>,
        epsilon: f64,
        kind: NormKind,
    ) -> NormForward<Self> {
        if !B::NORM_KERNELS {
            return super::norm_forward_ops(input, weight, bias, epsilon, kind);
        }
        let dtype = input.dtype();
        let s = stats_dtype(dtype);
        let [rows, d] = input.dims();
        let has_bias = bias.is_some();
        let inputs: Vec<_> = [prim(input), prim(weight)]
            .into_iter()
            .chain(bias.map(prim))
            .collect();
        let outputs = [
            (Shape::new([rows, d]), dtype),
            (Shape::new([rows]), s),
            (Shape::new([rows]), s),
        ];
        let pass = Pass::Forward { epsilon, has_bias };
        let mut out =
            register::<B>("linear_kernels_norm", inputs, &outputs, kind, pass).into_iter();
        let mut next = || out.next().expect("an output per registered one");
        NormForward {
            output: tensor(next()),
            mean: tensor(next()),
            rstd: tensor(next()),
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
        if !B::NORM_KERNELS {
            return super::norm_backward_ops(grad, input, weight, mean, rstd, kind, has_bias);
        }
        let (dtype, wdtype) = (input.dtype(), weight.dtype());
        let [rows, d] = input.dims();
        let inputs = vec![
            prim(cast(grad, dtype)),
            prim(input),
            prim(weight),
            prim(mean),
            prim(rstd),
        ];
        let mut outputs = vec![(Shape::new([rows, d]), dtype), (Shape::new([d]), wdtype)];
        if has_bias {
            outputs.push((Shape::new([d]), wdtype));
        }
        let pass = Pass::Backward { has_bias };
        let mut out =
            register::<B>("linear_kernels_norm_backward", inputs, &outputs, kind, pass).into_iter();
        let mut next = || out.next().expect("an output per registered one");
        let (input, weight) = (tensor(next()), tensor(next()));
        NormGrads {
            input,
            weight,
            bias: has_bias.then(|| tensor(next())),
        }
    }
}
