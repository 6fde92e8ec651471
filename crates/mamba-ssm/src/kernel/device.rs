//! cubecl kernels, device side. In their own module: `cubecl::prelude::Tensor` would clash
//! with Burn's `Tensor`.

use cubecl::prelude::*;

/// Index of this unit in scan order: with plane ops, (plane, lane) so that shuffles follow it.
#[cube]
fn scan_index(#[comptime] use_plane: bool) -> usize {
    if use_plane {
        (PLANE_POS * PLANE_DIM + UNIT_POS_PLANE) as usize
    } else {
        UNIT_POS as usize
    }
}

/// Inclusive scan over the cube of one (a, b) pair per unit, in scan order, under
/// (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2). Plane path: Kogge-Stone with shuffles inside
/// each plane (its width read at run time), then the plane totals folded through shared
/// memory. `smem_a`, `smem_b`: at least CUBE_DIM / plane width entries.
#[cube]
fn scan_plane(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
) -> (f32, f32) {
    let lane = UNIT_POS_PLANE;
    let width = PLANE_DIM;
    let plane = PLANE_POS as usize;
    let mut sa = a;
    let mut sb = b;
    let mut d = 1u32;
    while d < width {
        // every lane shuffles (uniform control flow); lanes below d keep their value
        let pa = plane_shuffle_up(sa, d);
        let pb = plane_shuffle_up(sb, d);
        if lane >= d {
            sb += sa * pb;
            sa *= pa;
        }
        d *= 2u32;
    }
    if lane == width - 1 {
        smem_a[plane] = sa;
        smem_b[plane] = sb;
    }
    sync_cube();
    // fold the totals of the planes before this one
    let mut pa = 1.0f32;
    let mut pb = 0.0f32;
    for p in 0..plane {
        let qa = smem_a[p];
        pb = qa * pb + smem_b[p];
        pa *= qa;
    }
    sync_cube();
    (pa * sa, sa * pb + sb)
}

/// The same scan through shared memory only (Hillis-Steele), for devices without plane ops.
/// `smem_a`, `smem_b`: at least CUBE_DIM entries.
#[cube]
fn scan_smem(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
) -> (f32, f32) {
    let i = UNIT_POS as usize;
    let n = CUBE_DIM as usize;
    let mut sa = a;
    let mut sb = b;
    smem_a[i] = sa;
    smem_b[i] = sb;
    sync_cube();
    let mut d = 1usize;
    while d < n {
        let mut pa = 1.0f32;
        let mut pb = 0.0f32;
        if i >= d {
            pa = smem_a[i - d];
            pb = smem_b[i - d];
        }
        sync_cube();
        sb += sa * pb;
        sa *= pa;
        smem_a[i] = sa;
        smem_b[i] = sb;
        sync_cube();
        d *= 2usize;
    }
    (sa, sb)
}

#[cube]
fn softplus(x: f32) -> f32 {
    let mut y = x;
    if x <= 20.0 {
        y = f32::log1p(f32::exp(x));
    }
    y
}

#[cube]
fn scan_cube(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
    #[comptime] use_plane: bool,
) -> (f32, f32) {
    if use_plane {
        scan_plane(a, b, smem_a, smem_b)
    } else {
        scan_smem(a, b, smem_a, smem_b)
    }
}

/// Forward selective scan. One cube per (batch, channel); the sequence in chunks of
/// CUBE_DIM x `items` steps, each unit owning `items` consecutive steps. Per state: the
/// unit's steps are composed sequentially, the units' compositions scanned across the cube
/// (plane shuffles + shared memory), the state carried from the previous chunk, and the
/// unit's states recomputed to accumulate C . h. softplus(delta + bias), D and silu(z)
/// fused. Storage dtype `F` (run time), math in f32.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn scan_fwd<F: Float>(
    u: &Tensor<F>,
    delta: &Tensor<F>,
    a: &Tensor<F>,
    bm: &Tensor<F>,
    cm: &Tensor<F>,
    dvec: &Tensor<F>,
    z: &Tensor<F>,
    bias: &Tensor<F>,
    y: &mut Tensor<F>,
    last: &mut Tensor<F>,
    #[comptime] n_state: usize,
    #[comptime] items: usize,
    #[comptime] cube_units: usize,
    #[comptime] smem_len: usize,
    #[comptime] has_d: bool,
    #[comptime] has_z: bool,
    #[comptime] has_bias: bool,
    #[comptime] delta_softplus: bool,
    #[comptime] use_plane: bool,
    #[define(F)] _dtype: StorageType,
) {
    let dim = u.shape(1);
    let len = u.shape(2);
    let groups = bm.shape(1);
    let pos = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if pos >= u.shape(0) * dim {
        terminate!();
    }
    let bi = pos / dim;
    let ch = pos % dim;
    let gi = ch / (dim / groups);
    let tid = scan_index(use_plane);
    let units = CUBE_DIM as usize;

    let mut smem_a = SharedMemory::<f32>::new(smem_len);
    let mut smem_b = SharedMemory::<f32>::new(smem_len);
    let mut smem_h = SharedMemory::<f32>::new(cube_units);
    let mut carry = SharedMemory::<f32>::new(n_state);
    let mut k = tid;
    while k < n_state {
        carry[k] = 0.0f32;
        k += units;
    }
    sync_cube();

    let mut bias_v = 0.0f32;
    if has_bias {
        bias_v = f32::cast_from(bias[ch * bias.stride(0)]);
    }
    let mut d_v = 0.0f32;
    if has_d {
        d_v = f32::cast_from(dvec[ch * dvec.stride(0)]);
    }
    let u_row = bi * u.stride(0) + ch * u.stride(1);
    let d_row = bi * delta.stride(0) + ch * delta.stride(1);
    let bc_row = bi * bm.stride(0) + gi * bm.stride(1);
    let cc_row = bi * cm.stride(0) + gi * cm.stride(1);

    let mut dt = Array::<f32>::new(items);
    let mut uu = Array::<f32>::new(items);
    let mut acc = Array::<f32>::new(items);
    let mut pa = Array::<f32>::new(items);
    let mut pb = Array::<f32>::new(items);

    let chunk = units * items;
    let mut start = 0usize;
    while start < len {
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            let mut dv = 0.0f32; // dt = 0 and u = 0: the identity step
            let mut uv = 0.0f32;
            if t < len {
                uv = f32::cast_from(u[u_row + t * u.stride(2)]);
                dv = f32::cast_from(delta[d_row + t * delta.stride(2)]) + bias_v;
                if delta_softplus {
                    dv = softplus(dv);
                }
            }
            dt[i] = dv;
            uu[i] = uv;
            acc[i] = 0.0f32;
        }
        for n in 0..n_state {
            // cubecl 0.10 has no exp2 intrinsic: exp(dt A) as is (see docs/kernels.md)
            let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
            let h0 = carry[n];
            // this unit's steps, composed
            let mut ga = 1.0f32;
            let mut gb = 0.0f32;
            #[unroll]
            for i in 0..items {
                let t = start + tid * items + i;
                let mut bv = 0.0f32;
                if t < len {
                    bv = f32::cast_from(bm[bc_row + n * bm.stride(2) + t * bm.stride(3)]);
                }
                let ai = f32::exp(dt[i] * a_n);
                let b_i = dt[i] * uu[i] * bv;
                pa[i] = ai;
                pb[i] = b_i;
                gb = ai * gb + b_i;
                ga *= ai;
            }
            let (sa, sb) = scan_cube(ga, gb, &mut smem_a, &mut smem_b, use_plane);
            // state after this unit's last step; the one before its first step is the previous unit's
            smem_h[tid] = sa * h0 + sb;
            sync_cube();
            let mut h = h0;
            if tid > 0 {
                h = smem_h[tid - 1];
            }
            if tid == units - 1 {
                carry[n] = smem_h[tid];
            }
            #[unroll]
            for i in 0..items {
                let t = start + tid * items + i;
                h = pa[i] * h + pb[i];
                if t < len {
                    acc[i] += h * f32::cast_from(cm[cc_row + n * cm.stride(2) + t * cm.stride(3)]);
                }
            }
            sync_cube();
        }
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            if t < len {
                let mut out = acc[i] + d_v * uu[i];
                if has_z {
                    let zv =
                        f32::cast_from(z[bi * z.stride(0) + ch * z.stride(1) + t * z.stride(2)]);
                    out *= zv / (1.0f32 + f32::exp(-zv));
                }
                y[bi * y.stride(0) + ch * y.stride(1) + t * y.stride(2)] = F::cast_from(out);
            }
        }
        start += chunk;
    }
    let mut k = tid;
    while k < n_state {
        last[bi * last.stride(0) + ch * last.stride(1) + k * last.stride(2)] =
            F::cast_from(carry[k]);
        k += units;
    }
}
