//! `MatmulBackend` for Burn's `Fusion<B>`: a product with a named kernel is a custom operation
//! of the fusion stream that the inner backend runs (it is not fused with its neighbours).
//! Operations run after they are registered, so a kernel that cannot run a product falls back
//! to Burn's product there instead of returning an error.

use super::{MatmulBackend, MatmulError, MatmulKernel, matmul};
use burn::tensor::{Shape, Tensor, TensorPrimitive, backend::Backend};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::marker::PhantomData;

fn prim<B: Backend>(t: Tensor<B, 2>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

#[derive(Clone, Debug)]
struct MatmulOp<B> {
    desc: CustomOpIr,
    kernel: MatmulKernel,
    _b: PhantomData<B>,
}

impl<B: FusionBackend + MatmulBackend> Operation<B::FusionRuntime> for MatmulOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let (lhs, rhs) = (&self.desc.inputs[0], &self.desc.inputs[1]);
        let lhs = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(
            handles.get_float_tensor::<B>(lhs),
        ));
        let rhs = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(
            handles.get_float_tensor::<B>(rhs),
        ));
        let out = matmul(lhs, rhs, self.kernel);
        handles.register_float_tensor::<B>(&self.desc.outputs[0].id, prim(out));
    }
}

impl<B: FusionBackend + MatmulBackend> MatmulBackend for Fusion<B> {
    const MATMUL_KERNELS: bool = B::MATMUL_KERNELS;

    fn try_matmul(
        lhs: Tensor<Self, 2>,
        rhs: Tensor<Self, 2>,
        kernel: MatmulKernel,
    ) -> Result<Tensor<Self, 2>, MatmulError> {
        if kernel == MatmulKernel::Burn || !B::MATMUL_KERNELS {
            return super::burn_only(lhs, rhs, kernel);
        }
        let ([m, _], [_, n], dtype) = (lhs.dims(), rhs.dims(), lhs.dtype());
        let (lhs, rhs) = (prim(lhs), prim(rhs));
        let client = lhs.client.clone();
        let streams = OperationStreams::with_inputs([&lhs, &rhs]);
        let out = TensorIr::uninit(client.create_empty_handle(), Shape::from([m, n]), dtype);
        let inputs = [lhs.into_ir(), rhs.into_ir()];
        let desc = CustomOpIr::new("linear_kernels_matmul", &inputs, &[out]);
        let op = MatmulOp::<B> {
            desc: desc.clone(),
            kernel,
            _b: PhantomData,
        };
        let out = client
            .register(streams, OperationIr::Custom(desc), op)
            .pop()
            .expect("one output");
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}
