//! The depthwise causal convolution (SiLU fused) as cubecl kernels for `CubeBackend`: one
//! forward pass and one backward pass. Design: `docs/lab/kernel-notes.md` ("fused causal conv1d").
//!
//! - Forward: one unit per output element, consecutive units along L (coalesced loads and
//!   stores; the k overlapping reads of neighbouring units hit the cache); f32 accumulation,
//!   SiLU applied before the store in `x`'s storage type.
//! - Backward: one or several cubes per channel (enough that each unit takes at least 16
//!   positions, at most 64), their units striding over the channel's batch x L positions. A unit recomputes the pre-activation at its position and the k - 1 following
//!   ones (from a register window of 2k - 1 inputs), forms g = dy silu'(p) there, writes
//!   dx[t] = sum_q w[k-1-q] g[t+q] and accumulates g[t] x[t-(k-1)+j] (dweight) and g[t]
//!   (dbias) in registers; the cube sums those k + 1 values in shared memory (a tree, no
//!   atomics) and its first unit writes them; the cubes of a channel are then added by one
//!   `sum_dim` (nothing with one cube).
//!
//! The weight and bias are read as f32 (cast on the host when stored otherwise; they are
//! tiny); dweight and dbias are produced in f32 and cast back to the weight's and bias's
//! dtype. `x` and `dy` may have any strides; one whose L axis is strided (a transposed view)
//! is first copied to unit stride along L, like the scan's inputs, so that consecutive units
//! read consecutive addresses.

use super::config::KernelConfig;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
use cubecl::{CubeCount, CubeDim};

mod device {
    use cubecl::prelude::*;

    #[cube]
    fn sigmoid(p: f32) -> f32 {
        1.0f32 / (1.0f32 + f32::exp(-p))
    }

    /// `y[b, c, t] = act(bias[c] + sum_j w[c, j] x[b, c, t - (k - 1) + j])`, one unit per
    /// element of `y` (contiguous `[batch, d, L]`), cubes on a 2-D grid. `unroll`: the tap
    /// loop unrolled (narrow kernels).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn conv_fwd<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<f32>,
        bias: &Tensor<f32>,
        y: &mut Tensor<F>,
        #[comptime] k: usize,
        #[comptime] has_bias: bool,
        #[comptime] silu: bool,
        #[comptime] unroll: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let dim = x.shape(1);
        let len = x.shape(2);
        let total = x.shape(0) * dim * len;
        let cube = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
        let pos = cube * CUBE_DIM as usize + UNIT_POS as usize;
        if pos < total {
            let t = pos % len;
            let row = pos / len;
            let c = row % dim;
            let b = row / dim;
            let x_row = b * x.stride(0) + c * x.stride(1);
            let w_row = c * w.stride(0);
            let km1 = comptime!(k - 1);
            let mut acc = 0.0f32;
            if has_bias {
                acc = bias[c * bias.stride(0)];
            }
            #[unroll(unroll)]
            for j in 0..k {
                // source position t - (k - 1) + j, zero before 0
                let s = t + j;
                if s >= km1 {
                    acc += w[w_row + j * w.stride(1)]
                        * f32::cast_from(x[x_row + (s - km1) * x.stride(2)]);
                }
            }
            if silu {
                acc *= sigmoid(acc);
            }
            y[pos] = F::cast_from(acc);
        }
    }

    /// g = dy silu'(p) at `t + q` (`dy` read at `at`), the pre-activation p recomputed from
    /// the window `xs` (`xs[m]` = x at `t - (k - 1) + m`); `dy` alone without SiLU.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn grad_pre<F: Float>(
        dy: &Tensor<F>,
        at: usize,
        xs: &Array<f32>,
        wv: &Array<f32>,
        bv: f32,
        q: usize,
        #[comptime] k: usize,
        #[comptime] silu: bool,
        #[comptime] unroll: bool,
    ) -> f32 {
        let mut g = f32::cast_from(dy[at]);
        if silu {
            let mut p = bv;
            #[unroll(unroll)]
            for j in 0..k {
                p += wv[j] * xs[q + j];
            }
            let s = sigmoid(p);
            g *= s * (1.0f32 + p * (1.0f32 - s));
        }
        g
    }

    /// The backward, `splits` cubes of `cube` units (a power of two) per channel, cube
    /// `s * d + c` taking every `splits`-th run of `cube` positions of channel c: `dx`
    /// (contiguous like `y`), and each cube's sums `dw[s, c, :]` (`[splits, d, k]`) and
    /// `db[s, c]` (`[splits, d]`), contiguous f32.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn conv_bwd<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<f32>,
        bias: &Tensor<f32>,
        dy: &Tensor<F>,
        dx: &mut Tensor<F>,
        dw: &mut Tensor<f32>,
        db: &mut Tensor<f32>,
        #[comptime] k: usize,
        #[comptime] cube: usize,
        #[comptime] has_bias: bool,
        #[comptime] silu: bool,
        #[comptime] unroll: bool,
        splits: u32,
        #[define(F)] _dtype: StorageType,
    ) {
        let dim = x.shape(1);
        let len = x.shape(2);
        let splits = splits as usize;
        let pos = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
        if pos >= dim * splits {
            // the whole cube: no unit reaches the barriers below
            terminate!();
        }
        let c = pos % dim;
        let split = pos / dim;
        let n = x.shape(0) * len;
        let km1 = comptime!(k - 1);
        let win = comptime!(2 * k - 1);
        let unit = UNIT_POS as usize;

        let mut wv = Array::<f32>::new(k);
        #[unroll(unroll)]
        for j in 0..k {
            wv[j] = w[c * w.stride(0) + j * w.stride(1)];
        }
        let mut bv = 0.0f32;
        if has_bias {
            bv = bias[c * bias.stride(0)];
        }
        let mut acc_w = Array::<f32>::new(k);
        #[unroll(unroll)]
        for j in 0..k {
            acc_w[j] = 0.0f32;
        }
        let mut acc_b = 0.0f32;
        // xs[m] = x[t - (k - 1) + m], m < 2k - 1 (zero outside [0, L))
        let mut xs = Array::<f32>::new(win);

        let mut i = split * cube + unit;
        let step = splits * cube;
        while i < n {
            let b = i / len;
            let t = i % len;
            let x_row = b * x.stride(0) + c * x.stride(1);
            let dy_row = b * dy.stride(0) + c * dy.stride(1);
            #[unroll(unroll)]
            for m in 0..win {
                let s = t + m;
                let mut v = 0.0f32;
                if s >= km1 && s - km1 < len {
                    v = f32::cast_from(x[x_row + (s - km1) * x.stride(2)]);
                }
                xs[m] = v;
            }
            // this position: dweight, dbias and the last tap of dx
            let g0 = grad_pre(
                dy,
                dy_row + t * dy.stride(2),
                &xs,
                &wv,
                bv,
                0,
                k,
                silu,
                unroll,
            );
            acc_b += g0;
            #[unroll(unroll)]
            for j in 0..k {
                acc_w[j] += g0 * xs[j];
            }
            let mut dxv = wv[km1] * g0;
            // dx[t] += w[k - 1 - q] g[t + q], q >= 1 (g zero past the end)
            #[unroll(unroll)]
            for q in 1..k {
                if t + q < len {
                    let g = grad_pre(
                        dy,
                        dy_row + (t + q) * dy.stride(2),
                        &xs,
                        &wv,
                        bv,
                        q,
                        k,
                        silu,
                        unroll,
                    );
                    dxv += wv[km1 - q] * g;
                }
            }
            dx[(b * dim + c) * len + t] = F::cast_from(dxv);
            i += step;
        }

        // per-channel sums of the k + 1 accumulators: a tree in shared memory
        let mut red = SharedMemory::<f32>::new(comptime!(cube * (k + 1)));
        #[unroll(unroll)]
        for j in 0..k {
            red[j * cube + unit] = acc_w[j];
        }
        red[k * cube + unit] = acc_b;
        sync_cube();
        // CUBE_DIM == cube, read at run time (a comptime value cannot be updated)
        let mut half = CUBE_DIM as usize / 2;
        while half > 0 {
            if unit < half {
                #[unroll(unroll)]
                for j in 0..comptime!(k + 1) {
                    let a = j * cube + unit;
                    red[a] += red[a + half];
                }
            }
            sync_cube();
            half /= 2;
        }
        if unit == 0 {
            #[unroll(unroll)]
            for j in 0..k {
                dw[pos * k + j] = red[j * cube];
            }
            db[pos] = red[k * cube];
        }
    }
}

type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;

fn prim<B: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<B, D>,
) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn tensor<B: burn::tensor::backend::Backend, const D: usize>(
    p: B::FloatTensorPrimitive,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn cast_to<B: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<B, D>,
    dtype: DType,
) -> Tensor<B, D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// A fresh contiguous output (the kernels write it at linear positions): uninitialised, or
/// NaN-filled under [`KernelConfig::conv_poison`]. Not `empty_device_dtype`: on CUDA cubecl may
/// give a fresh tensor pitched rows (the last axis's stride padded for alignment), which
/// linear writes would miss (every L not a multiple of the pitch).
fn output<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    like: &CubeTensor<R>,
    shape: [usize; D],
    dtype: DType,
    kc: &KernelConfig,
) -> CubeTensor<R> {
    if kc.conv_poison {
        burn_cubecl::kernel::into_contiguous(prim(Tensor::<Cb<R, F, I, BT>, D>::full(
            shape,
            f32::NAN,
            (&like.device, dtype),
        )))
    } else {
        empty_device_contiguous_dtype(
            like.client.clone(),
            like.device.clone(),
            shape.into(),
            dtype,
        )
    }
}

/// A 2-D grid of `cubes` cubes within the device's per-axis limit.
fn grid<R: CubeRuntime>(client: &cubecl::client::ComputeClient<R>, cubes: usize) -> CubeCount {
    let max_x = client.properties().hardware.max_cube_count.0 as usize;
    let cx = cubes.clamp(1, max_x);
    CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1)
}

fn prev_pow2(x: usize) -> usize {
    if x == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - x.leading_zeros())
    }
}

/// Widest kernel whose tap loops are unrolled (the backward's are k^2 long).
const UNROLL_MAX_K: usize = 16;

/// Backward: the fewest positions (of batch x L) per unit before a channel's work is split
/// between several cubes, and the most cubes per channel.
const BWD_MIN_POSITIONS: usize = 16;
const BWD_MAX_SPLITS: usize = 64;

/// Units per cube of the forward.
const FWD_UNITS: usize = 256;
/// Largest cube of the backward (units of one channel).
const BWD_UNITS: usize = 256;

pub(crate) fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: Tensor<Cb<R, F, I, BT>, 3>,
    weight: Tensor<Cb<R, F, I, BT>, 2>,
    bias: Option<Tensor<Cb<R, F, I, BT>, 1>>,
    silu: bool,
    kc: &KernelConfig,
) -> Tensor<Cb<R, F, I, BT>, 3> {
    let [batch, d, len] = x.dims();
    let k = weight.dims()[1];
    let has_bias = bias.is_some();
    let w: CubeTensor<R> = prim(cast_to(weight, DType::F32));
    let x: CubeTensor<R> = super::unit_stride_l(prim(x));
    // an absent bias is replaced by the weight (never read: `has_bias` is off)
    let b: CubeTensor<R> = bias.map_or_else(|| w.clone(), |b| prim(cast_to(b, DType::F32)));
    let dtype = x.dtype;
    let client = x.client.clone();
    let y = output::<R, F, I, BT, 3>(&x, [batch, d, len], dtype, kc);
    let total = batch * d * len;
    // SAFETY: the kernel guards its one write by `pos < batch d L` and reads x only at
    // positions in [0, L) of existing (batch, channel) rows, w at [c, j < k] and bias at c < d.
    unsafe {
        device::conv_fwd::launch_unchecked::<R>(
            &client,
            grid(&client, total.div_ceil(FWD_UNITS)),
            CubeDim::new_1d(FWD_UNITS as u32),
            x.into_tensor_arg(),
            w.into_tensor_arg(),
            b.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            k,
            has_bias,
            silu,
            k <= UNROLL_MAX_K,
            dtype.into(),
        );
    }
    tensor(y)
}

#[allow(clippy::type_complexity)]
pub(crate) fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: Tensor<Cb<R, F, I, BT>, 3>,
    weight: Tensor<Cb<R, F, I, BT>, 2>,
    bias: Option<Tensor<Cb<R, F, I, BT>, 1>>,
    silu: bool,
    dy: Tensor<Cb<R, F, I, BT>, 3>,
    kc: &KernelConfig,
) -> (
    Tensor<Cb<R, F, I, BT>, 3>,
    Tensor<Cb<R, F, I, BT>, 2>,
    Option<Tensor<Cb<R, F, I, BT>, 1>>,
) {
    let [batch, d, len] = x.dims();
    let k = weight.dims()[1];
    let dtype = x.dtype();
    let (w_dtype, b_dtype) = (weight.dtype(), bias.as_ref().map(|b| b.dtype()));
    let has_bias = bias.is_some();
    let w: CubeTensor<R> = prim(cast_to(weight, DType::F32));
    let b: CubeTensor<R> = bias.map_or_else(|| w.clone(), |b| prim(cast_to(b, DType::F32)));
    let dy: CubeTensor<R> = super::unit_stride_l(prim(cast_to(dy, dtype)));
    let x: CubeTensor<R> = super::unit_stride_l(prim(x));
    let client = x.client.clone();
    let dx = output::<R, F, I, BT, 3>(&x, [batch, d, len], dtype, kc);
    // the cube's shared memory holds (k + 1) sums per unit: fewer units for wide kernels
    let smem = client
        .properties()
        .hardware
        .max_shared_memory_size
        .min(48 * 1024);
    let fit = prev_pow2(smem / (4 * (k + 1))).max(1);
    let units = (batch * len)
        .next_power_of_two()
        .clamp(32, BWD_UNITS)
        .min(fit);
    // cubes per channel: each unit takes at least BWD_MIN_POSITIONS positions
    let n = batch * len;
    let splits = match kc.conv_backward_splits.map(|s| s.min(BWD_MAX_SPLITS)) {
        None | Some(0) => (n / (units * BWD_MIN_POSITIONS)).clamp(1, BWD_MAX_SPLITS),
        Some(s) => s,
    };
    let dw = output::<R, F, I, BT, 3>(&x, [splits, d, k], DType::F32, kc);
    let db = output::<R, F, I, BT, 2>(&x, [splits, d], DType::F32, kc);
    // SAFETY: cubes past d x splits exit before any access; reads stay within [0, L) of
    // existing rows (masked), w at [c, j < k], bias at c; each unit writes dx at its own
    // positions and unit 0 its cube's dw and db entries (fresh contiguous tensors).
    unsafe {
        device::conv_bwd::launch_unchecked::<R>(
            &client,
            grid(&client, d * splits),
            CubeDim::new_1d(units as u32),
            x.into_tensor_arg(),
            w.into_tensor_arg(),
            b.into_tensor_arg(),
            dy.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            dw.clone().into_tensor_arg(),
            db.clone().into_tensor_arg(),
            k,
            units,
            has_bias,
            silu,
            k <= UNROLL_MAX_K,
            splits as u32,
            dtype.into(),
        );
    }
    // the cubes' sums of a channel (one cube: a free reshape)
    let dw: Tensor<Cb<R, F, I, BT>, 3> = tensor(dw);
    let db: Tensor<Cb<R, F, I, BT>, 2> = tensor(db);
    let (dw, db) = if splits == 1 {
        (dw.reshape([d, k]), db.reshape([d]))
    } else {
        (dw.sum_dim(0).reshape([d, k]), db.sum_dim(0).reshape([d]))
    };
    (
        tensor(dx),
        cast_to(dw, w_dtype),
        b_dtype.map(|bt| cast_to(db, bt)),
    )
}
