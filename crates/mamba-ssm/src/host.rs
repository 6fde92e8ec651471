//! Running the fast CPU scan on any backend's tensors: read them to host `f32` buffers, scan
//! with [`crate::cpu`], write the results back with the inputs' dtype and device. On NdArray
//! this is the fast path (the copies are memcpy-cheap next to the scan); on a GPU backend it
//! is a correct but slow fallback.

use crate::cpu::{self, CpuScanInputs, ScanDims};
use crate::input::{ScanGrads, ScanInputs, ScanOutput};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use std::borrow::Cow;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

fn back<B: Backend, const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    like: &Tensor<B, 3>,
) -> Tensor<B, D> {
    let dtype = like.dtype();
    Tensor::from_data(
        TensorData::new(v, shape).convert_dtype(dtype),
        (&like.device(), dtype),
    )
}

/// Host copies (or borrows) of the inputs, as `f32`.
pub(crate) struct HostInputs<'a> {
    pub dims: ScanDims,
    pub u: Cow<'a, [f32]>,
    pub delta: Cow<'a, [f32]>,
    pub a: Cow<'a, [f32]>,
    pub b: Cow<'a, [f32]>,
    pub c: Cow<'a, [f32]>,
    pub d: Option<Cow<'a, [f32]>>,
    pub z: Option<Cow<'a, [f32]>>,
    pub bias: Option<Cow<'a, [f32]>>,
    pub softplus: bool,
}

pub(crate) fn dims_of<B: Backend>(inp: &ScanInputs<B>) -> ScanDims {
    let [batch, dim, len] = inp.u.dims();
    let [_, groups, state, _] = inp.b.dims();
    ScanDims {
        batch,
        dim,
        len,
        state,
        groups,
    }
}

impl HostInputs<'static> {
    fn new<B: Backend>(inp: ScanInputs<B>) -> Self {
        let own = |t: Vec<f32>| Cow::Owned(t);
        HostInputs {
            dims: dims_of(&inp),
            u: own(host(inp.u)),
            delta: own(host(inp.delta)),
            a: own(host(inp.a)),
            b: own(host(inp.b)),
            c: own(host(inp.c)),
            d: inp.d.map(|t| own(host(t))),
            z: inp.z.map(|t| own(host(t))),
            bias: inp.delta_bias.map(|t| own(host(t))),
            softplus: inp.delta_softplus,
        }
    }
}

impl HostInputs<'_> {
    pub(crate) fn view(&self) -> CpuScanInputs<'_> {
        CpuScanInputs {
            u: &self.u,
            delta: &self.delta,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            delta_bias: self.bias.as_deref(),
            delta_softplus: self.softplus,
        }
    }
}

/// Forward through the CPU scan. Shapes must be valid.
pub fn selective_scan<B: Backend>(inp: ScanInputs<B>, return_last_state: bool) -> ScanOutput<B> {
    let like = inp.u.clone();
    forward_host(&HostInputs::new(inp), return_last_state, &like)
}

/// Backward through the CPU scan (gradients given dL/dy). Shapes must be valid.
pub fn selective_scan_backward<B: Backend>(inp: ScanInputs<B>, dy: Tensor<B, 3>) -> ScanGrads<B> {
    let like = inp.u.clone();
    backward_host(&HostInputs::new(inp), &host(dy), &like)
}

/// The forward on host inputs; outputs take `like`'s dtype and device.
pub(crate) fn forward_host<B: Backend>(
    h: &HostInputs<'_>,
    return_last_state: bool,
    like: &Tensor<B, 3>,
) -> ScanOutput<B> {
    let ScanDims {
        batch,
        dim,
        len,
        state,
        ..
    } = h.dims;
    let (y, last) = cpu::forward(&h.dims, &h.view(), return_last_state);
    ScanOutput {
        y: back(y, [batch, dim, len], like),
        last_state: last.map(|l| back(l, [batch, dim, state], like)),
    }
}

/// The backward on host inputs; gradients take `like`'s dtype and device.
pub(crate) fn backward_host<B: Backend>(
    h: &HostInputs<'_>,
    dy: &[f32],
    like: &Tensor<B, 3>,
) -> ScanGrads<B> {
    let ScanDims {
        batch,
        dim,
        len,
        state,
        groups,
    } = h.dims;
    let g = cpu::backward(&h.dims, &h.view(), dy);
    let bc = [batch, groups, state, len];
    ScanGrads {
        du: back(g.du, [batch, dim, len], like),
        ddelta: back(g.ddelta, [batch, dim, len], like),
        da: back(g.da, [dim, state], like),
        db: back(g.db, bc, like),
        dc: back(g.dc, bc, like),
        dd: g.dd.map(|v| back(v, [dim], like)),
        dz: g.dz.map(|v| back(v, [batch, dim, len], like)),
        ddelta_bias: g.ddelta_bias.map(|v| back(v, [dim], like)),
    }
}
