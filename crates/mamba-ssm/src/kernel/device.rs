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

/// Loads `items` steps of a unit: dt = softplus?(delta + bias) and u (0 past the end, which
/// makes the step the identity).
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_steps<F: Float>(
    u: &Tensor<F>,
    delta: &Tensor<F>,
    u_row: usize,
    d_row: usize,
    first: usize,
    len: usize,
    bias_v: f32,
    dt: &mut Array<f32>,
    uu: &mut Array<f32>,
    #[comptime] items: usize,
    #[comptime] delta_softplus: bool,
) {
    #[unroll]
    for i in 0..items {
        let t = first + i;
        let mut dv = 0.0f32;
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
    }
}

/// The steps of a unit for state n: pa = exp(dt A_n), pb = dt u B_n; returns their
/// composition (first step first).
#[cube]
#[allow(clippy::too_many_arguments)]
fn compose_steps<F: Float>(
    bm: &Tensor<F>,
    bc_row: usize,
    n: usize,
    first: usize,
    len: usize,
    a_n: f32,
    dt: &Array<f32>,
    uu: &Array<f32>,
    pa: &mut Array<f32>,
    pb: &mut Array<f32>,
    #[comptime] items: usize,
) -> (f32, f32) {
    let mut ga = 1.0f32;
    let mut gb = 0.0f32;
    #[unroll]
    for i in 0..items {
        let t = first + i;
        let mut bv = 0.0f32;
        if t < len {
            bv = f32::cast_from(bm[bc_row + n * bm.stride(2) + t * bm.stride(3)]);
        }
        let ai = f32::exp(dt[i] * a_n);
        pa[i] = ai;
        pb[i] = dt[i] * uu[i] * bv;
        gb = ai * gb + pb[i];
        ga *= ai;
    }
    (ga, gb)
}

/// Forward selective scan. One cube per (batch, channel); the sequence in chunks of
/// CUBE_DIM x `items` steps, each unit owning `items` consecutive steps. Per state: the
/// unit's steps are composed sequentially, the units' compositions scanned across the cube
/// (plane shuffles + shared memory), the state carried from the previous chunk, and the
/// unit's states recomputed to accumulate C . h. softplus(delta + bias), D and silu(z)
/// fused. Storage dtype `F` (run time), math in f32.
#[cube(launch_unchecked)]
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
        load_steps(
            u,
            delta,
            u_row,
            d_row,
            start + tid * items,
            len,
            bias_v,
            &mut dt,
            &mut uu,
            items,
            delta_softplus,
        );
        #[unroll]
        for i in 0..items {
            acc[i] = 0.0f32;
        }
        for n in 0..n_state {
            // cubecl 0.10 has no exp2 intrinsic: exp(dt A) as is (see docs/kernels.md)
            let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
            let h0 = carry[n];
            // this unit's steps, composed
            let (ga, gb) = compose_steps(
                bm,
                bc_row,
                n,
                start + tid * items,
                len,
                a_n,
                &dt,
                &uu,
                &mut pa,
                &mut pb,
                items,
            );
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

/// Suffix version of [`scan_plane`]: for unit s, the composition of units last, ..., s (the
/// later ones applied first), for the reverse scan of the backward pass.
#[cube]
fn scan_plane_rev(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
) -> (f32, f32) {
    let lane = UNIT_POS_PLANE;
    let width = PLANE_DIM;
    let plane = PLANE_POS as usize;
    let planes = (CUBE_DIM / PLANE_DIM) as usize;
    let mut sa = a;
    let mut sb = b;
    let mut d = 1u32;
    while d < width {
        let pa = plane_shuffle_down(sa, d);
        let pb = plane_shuffle_down(sb, d);
        if lane + d < width {
            sb += sa * pb;
            sa *= pa;
        }
        d *= 2u32;
    }
    if lane == 0 {
        smem_a[plane] = sa;
        smem_b[plane] = sb;
    }
    sync_cube();
    let mut pa = 1.0f32;
    let mut pb = 0.0f32;
    let mut p = planes;
    while p > plane + 1 {
        p -= 1;
        let qa = smem_a[p];
        pb = qa * pb + smem_b[p];
        pa *= qa;
    }
    sync_cube();
    (pa * sa, sa * pb + sb)
}

/// Suffix version of [`scan_smem`].
#[cube]
fn scan_smem_rev(
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
        if i + d < n {
            pa = smem_a[i + d];
            pb = smem_b[i + d];
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
fn scan_cube_rev(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
    #[comptime] use_plane: bool,
) -> (f32, f32) {
    if use_plane {
        scan_plane_rev(a, b, smem_a, smem_b)
    } else {
        scan_smem_rev(a, b, smem_a, smem_b)
    }
}

/// Backward selective scan, same cube layout as [`scan_fwd`]. A forward sweep saves the
/// state at every chunk start (`ckpt`, `[rows, chunks, N]` f32 scratch); then, chunk by
/// chunk from the end and per state, the chunk's states are recomputed (forward cube scan)
/// and the gradient carried backwards, mu_t = exp(dt_t A) lambda_t with
/// lambda_t = g_t C_t + mu_{t+1}, by a reverse cube scan. du, d delta and dz are written per
/// step; dA, dB, dC, dD and d delta_bias are accumulated with f32 atomic adds (dB and dC over
/// the channels of a group, the rest over the batch).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn scan_bwd<F: Float>(
    u: &Tensor<F>,
    delta: &Tensor<F>,
    a: &Tensor<F>,
    bm: &Tensor<F>,
    cm: &Tensor<F>,
    dvec: &Tensor<F>,
    z: &Tensor<F>,
    bias: &Tensor<F>,
    dy: &Tensor<F>,
    du: &mut Tensor<F>,
    ddelta: &mut Tensor<F>,
    dz: &mut Tensor<F>,
    da: &mut Tensor<Atomic<f32>>,
    db: &mut Tensor<Atomic<f32>>,
    dc: &mut Tensor<Atomic<f32>>,
    dd: &mut Tensor<Atomic<f32>>,
    dbias: &mut Tensor<Atomic<f32>>,
    ckpt: &mut Tensor<f32>,
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
    let chunk = units * items;
    let chunks = len.div_ceil(chunk);

    let mut smem_a = SharedMemory::<f32>::new(smem_len);
    let mut smem_b = SharedMemory::<f32>::new(smem_len);
    let mut smem_h = SharedMemory::<f32>::new(cube_units);
    let mut carry = SharedMemory::<f32>::new(n_state);

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
    let ck_row = pos * chunks * n_state;

    let mut dt = Array::<f32>::new(items);
    let mut uu = Array::<f32>::new(items);
    let mut pa = Array::<f32>::new(items);
    let mut pb = Array::<f32>::new(items);

    // pass 1: the state at every chunk start
    let mut k = tid;
    while k < n_state {
        carry[k] = 0.0f32;
        k += units;
    }
    sync_cube();
    for c in 0..chunks {
        let start = c * chunk;
        let mut k = tid;
        while k < n_state {
            ckpt[ck_row + c * n_state + k] = carry[k];
            k += units;
        }
        load_steps(
            u,
            delta,
            u_row,
            d_row,
            start + tid * items,
            len,
            bias_v,
            &mut dt,
            &mut uu,
            items,
            delta_softplus,
        );
        for n in 0..n_state {
            let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
            let h0 = carry[n];
            let (ga, gb) = compose_steps(
                bm,
                bc_row,
                n,
                start + tid * items,
                len,
                a_n,
                &dt,
                &uu,
                &mut pa,
                &mut pb,
                items,
            );
            let (sa, sb) = scan_cube(ga, gb, &mut smem_a, &mut smem_b, use_plane);
            smem_h[tid] = sa * h0 + sb;
            sync_cube();
            if tid == units - 1 {
                carry[n] = smem_h[tid];
            }
            sync_cube();
        }
    }

    // pass 2: chunks from the end
    let mut gy = Array::<f32>::new(items);
    let mut yacc = Array::<f32>::new(items);
    let mut ddt = Array::<f32>::new(items);
    let mut dus = Array::<f32>::new(items);
    let mut hs = Array::<f32>::new(items);
    let mut k = tid;
    while k < n_state {
        carry[k] = 0.0f32; // now the carried mu per state
        k += units;
    }
    sync_cube();
    let mut d_d = 0.0f32;
    let mut d_bias = 0.0f32;
    let mut c = chunks;
    while c > 0 {
        c -= 1;
        let start = c * chunk;
        load_steps(
            u,
            delta,
            u_row,
            d_row,
            start + tid * items,
            len,
            bias_v,
            &mut dt,
            &mut uu,
            items,
            delta_softplus,
        );
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            let mut g = 0.0f32;
            if t < len {
                g = f32::cast_from(dy[bi * dy.stride(0) + ch * dy.stride(1) + t * dy.stride(2)]);
                if has_z {
                    let zv =
                        f32::cast_from(z[bi * z.stride(0) + ch * z.stride(1) + t * z.stride(2)]);
                    g *= zv / (1.0f32 + f32::exp(-zv));
                }
            }
            gy[i] = g;
            yacc[i] = 0.0f32;
            ddt[i] = 0.0f32;
            dus[i] = 0.0f32;
        }
        for n in 0..n_state {
            let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
            // recompute the chunk's states
            let h0 = ckpt[ck_row + c * n_state + n];
            let (ga, gb) = compose_steps(
                bm,
                bc_row,
                n,
                start + tid * items,
                len,
                a_n,
                &dt,
                &uu,
                &mut pa,
                &mut pb,
                items,
            );
            let (sa, sb) = scan_cube(ga, gb, &mut smem_a, &mut smem_b, use_plane);
            smem_h[tid] = sa * h0 + sb;
            sync_cube();
            let mut h = h0;
            if tid > 0 {
                h = smem_h[tid - 1];
            }
            sync_cube();
            let h_start = h;
            #[unroll]
            for i in 0..items {
                h = pa[i] * h + pb[i];
                hs[i] = h;
            }
            // reverse: steps mu <- a_t (g_t C_t + mu), later steps first
            let mu0 = carry[n];
            let mut ra = 1.0f32;
            let mut rb = 0.0f32;
            #[unroll]
            for j in 0..items {
                let i = items - 1 - j;
                let t = start + tid * items + i;
                let mut cv = 0.0f32;
                if t < len {
                    cv = f32::cast_from(cm[cc_row + n * cm.stride(2) + t * cm.stride(3)]);
                }
                rb = pa[i] * (rb + gy[i] * cv);
                ra *= pa[i];
            }
            let (qa, qb) = scan_cube_rev(ra, rb, &mut smem_a, &mut smem_b, use_plane);
            smem_h[tid] = qa * mu0 + qb;
            sync_cube();
            let mut mu = mu0;
            if tid + 1 < units {
                mu = smem_h[tid + 1];
            }
            if tid == 0 {
                carry[n] = smem_h[0];
            }
            sync_cube();
            let mut d_a = 0.0f32;
            #[unroll]
            for j in 0..items {
                let i = items - 1 - j;
                let t = start + tid * items + i;
                if t < len {
                    let cv = f32::cast_from(cm[cc_row + n * cm.stride(2) + t * cm.stride(3)]);
                    let bv = f32::cast_from(bm[bc_row + n * bm.stride(2) + t * bm.stride(3)]);
                    let mut hprev = h_start;
                    if i > 0 {
                        hprev = hs[i - 1];
                    }
                    let lam = gy[i] * cv + mu;
                    yacc[i] += cv * hs[i];
                    let dh = pa[i] * hprev;
                    ddt[i] += lam * (a_n * dh + bv * uu[i]);
                    dus[i] += lam * bv;
                    d_a += lam * dt[i] * dh;
                    db[bi * db.stride(0) + gi * db.stride(1) + n * db.stride(2) + t * db.stride(3)]
                        .fetch_add(lam * dt[i] * uu[i]);
                    dc[bi * dc.stride(0) + gi * dc.stride(1) + n * dc.stride(2) + t * dc.stride(3)]
                        .fetch_add(gy[i] * hs[i]);
                    mu = pa[i] * lam;
                }
            }
            // dA: summed over the plane first (one atomic per plane, not per unit)
            if use_plane {
                let total = plane_sum(d_a);
                if UNIT_POS_PLANE == 0 {
                    da[ch * da.stride(0) + n * da.stride(1)].fetch_add(total);
                }
            } else {
                da[ch * da.stride(0) + n * da.stride(1)].fetch_add(d_a);
            }
        }
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            if t < len {
                du[bi * du.stride(0) + ch * du.stride(1) + t * du.stride(2)] =
                    F::cast_from(gy[i] * d_v + dt[i] * dus[i]);
                let mut g = ddt[i];
                if delta_softplus {
                    let raw = f32::cast_from(delta[d_row + t * delta.stride(2)]) + bias_v;
                    if raw <= 20.0 {
                        g *= 1.0f32 / (1.0f32 + f32::exp(-raw));
                    }
                }
                ddelta[bi * ddelta.stride(0) + ch * ddelta.stride(1) + t * ddelta.stride(2)] =
                    F::cast_from(g);
                d_bias += g;
                d_d += gy[i] * uu[i];
                if has_z {
                    let zv =
                        f32::cast_from(z[bi * z.stride(0) + ch * z.stride(1) + t * z.stride(2)]);
                    let dyv = f32::cast_from(
                        dy[bi * dy.stride(0) + ch * dy.stride(1) + t * dy.stride(2)],
                    );
                    let sg = 1.0f32 / (1.0f32 + f32::exp(-zv));
                    let y = yacc[i] + d_v * uu[i];
                    dz[bi * dz.stride(0) + ch * dz.stride(1) + t * dz.stride(2)] =
                        F::cast_from(dyv * y * sg * (1.0f32 + zv * (1.0f32 - sg)));
                }
            }
        }
    }
    if has_d {
        dd[ch * dd.stride(0)].fetch_add(d_d);
    }
    if has_bias {
        dbias[ch * dbias.stride(0)].fetch_add(d_bias);
    }
}
