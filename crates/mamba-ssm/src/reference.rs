//! The reference selective scan in plain Burn tensor ops, sequential over L: obviously
//! correct, works on any backend (and under `Autodiff`, where Burn differentiates it op by
//! op). The state is `[batch, d_inner, N]`; nothing of size `L x N` is kept.

use crate::input::{ScanInputs, ScanOutput};
use burn::tensor::{Tensor, activation, backend::Backend};

/// softplus with PyTorch's threshold: x above 20 is returned as is.
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let big = x.clone().greater_elem(20.0);
    // clamp before exp so that masked-out lanes stay finite (and their gradient zero)
    let soft = x.clone().clamp_max(20.0).exp().log1p();
    soft.mask_where(big, x)
}

/// dt = softplus?(delta + delta_bias), `[batch, d_inner, L]`.
fn step_sizes<B: Backend>(
    delta: Tensor<B, 3>,
    bias: Option<Tensor<B, 1>>,
    use_softplus: bool,
) -> Tensor<B, 3> {
    let dim = delta.dims()[1];
    let delta = match bias {
        Some(bias) => delta + bias.reshape([1, dim, 1]),
        None => delta,
    };
    if use_softplus { softplus(delta) } else { delta }
}

/// B or C `[batch, G, N, L]` expanded to the channels, `[batch, d_inner, N, L]` (a view).
fn per_channel<B: Backend>(x: Tensor<B, 4>, dim: usize) -> Tensor<B, 4> {
    let [batch, groups, state, len] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([batch, groups, dim / groups, state, len])
        .reshape([batch, dim, state, len])
}

/// Run the scan with tensor ops. Shapes must be valid (see [`ScanInputs::validate`]).
pub fn selective_scan<B: Backend>(inp: ScanInputs<B>, return_last_state: bool) -> ScanOutput<B> {
    let [batch, dim, len] = inp.u.dims();
    let state = inp.b.dims()[2];
    let delta = step_sizes(inp.delta, inp.delta_bias, inp.delta_softplus);
    let (bx, cx) = (per_channel(inp.b, dim), per_channel(inp.c, dim));
    let a = inp.a.unsqueeze_dim::<3>(0); // [1, dim, N]
    let device = inp.u.device();
    let mut h = Tensor::<B, 3>::zeros([batch, dim, state], &device);
    let mut ys = Vec::with_capacity(len);
    for t in 0..len {
        let dt = delta.clone().slice([0..batch, 0..dim, t..t + 1]); // [b, d, 1]
        let ut = inp.u.clone().slice([0..batch, 0..dim, t..t + 1]);
        let bt: Tensor<B, 3> = bx
            .clone()
            .slice([0..batch, 0..dim, 0..state, t..t + 1])
            .squeeze_dim(3);
        let ct: Tensor<B, 3> = cx
            .clone()
            .slice([0..batch, 0..dim, 0..state, t..t + 1])
            .squeeze_dim(3);
        h = (dt.clone() * a.clone()).exp() * h + (dt * ut) * bt;
        ys.push((h.clone() * ct).sum_dim(2)); // [b, d, 1]
    }
    let mut y = Tensor::cat(ys, 2);
    if let Some(d) = inp.d {
        y = y + inp.u * d.reshape([1, dim, 1]);
    }
    if let Some(z) = inp.z {
        y = y * activation::silu(z);
    }
    ScanOutput {
        y,
        last_state: return_last_state.then_some(h),
    }
}

/// The op-by-op style of burn-mamba / mamba-minimal: exp(delta A) and delta B u materialised
/// as `[batch, L, d_inner, N]` tensors, then a loop over L of slice, multiply-add and a
/// state x C product. Same semantics as [`selective_scan`] (every option supported); kept
/// as the baseline of the `scan_cpu` benchmark, as it is what a Burn model without a
/// custom kernel runs.
pub fn selective_scan_op_by_op<B: Backend>(inp: ScanInputs<B>) -> Tensor<B, 3> {
    let [batch, dim, len] = inp.u.dims();
    let n = inp.b.dims()[2];
    let delta = step_sizes(inp.delta, inp.delta_bias, inp.delta_softplus);
    let delta = delta.swap_dims(1, 2); // [b, l, d]
    let u = inp.u.clone().swap_dims(1, 2); // [b, l, d]
    // [b, g, n, l] -> [b, l, d, n]
    let (bm, cm) = (
        per_channel(inp.b, dim).permute([0, 3, 1, 2]),
        per_channel(inp.c, dim).permute([0, 3, 1, 2]),
    );
    let delta_a = (delta.clone().unsqueeze_dim::<4>(3)
        * inp.a.unsqueeze_dim::<3>(0).unsqueeze_dim::<4>(0))
    .exp(); // [b,l,d,n]
    let delta_b_u = (delta * u).unsqueeze_dim::<4>(3) * bm; // [b,l,d,n]
    let mut x = Tensor::<B, 3>::zeros([batch, dim, n], &delta_a.device());
    let mut ys = Vec::with_capacity(len);
    for i in 0..len {
        let da: Tensor<B, 3> = delta_a
            .clone()
            .slice([0..batch, i..i + 1, 0..dim, 0..n])
            .squeeze_dim(1);
        let dbu: Tensor<B, 3> = delta_b_u
            .clone()
            .slice([0..batch, i..i + 1, 0..dim, 0..n])
            .squeeze_dim(1);
        x = da * x + dbu;
        let ci: Tensor<B, 3> = cm
            .clone()
            .slice([0..batch, i..i + 1, 0..dim, 0..n])
            .squeeze_dim(1); // [b, d, n]
        ys.push((x.clone() * ci).sum_dim(2)); // [b, d, 1]
    }
    let mut y = Tensor::cat(ys, 2);
    if let Some(d) = inp.d {
        y = y + inp.u * d.reshape([1, dim, 1]);
    }
    if let Some(z) = inp.z {
        y = y * activation::silu(z);
    }
    y
}
