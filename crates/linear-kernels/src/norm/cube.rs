//! `NormBackend` for Burn's `CubeBackend`: three kernels.
//!
//! - `norm_forward`: one cube per row. Its units stride over the row's columns: the mean (LayerNorm),
//!   then the variance around it, summed in shared memory, then the output. The row is read
//!   three times; the second and third reads hit the cache.
//! - `norm_backward_input`: one cube per row: the two row sums of the input's gradient, then the
//!   gradient.
//! - `norm_backward_params`: one unit per column and block of rows: f32 partial sums of the weight's
//!   and bias's gradients, which a sum over the blocks finishes.

use super::{NormBackend, NormForward, NormGrads, NormKind, cast, prim, tensor};
use burn::tensor::{DType, Tensor};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
use cubecl::{CubeCount, CubeDim, client::ComputeClient};

mod device {
    use cubecl::prelude::*;

    /// The sum of every unit's `v` (all units of the cube call it; `smem` holds `CUBE_DIM`).
    #[cube]
    fn cube_sum(v: f32, smem: &mut SharedMemory<f32>) -> f32 {
        let unit = UNIT_POS as usize;
        smem[unit] = v;
        sync_cube();
        let mut half = CUBE_DIM as usize / 2;
        while half > 0 {
            if unit < half {
                smem[unit] += smem[unit + half];
            }
            sync_cube();
            half /= 2;
        }
        let sum = smem[0];
        // every unit has read the sum before the memory is written again
        sync_cube();
        sum
    }

    /// Row `CUBE_POS` of `x` `[rows, d]`: `y = (x - mean) · rstd · w (+ b)`.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn norm_forward<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<f32>,
        b: &Tensor<f32>,
        y: &mut Tensor<F>,
        mean_out: &mut Tensor<f32>,
        rstd_out: &mut Tensor<f32>,
        epsilon: f32,
        #[comptime] units: usize,
        #[comptime] rms: bool,
        #[comptime] has_bias: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let rows = x.shape(0);
        let d = x.shape(1);
        let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
        if row >= rows {
            // the whole cube: no unit reaches the barriers below
            terminate!();
        }
        let unit = UNIT_POS as usize;
        let base = row * d;
        let inv_d = 1.0f32 / f32::cast_from(d as u32);
        let mut smem = SharedMemory::<f32>::new(units);
        let mut mean = 0.0f32;
        if comptime!(!rms) {
            let mut s = 0.0f32;
            let mut j = unit;
            while j < d {
                s += f32::cast_from(x[base + j]);
                j += units;
            }
            mean = cube_sum(s, &mut smem) * inv_d;
        }
        let mut s2 = 0.0f32;
        let mut j = unit;
        while j < d {
            let c = f32::cast_from(x[base + j]) - mean;
            s2 += c * c;
            j += units;
        }
        let rstd = 1.0f32 / f32::sqrt(cube_sum(s2, &mut smem) * inv_d + epsilon);
        let mut j = unit;
        while j < d {
            let mut v = (f32::cast_from(x[base + j]) - mean) * rstd * w[j];
            if has_bias {
                v += b[j];
            }
            y[base + j] = F::cast_from(v);
            j += units;
        }
        if unit == 0 {
            mean_out[row] = mean;
            rstd_out[row] = rstd;
        }
    }

    /// Row `CUBE_POS`: `dx = rstd · (g - Σg/d - x̂ · Σ(g·x̂)/d)`, `g = dy · w`,
    /// `x̂ = (x - mean) · rstd` (no `Σg` term for RMSNorm).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn norm_backward_input<F: Float>(
        dy: &Tensor<F>,
        x: &Tensor<F>,
        w: &Tensor<f32>,
        mean_in: &Tensor<f32>,
        rstd_in: &Tensor<f32>,
        dx: &mut Tensor<F>,
        #[comptime] units: usize,
        #[comptime] rms: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let rows = x.shape(0);
        let d = x.shape(1);
        let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
        if row >= rows {
            terminate!();
        }
        let unit = UNIT_POS as usize;
        let base = row * d;
        let inv_d = 1.0f32 / f32::cast_from(d as u32);
        let mean = mean_in[row];
        let rstd = rstd_in[row];
        let mut smem = SharedMemory::<f32>::new(units);
        let mut sg = 0.0f32;
        let mut sgx = 0.0f32;
        let mut j = unit;
        while j < d {
            let g = f32::cast_from(dy[base + j]) * w[j];
            let xhat = (f32::cast_from(x[base + j]) - mean) * rstd;
            sg += g;
            sgx += g * xhat;
            j += units;
        }
        let mut mg = 0.0f32;
        if comptime!(!rms) {
            mg = cube_sum(sg, &mut smem) * inv_d;
        }
        let mgx = cube_sum(sgx, &mut smem) * inv_d;
        let mut j = unit;
        while j < d {
            let g = f32::cast_from(dy[base + j]) * w[j];
            let xhat = (f32::cast_from(x[base + j]) - mean) * rstd;
            dx[base + j] = F::cast_from(rstd * (g - mg - xhat * mgx));
            j += units;
        }
    }

    /// Column `CUBE_POS_X · CUBE_DIM + UNIT_POS` over rows `[block · per, (block + 1) · per)`,
    /// `block = CUBE_POS_Y`: `Σ dy · x̂` and `Σ dy` into `dw[block, col]` and `db[block, col]`.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn norm_backward_params<F: Float>(
        dy: &Tensor<F>,
        x: &Tensor<F>,
        mean_in: &Tensor<f32>,
        rstd_in: &Tensor<f32>,
        dw: &mut Tensor<f32>,
        db: &mut Tensor<f32>,
        per: u32,
        #[comptime] has_bias: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let rows = x.shape(0);
        let d = x.shape(1);
        let col = (CUBE_POS_X * CUBE_DIM + UNIT_POS) as usize;
        let block = CUBE_POS_Y as usize;
        if col < d {
            let per = per as usize;
            let start = block * per;
            let mut end = start + per;
            if end > rows {
                end = rows;
            }
            let mut aw = 0.0f32;
            let mut ab = 0.0f32;
            let mut r = start;
            while r < end {
                let g = f32::cast_from(dy[r * d + col]);
                aw += g * (f32::cast_from(x[r * d + col]) - mean_in[r]) * rstd_in[r];
                ab += g;
                r += 1;
            }
            dw[block * d + col] = aw;
            if has_bias {
                db[block * d + col] = ab;
            }
        }
    }
}

type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// Units of the row kernels: a power of two, about four columns each, 32 to 256.
fn row_units(d: usize) -> usize {
    (d.next_power_of_two() / 4).clamp(32, 256)
}

/// Units per cube of the parameter kernel (one column each).
const COLUMN_UNITS: usize = 256;

/// Blocks of rows of the parameter kernel: at most 512, at least 32 rows each.
fn row_blocks(rows: usize) -> usize {
    rows.div_ceil(32).clamp(1, 512)
}

/// One cube per item on a 2-D grid (the first dimension is limited).
fn grid<R: CubeRuntime>(client: &ComputeClient<R>, cubes: usize) -> CubeCount {
    let max_x = client.properties().hardware.max_cube_count.0 as usize;
    let cx = cubes.clamp(1, max_x);
    CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1)
}

fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: Vec<usize>, dtype: DType) -> CubeTensor<R> {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        dtype,
    )
}

/// The kernels' dtypes: f32, f16 and bf16 (f64 runs the tensor operations).
fn kernel_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

fn check_shapes(what: &str, d: usize, weight: usize, bias: Option<usize>) {
    assert_eq!(
        weight, d,
        "{what}: the weight has {weight} elements, the rows {d}"
    );
    if let Some(b) = bias {
        assert_eq!(b, d, "{what}: the bias has {b} elements, the rows {d}");
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> NormBackend
    for Cb<R, F, I, BT>
{
    const NORM_KERNELS: bool = true;

    fn norm_forward(
        input: Tensor<Self, 2>,
        weight: Tensor<Self, 1>,
        bias: Option<Tensor<Self, 1>>,
        epsilon: f64,
        kind: NormKind,
    ) -> NormForward<Self> {
        let dtype = input.dtype();
        let [rows, d] = input.dims();
        check_shapes(
            "norm",
            d,
            weight.dims()[0],
            bias.as_ref().map(|b| b.dims()[0]),
        );
        if !kernel_dtype(dtype) || rows == 0 || d == 0 {
            return super::norm_forward_ops(input, weight, bias, epsilon, kind);
        }
        let has_bias = bias.is_some();
        let x = into_contiguous(prim(input));
        // the weight and bias in f32 whatever their dtype (an absent bias is not read: the
        // weight stands in)
        let w = into_contiguous(prim(cast(weight, DType::F32)));
        let b = bias.map_or_else(|| w.clone(), |b| into_contiguous(prim(cast(b, DType::F32))));
        let y = empty(&x, vec![rows, d], dtype);
        let mean = empty(&x, vec![rows], DType::F32);
        let rstd = empty(&x, vec![rows], DType::F32);
        let client = x.client.clone();
        let units = row_units(d);
        // SAFETY: x and y are contiguous [rows, d], w and b hold d elements, mean and rstd
        // rows; cubes past `rows` exit before any access, and units index columns < d.
        unsafe {
            device::norm_forward::launch_unchecked::<R>(
                &client,
                grid(&client, rows),
                CubeDim::new_1d(units as u32),
                x.into_tensor_arg(),
                w.into_tensor_arg(),
                b.into_tensor_arg(),
                y.clone().into_tensor_arg(),
                mean.clone().into_tensor_arg(),
                rstd.clone().into_tensor_arg(),
                epsilon as f32,
                units,
                kind == NormKind::Rms,
                has_bias,
                dtype.into(),
            );
        }
        NormForward {
            output: tensor(y),
            mean: tensor(mean),
            rstd: tensor(rstd),
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
        let (dtype, wdtype) = (input.dtype(), weight.dtype());
        let [rows, d] = input.dims();
        check_shapes("norm backward", d, weight.dims()[0], None);
        assert_eq!(
            grad.dims(),
            [rows, d],
            "norm backward: the gradient's shape differs from the input's"
        );
        if !kernel_dtype(dtype) || rows == 0 || d == 0 {
            return super::norm_backward_ops(grad, input, weight, mean, rstd, kind, has_bias);
        }
        let dy = into_contiguous(prim(cast(grad, dtype)));
        let x = into_contiguous(prim(input));
        let w = into_contiguous(prim(cast(weight, DType::F32)));
        let mean = into_contiguous(prim(cast(mean, DType::F32)));
        let rstd = into_contiguous(prim(cast(rstd, DType::F32)));
        let dx = empty(&x, vec![rows, d], dtype);
        let blocks = row_blocks(rows);
        let per = rows.div_ceil(blocks);
        let blocks = rows.div_ceil(per);
        let dw = empty(&x, vec![blocks, d], DType::F32);
        // without a bias, the kernel writes no bias sums: a one-element stand-in
        let db = empty(
            &x,
            if has_bias { vec![blocks, d] } else { vec![1] },
            DType::F32,
        );
        let client = x.client.clone();
        let units = row_units(d);
        // SAFETY: dy, x and dx are contiguous [rows, d], w holds d elements, mean and rstd
        // rows; row cubes past `rows` exit first; the parameter kernel's units touch only
        // columns < d of rows < rows, and block · d + column < blocks · d.
        unsafe {
            device::norm_backward_input::launch_unchecked::<R>(
                &client,
                grid(&client, rows),
                CubeDim::new_1d(units as u32),
                dy.clone().into_tensor_arg(),
                x.clone().into_tensor_arg(),
                w.into_tensor_arg(),
                mean.clone().into_tensor_arg(),
                rstd.clone().into_tensor_arg(),
                dx.clone().into_tensor_arg(),
                units,
                kind == NormKind::Rms,
                dtype.into(),
            );
            device::norm_backward_params::launch_unchecked::<R>(
                &client,
                CubeCount::Static(d.div_ceil(COLUMN_UNITS) as u32, blocks as u32, 1),
                CubeDim::new_1d(COLUMN_UNITS as u32),
                dy.into_tensor_arg(),
                x.into_tensor_arg(),
                mean.into_tensor_arg(),
                rstd.into_tensor_arg(),
                dw.clone().into_tensor_arg(),
                db.clone().into_tensor_arg(),
                per as u32,
                has_bias,
                dtype.into(),
            );
        }
        let sum = |t: CubeTensor<R>| -> Tensor<Self, 1> {
            let t: Tensor<Self, 2> = tensor(t);
            cast(t.sum_dim(0).reshape([d]), wdtype)
        };
        NormGrads {
            input: tensor(dx),
            weight: sum(dw),
            bias: has_bias.then(|| sum(db)),
        }
    }
}
