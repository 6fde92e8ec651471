//! `FlashAttentionBackend` for Burn's `Fusion<B>` (what `burn::backend::{Wgpu, Cuda}` are with
//! Burn's `fusion` feature): the forward and the backward are registered in the fusion stream as
//! custom operations that the inner backend's kernels execute (they are not fused with their
//! neighbours).

use super::{FlashAttentionBackend, FlashConfig};
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive, backend::Backend};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::marker::PhantomData;

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(p: B::FloatTensorPrimitive) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// The forward (inputs q, k, v, then keep when masked; outputs o, lse) or the backward (inputs
/// q, k, v, o, lse, dO, then keep; outputs dq, dk, dv), run by the inner backend.
#[derive(Clone, Debug)]
struct FlashOp<B> {
    desc: CustomOpIr,
    has_mask: bool,
    causal: bool,
    backward: bool,
    config: FlashConfig,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + FlashAttentionBackend> Operation<B::FusionRuntime> for FlashOp<B> {
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
        let (q, k, v): (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) =
            (tensor(next()), tensor(next()), tensor(next()));
        let outs: Vec<B::FloatTensorPrimitive> = if self.backward {
            let o: Tensor<B, 4> = tensor(next());
            let lse: Tensor<B, 3> = tensor(next());
            let d_o: Tensor<B, 4> = tensor(next());
            let keep = self.has_mask.then(|| tensor(next()));
            let (dq, dk, dv) =
                B::flash_attention_backward(q, k, v, o, lse, d_o, keep, self.causal, &self.config);
            vec![prim(dq), prim(dk), prim(dv)]
        } else {
            let keep = self.has_mask.then(|| tensor(next()));
            let (o, lse) = B::flash_attention_train(q, k, v, keep, self.causal, &self.config);
            vec![prim(o), prim(lse)]
        };
        for (ir, t) in self.desc.outputs.iter().zip(outs) {
            handles.register_float_tensor::<B>(&ir.id, t);
        }
    }
}

/// Registers one operation and returns its outputs.
fn register<B: FusionBackend + FlashAttentionBackend>(
    name: &'static str,
    prims: Vec<FusionTensor<B::FusionRuntime>>,
    outputs: &[(Shape, DType)],
    op: impl FnOnce(CustomOpIr) -> FlashOp<B>,
) -> Vec<FusionTensor<B::FusionRuntime>> {
    let client = prims[0].client.clone();
    let streams = OperationStreams::with_inputs(prims.iter());
    let outputs: Vec<TensorIr> = outputs
        .iter()
        .map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape.clone(), *dtype))
        .collect();
    let inputs: Vec<TensorIr> = prims.into_iter().map(|t| t.into_ir()).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    client.register(streams, OperationIr::Custom(desc.clone()), op(desc))
}

impl<B: FusionBackend + FlashAttentionBackend> FlashAttentionBackend for Fusion<B> {
    const FLASH_KERNELS: bool = B::FLASH_KERNELS;

    fn flash_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> Tensor<Self, 4> {
        Self::flash_attention_train(q, k, v, keep, causal, config).0
    }

    fn flash_attention_train(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        let [batch, heads, len_q, d] = q.dims();
        let dtype = q.dtype();
        let has_mask = keep.is_some();
        let mut prims = vec![prim(q), prim(k), prim(v)];
        prims.extend(keep.map(prim));
        let outputs = [
            (Shape::from([batch, heads, len_q, d]), dtype),
            (Shape::from([batch, heads, len_q]), DType::F32),
        ];
        let mut outs = register::<B>("flash_attention", prims, &outputs, |desc| FlashOp {
            desc,
            has_mask,
            causal,
            backward: false,
            config: config.clone(),
            _b: PhantomData,
        })
        .into_iter();
        (
            tensor(outs.next().expect("o")),
            tensor(outs.next().expect("lse")),
        )
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
        let shapes = [
            (q.dims(), q.dtype()),
            (k.dims(), k.dtype()),
            (v.dims(), v.dtype()),
        ];
        let has_mask = keep.is_some();
        let mut prims = vec![prim(q), prim(k), prim(v), prim(o), prim(lse), prim(d_o)];
        prims.extend(keep.map(prim));
        let outputs = shapes.map(|(s, t)| (Shape::from(s), t));
        let mut outs = register::<B>("flash_attention_backward", prims, &outputs, |desc| {
            FlashOp {
                desc,
                has_mask,
                causal,
                backward: true,
                config: config.clone(),
                _b: PhantomData,
            }
        })
        .into_iter();
        (
            tensor(outs.next().expect("dq")),
            tensor(outs.next().expect("dk")),
            tensor(outs.next().expect("dv")),
        )
    }
}
