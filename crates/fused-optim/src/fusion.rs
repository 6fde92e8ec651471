//! `AdamWBackend` for Burn's `Fusion<B>`: the update is a custom operation of the fusion stream
//! that the inner backend runs (its kernel on `CubeBackend`).

use super::{
    AdamWBackend, AdamWStep, AdamWUpdate, cast_to as cast, keeps_master, prim, state_dtype, tensor,
};
use burn::tensor::{DType, Tensor};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::marker::PhantomData;

#[derive(Clone, Debug)]
struct AdamWOp<B> {
    desc: CustomOpIr,
    step: AdamWStep,
    /// Inputs: param, grad, moment 1, moment 2, then the master copy if given.
    has_master: bool,
    /// Outputs: param, moment 1, moment 2, then the master copy if the parameter is not f32.
    _b: PhantomData<B>,
}

impl<B: FusionBackend + AdamWBackend> Operation<B::FusionRuntime> for AdamWOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let get = |handles: &mut HandleContainer<_>, i: usize| {
            tensor::<B>(handles.get_float_tensor::<B>(&self.desc.inputs[i]))
        };
        let (p, g) = (get(handles, 0), get(handles, 1));
        let (m, v) = (get(handles, 2), get(handles, 3));
        let master = self.has_master.then(|| get(handles, 4));
        let u = B::adamw_step(p, g, master, m, v, &self.step);
        let outs: Vec<_> = [u.param, u.moment_1, u.moment_2]
            .into_iter()
            .chain(u.master)
            .collect();
        assert_eq!(
            outs.len(),
            self.desc.outputs.len(),
            "AdamW: the inner backend's outputs differ from those registered"
        );
        for (out, t) in self.desc.outputs.iter().zip(outs) {
            handles.register_float_tensor::<B>(&out.id, prim(t));
        }
    }
}

impl<B: FusionBackend + AdamWBackend> AdamWBackend for Fusion<B> {
    fn adamw_step(
        param: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        master: Option<Tensor<Self, 1>>,
        moment_1: Tensor<Self, 1>,
        moment_2: Tensor<Self, 1>,
        step: &AdamWStep,
    ) -> AdamWUpdate<Self> {
        let dtype = param.dtype();
        let grad = cast(grad, dtype);
        let state = state_dtype(dtype);
        let (moment_1, moment_2) = (cast(moment_1, state), cast(moment_2, state));
        let has_master = master.is_some();
        let master = master.map(|t| cast(t, DType::F32));
        let shape = param.shape();
        let inputs: Vec<_> = [param, grad, moment_1, moment_2]
            .into_iter()
            .chain(master)
            .map(prim)
            .collect();
        let client = inputs[0].client.clone();
        let streams = OperationStreams::with_inputs(&inputs);
        let write_master = keeps_master(dtype);
        let mut out_dtypes = vec![dtype, state, state];
        if write_master {
            out_dtypes.push(DType::F32);
        }
        let outputs: Vec<_> = out_dtypes
            .into_iter()
            .map(|d| TensorIr::uninit(client.create_empty_handle(), shape.clone(), d))
            .collect();
        let inputs: Vec<_> = inputs.into_iter().map(|t| t.into_ir()).collect();
        let desc = CustomOpIr::new("fused_optim_adamw", &inputs, &outputs);
        let op = AdamWOp::<B> {
            desc: desc.clone(),
            step: *step,
            has_master,
            _b: PhantomData,
        };
        let mut out = client
            .register(streams, OperationIr::Custom(desc), op)
            .into_iter()
            .map(tensor::<Self>);
        let mut next = || out.next().expect("an output per registered one");
        let (param, moment_1, moment_2) = (next(), next(), next());
        let master = write_master.then(next);
        AdamWUpdate {
            param,
            master,
            moment_1,
            moment_2,
        }
    }
}
