//! The vectorised forward and backward kernels (device side): one plane (or, for short
//! sequences, a segment of one) per channel, no barrier between planes, every per-step tensor
//! read or written with `Vector` accesses (16 bytes on CUDA). See `docs/kernels.md` and
//! `docs/lab/kernel-notes.md` for the design and what it measured.

use super::device::{
    channel_scalars, cube_channel, scan_index, scan_lane, seg_first, seg_last, seg_sum, softplus,
    write_last_state,
};
use cubecl::prelude::*;

/// Compile-time shape and options common to [`scan_fwd_vec`] and [`scan_bwd_vec`] (a comptime
/// field of their launch arguments, so part of each kernel's compilation key).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct VecCommon {
    /// States per channel (N).
    pub n_state: usize,
    /// Consecutive steps per unit.
    pub items: usize,
    /// Elements per vector load (the launch's vector width).
    pub vec: usize,
    /// Units per channel (a power of two within a plane).
    pub seg: usize,
    /// Channels (segments) per cube.
    pub chans: usize,
    /// D present.
    pub has_d: bool,
    /// z present (output gated by silu(z)).
    pub has_z: bool,
    /// delta_bias present.
    pub has_bias: bool,
    /// dt = softplus(delta + bias).
    pub delta_softplus: bool,
    /// The batch index varies fastest across cubes.
    pub batch_inner: bool,
    /// Every cube's channels exist (no guard on the channel index).
    pub all_active: bool,
}

/// Launch arguments of [`scan_fwd_vec`], all compile-time.
#[derive(CubeLaunch, CubeType)]
pub struct VecFwdArgs {
    #[cube(comptime)]
    pub common: VecCommon,
    /// Save the states at multiples of this step into `ckpt` (0: none).
    #[cube(comptime)]
    pub save_chunk: usize,
    /// Load B_{n+1}'s vectors while state n computes.
    #[cube(comptime)]
    pub prefetch: bool,
}

impl VecFwdArgs {
    /// The kernel argument (the derived `VecFwdArgsLaunch::new`, by field name).
    pub fn launch<R: Runtime>(self) -> VecFwdArgsLaunch<R> {
        VecFwdArgsLaunch::new(self.common, self.save_chunk, self.prefetch)
    }
}

/// Launch arguments of [`scan_bwd_vec`], all compile-time.
#[derive(CubeLaunch, CubeType)]
pub struct VecBwdArgs {
    #[cube(comptime)]
    pub common: VecCommon,
    /// The chunk-start states were saved by the forward (no first pass).
    #[cube(comptime)]
    pub saved: bool,
    /// dB / dC summed over the cube's channels before the atomics.
    #[cube(comptime)]
    pub cube_sum: bool,
}

impl VecBwdArgs {
    /// The kernel argument (the derived `VecBwdArgsLaunch::new`, by field name).
    pub fn launch<R: Runtime>(self) -> VecBwdArgsLaunch<R> {
        VecBwdArgsLaunch::new(self.common, self.saved, self.cube_sum)
    }
}

/// Vectorised forward selective scan. One cube per (batch, group, block of `chans` channels);
/// each channel is one segment of `seg` units (a power of two up to the device's fixed plane
/// width: the whole plane, or, for short sequences, one of `plane / seg` channels that share
/// a plane), the sequence in chunks of `seg` x `items` steps, unit `lane` owning `items`
/// consecutive steps, read as `items / vec` vectors of `vec` steps (`N` = `vec` at launch).
/// Requires L, and every stride but the unit stride of L, to be multiples of `vec`, and
/// handles aligned to a vector (the wrapper checks). Per state: B_n's vectors, the unit's
/// steps composed (pa = exp(dt A_n), pb = dt u B_n), a shuffle-only scan over the segment,
/// the previous lane's end state by shuffle, the unit's states recomputed to accumulate
/// C_n . h. With `prefetch`, B_{n+1}'s vectors are loaded while state n computes. The D skip
/// is folded into the accumulator's start; softplus(delta + bias) and silu(z) fused; math in
/// f32; A, D and delta_bias are read as f32 whatever the activations' type.
#[cube(launch_unchecked, fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf)]
#[allow(clippy::too_many_arguments)]
pub fn scan_fwd_vec<F: Float, N: Size>(
    u: &Tensor<Vector<F, N>>,
    delta: &Tensor<Vector<F, N>>,
    a: &Tensor<f32>,
    bm: &Tensor<Vector<F, N>>,
    cm: &Tensor<Vector<F, N>>,
    dvec: &Tensor<f32>,
    z: &Tensor<Vector<F, N>>,
    bias: &Tensor<f32>,
    y: &mut Tensor<Vector<F, N>>,
    last: &mut Tensor<F>,
    ckpt: &mut Tensor<f32>,
    args: &VecFwdArgs,
    #[define(F)] _dtype: StorageType,
) {
    // the compile-time arguments, as locals (each a comptime value, as a `#[comptime]` parameter)
    let n_state = comptime!(args.common.n_state);
    let items = comptime!(args.common.items);
    let vec = comptime!(args.common.vec);
    let seg = comptime!(args.common.seg);
    let chans = comptime!(args.common.chans);
    let has_d = comptime!(args.common.has_d);
    let has_z = comptime!(args.common.has_z);
    let has_bias = comptime!(args.common.has_bias);
    let delta_softplus = comptime!(args.common.delta_softplus);
    let batch_inner = comptime!(args.common.batch_inner);
    let all_active = comptime!(args.common.all_active);
    let save_chunk = comptime!(args.save_chunk);
    let prefetch = comptime!(args.prefetch);
    let nv = comptime!(items / vec);
    let dim = u.shape(1);
    let len = u.shape(2);
    let groups = bm.shape(1);
    let (slot, lane) = scan_index(seg, chans, true);
    let (bi, gi, ch, active) = cube_channel(
        u.shape(0),
        dim,
        groups,
        slot,
        chans,
        batch_inner,
        all_active,
    );
    let mut ck_row = 0usize;
    if comptime!(save_chunk > 0) {
        ck_row = (bi * dim + ch) * len.div_ceil(save_chunk) * n_state;
    }
    // an inactive segment (past its group's last channel) runs on no steps and writes nothing
    let mut slot_len = 0usize;
    if active {
        slot_len = len;
    }
    let cbase = slot * n_state;
    // carries: every lane writes the same value and reads back only its own writes
    let mut carry = SharedMemory::<f32>::new(comptime!(n_state * chans));
    for n in 0..n_state {
        carry[cbase + n] = 0.0f32;
    }

    let (bias_v, d_v) = channel_scalars(bias, dvec, ch, has_bias, has_d);
    // rows in vectors
    let u_row = (bi * u.stride(0) + ch * u.stride(1)) / vec;
    let d_row = (bi * delta.stride(0) + ch * delta.stride(1)) / vec;
    let z_row = (bi * z.stride(0) + ch * z.stride(1)) / vec;
    let y_row = (bi * y.stride(0) + ch * y.stride(1)) / vec;
    let b_row = (bi * bm.stride(0) + gi * bm.stride(1)) / vec;
    let c_row = (bi * cm.stride(0) + gi * cm.stride(1)) / vec;
    let b_sn = bm.stride(2) / vec;
    let c_sn = cm.stride(2) / vec;
    let a_row = ch * a.stride(0);

    let mut dt = Array::<f32>::new(items);
    let mut dtu = Array::<f32>::new(items);
    let mut acc = Array::<f32>::new(items);
    let mut pa = Array::<f32>::new(items);
    let mut pb = Array::<f32>::new(items);
    let mut bv = Array::<f32>::new(items);
    let mut nbv = Array::<f32>::new(comptime!(if prefetch { items } else { 1 }));

    let chunk = comptime!(seg * items);
    let mut start = 0usize;
    while start < len {
        // first vector of this unit, and how many of its vectors lie before the end
        let v0 = (start + lane * items) / vec;
        let vend = slot_len.div_ceil(vec);
        // out-of-range vectors read the row's first one (always valid) and are masked; the D
        // skip starts the accumulator
        load_dt(
            u,
            delta,
            u_row,
            d_row,
            v0,
            vend,
            bias_v,
            d_v,
            &mut dt,
            &mut dtu,
            &mut acc,
            nv,
            vec,
            delta_softplus,
            true,
        );
        if prefetch {
            load_b(bm, b_row, 0, v0, vend, &mut nbv, nv, vec);
        }
        for n in 0..n_state {
            let a_n = f32::cast_from(a[a_row + n * a.stride(1)]);
            let h0 = carry[cbase + n];
            if prefetch {
                #[unroll]
                for i in 0..items {
                    bv[i] = nbv[i];
                }
                // the next state's B (the next chunk's first is loaded before its state loop)
                if n + 1 < n_state {
                    load_b(bm, b_row, (n + 1) * b_sn, v0, vend, &mut nbv, nv, vec);
                }
            } else {
                load_b(bm, b_row, n * b_sn, v0, vend, &mut bv, nv, vec);
            }
            if comptime!(seg == 1) {
                // one unit per channel: the unit's steps in sequence from the carried state,
                // no composition, no scan, no shuffle
                let mut h = h0;
                #[unroll]
                for j in 0..nv {
                    let mut vj = 0usize;
                    if v0 + j < vend {
                        vj = v0 + j;
                    }
                    let cv = cm[c_row + n * c_sn + vj];
                    #[unroll]
                    for k in 0..vec {
                        let i = j * vec + k;
                        h = f32::exp(dt[i] * a_n) * h + dtu[i] * bv[i];
                        acc[i] += h * f32::cast_from(cv[k]);
                    }
                }
                carry[cbase + n] = h;
                if comptime!(save_chunk > 0) {
                    let end = start + items;
                    let q = end / save_chunk;
                    if active && end < len && q * save_chunk == end {
                        ckpt[ck_row + q * n_state + n] = h;
                    }
                }
            } else {
                let (ga, gb) = compose(&dt, &dtu, &bv, a_n, &mut pa, &mut pb, items);
                let (sa, sb) = scan_lane(ga, gb, seg, false);
                // the state after this unit's last step; before its first, the previous lane's
                let h_end = sa * h0 + sb;
                if comptime!(save_chunk > 0) {
                    // the unit ends on a backward chunk start (not the first, not past the end)
                    let end = start + (lane + 1) * items;
                    let q = end / save_chunk;
                    if active && end < len && q * save_chunk == end {
                        ckpt[ck_row + q * n_state + n] = h_end;
                    }
                }
                let prev = plane_shuffle_up(h_end, 1u32);
                let mut h = h0;
                if lane > 0 {
                    h = prev;
                }
                carry[cbase + n] = plane_shuffle(h_end, seg_last(seg));
                #[unroll]
                for j in 0..nv {
                    let mut vj = 0usize;
                    if v0 + j < vend {
                        vj = v0 + j;
                    }
                    let cv = cm[c_row + n * c_sn + vj];
                    #[unroll]
                    for k in 0..vec {
                        let i = j * vec + k;
                        h = pa[i] * h + pb[i];
                        acc[i] += h * f32::cast_from(cv[k]);
                    }
                }
            }
        }
        #[unroll]
        for j in 0..nv {
            if v0 + j < vend {
                let mut out = Vector::<F, N>::empty();
                let mut zv = Vector::<F, N>::empty();
                if has_z {
                    zv = z[z_row + v0 + j];
                }
                #[unroll]
                for k in 0..vec {
                    let mut o = acc[j * vec + k];
                    if has_z {
                        let zk = f32::cast_from(zv[k]);
                        o *= zk / (1.0f32 + f32::exp(-zk));
                    }
                    out[k] = F::cast_from(o);
                }
                y[y_row + v0 + j] = out;
            }
        }
        start += chunk;
    }
    if active {
        write_last_state(last, &carry, bi, ch, cbase, lane, seg, n_state);
    }
}

/// A unit's steps for one state: `pa` = exp(dt A_n), `pb` = dt u B_n per step, and their
/// composition (ga, gb) = (product of pa, the state after the steps from zero).
#[cube]
#[allow(clippy::too_many_arguments)]
fn compose(
    dt: &Array<f32>,
    dtu: &Array<f32>,
    bv: &Array<f32>,
    a_n: f32,
    pa: &mut Array<f32>,
    pb: &mut Array<f32>,
    #[comptime] items: usize,
) -> (f32, f32) {
    let mut ga = 1.0f32;
    let mut gb = 0.0f32;
    #[unroll]
    for i in 0..items {
        let ai = f32::exp(dt[i] * a_n);
        let bi = dtu[i] * bv[i];
        pa[i] = ai;
        pb[i] = bi;
        gb = ai * gb + bi;
        ga *= ai;
    }
    (ga, gb)
}

/// B's vectors of one state for this unit into `out` (f32), `items = nv x vec` values; the
/// vectors at or past `vend` read the row's first vector (valid memory; their steps are
/// masked by dt = 0).
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_b<F: Float, N: Size>(
    bm: &Tensor<Vector<F, N>>,
    b_row: usize,
    n_off: usize,
    v0: usize,
    vend: usize,
    out: &mut Array<f32>,
    #[comptime] nv: usize,
    #[comptime] vec: usize,
) {
    #[unroll]
    for j in 0..nv {
        let mut vj = 0usize;
        if v0 + j < vend {
            vj = v0 + j;
        }
        let v = bm[b_row + n_off + vj];
        #[unroll]
        for k in 0..vec {
            out[j * vec + k] = f32::cast_from(v[k]);
        }
    }
}

/// Vectorised backward selective scan, the layout of [`scan_fwd_vec`]: one segment of `seg`
/// units (a plane, or part of one) per channel, `items` steps per unit read as vectors,
/// chunks of `seg` x `items` steps from
/// the end. Needs the state at every chunk start but the first (`ckpt`, `[batch x d_inner,
/// chunks, N]` f32): from the forward when `saved`, else a first sweep computes them. Per
/// state and chunk: the chunk's states recomputed (compose, shuffle scan), the gradient
/// carried backwards (mu_t = exp(dt_t A) lambda_t, lambda_t = g_t C_t + mu_{t+1}, reverse
/// shuffle scan), then du, d delta, dz per step (written per chunk), dA summed over the plane
/// (one atomic per segment), and dB / dC by coalesced atomics: each unit's terms go through
/// shared memory (double-buffered by state parity, one barrier per state) so that consecutive
/// lanes add to consecutive steps; with `cube_sum` and several channels per cube, summed over
/// the cube's channels first ([`cube_sums`]), else added per channel.
#[cube(launch_unchecked, fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf)]
#[allow(clippy::too_many_arguments)]
pub fn scan_bwd_vec<F: Float, N: Size>(
    u: &Tensor<Vector<F, N>>,
    delta: &Tensor<Vector<F, N>>,
    a: &Tensor<f32>,
    bm: &Tensor<Vector<F, N>>,
    cm: &Tensor<Vector<F, N>>,
    dvec: &Tensor<f32>,
    z: &Tensor<Vector<F, N>>,
    bias: &Tensor<f32>,
    dy: &Tensor<Vector<F, N>>,
    du: &mut Tensor<Vector<F, N>>,
    ddelta: &mut Tensor<Vector<F, N>>,
    dz: &mut Tensor<Vector<F, N>>,
    da: &mut Tensor<Atomic<f32>>,
    db: &mut Tensor<Atomic<f32>>,
    dc: &mut Tensor<Atomic<f32>>,
    dd: &mut Tensor<Atomic<f32>>,
    dbias: &mut Tensor<Atomic<f32>>,
    ckpt: &mut Tensor<f32>,
    args: &VecBwdArgs,
    #[define(F)] _dtype: StorageType,
) {
    // the compile-time arguments, as locals (each a comptime value, as a `#[comptime]` parameter)
    let n_state = comptime!(args.common.n_state);
    let items = comptime!(args.common.items);
    let vec = comptime!(args.common.vec);
    let seg = comptime!(args.common.seg);
    let chans = comptime!(args.common.chans);
    let has_d = comptime!(args.common.has_d);
    let has_z = comptime!(args.common.has_z);
    let has_bias = comptime!(args.common.has_bias);
    let delta_softplus = comptime!(args.common.delta_softplus);
    let batch_inner = comptime!(args.common.batch_inner);
    let all_active = comptime!(args.common.all_active);
    let saved = comptime!(args.saved);
    let cube_sum = comptime!(args.cube_sum);
    let nv = comptime!(items / vec);
    let dim = u.shape(1);
    let len = u.shape(2);
    let groups = bm.shape(1);
    let (slot, lane) = scan_index(seg, chans, true);
    let (bi, gi, ch, active) = cube_channel(
        u.shape(0),
        dim,
        groups,
        slot,
        chans,
        batch_inner,
        all_active,
    );
    let mut slot_len = 0usize;
    if active {
        slot_len = len;
    }
    let chunk = comptime!(seg * items);
    let chunks = len.div_ceil(chunk);
    let cbase = slot * n_state;
    let mut carry = SharedMemory::<f32>::new(comptime!(n_state * chans));
    // dB and dC terms of one state for the segment's chunk, two buffers (state parity), one
    // padding word per `seg` (bank-conflict free both ways), so that a unit's writes start
    // at a per-lane base and the striped reads sit at lane + k (seg + 1): offsets known at
    // compile time; dB / dC (unit stride along L, checked by the launcher) are indexed from
    // one base per state (fewer issued instructions than per-element indexing).
    let ex_len = comptime!(chunk + chunk / seg);
    let mut ex_b = SharedMemory::<f32>::new(comptime!(2 * ex_len * chans));
    let mut ex_c = SharedMemory::<f32>::new(comptime!(2 * ex_len * chans));
    let ex_base = slot * 2 * ex_len;
    // the unit's first write (its `items` steps stay inside one padded row when
    // items <= seg) and its first striped read
    let w_base = ex_base + lane * items + (lane * items) / comptime!(seg);
    let r_base = ex_base + lane;
    // with `cube_sum`: this unit's first step in the chunk (unit index in the cube) and its
    // padded position in a channel's buffer
    let cs_t = slot * seg + lane;
    let cs_base = cs_t + slot;

    let (bias_v, d_v) = channel_scalars(bias, dvec, ch, has_bias, has_d);
    let u_row = (bi * u.stride(0) + ch * u.stride(1)) / vec;
    let d_row = (bi * delta.stride(0) + ch * delta.stride(1)) / vec;
    let z_row = (bi * z.stride(0) + ch * z.stride(1)) / vec;
    let g_row = (bi * dy.stride(0) + ch * dy.stride(1)) / vec;
    let du_row = (bi * du.stride(0) + ch * du.stride(1)) / vec;
    let dd_row = (bi * ddelta.stride(0) + ch * ddelta.stride(1)) / vec;
    let dz_row = (bi * dz.stride(0) + ch * dz.stride(1)) / vec;
    let b_row = (bi * bm.stride(0) + gi * bm.stride(1)) / vec;
    let c_row = (bi * cm.stride(0) + gi * cm.stride(1)) / vec;
    let b_sn = bm.stride(2) / vec;
    let c_sn = cm.stride(2) / vec;
    let a_row = ch * a.stride(0);
    let db_row = bi * db.stride(0) + gi * db.stride(1);
    let dc_row = bi * dc.stride(0) + gi * dc.stride(1);
    // metadata read once, not per state
    let db_s2 = db.stride(2);
    let dc_s2 = dc.stride(2);
    let da_row = ch * da.stride(0);
    let da_s1 = da.stride(1);
    let a_s1 = a.stride(1);
    let ck_row = (bi * dim + ch) * chunks * n_state;

    let mut dt = Array::<f32>::new(items);
    let mut dtu = Array::<f32>::new(items);
    let mut pa = Array::<f32>::new(items);
    let mut pb = Array::<f32>::new(items);
    let mut bv = Array::<f32>::new(items);
    let vend = slot_len.div_ceil(vec);
    // `load_dt`'s accumulator output, unused here
    let mut no_acc = Array::<f32>::new(comptime!(1usize));

    // pass 1: the state at every chunk start but the first (unless the forward saved them)
    for n in 0..n_state {
        carry[cbase + n] = 0.0f32;
    }
    let mut c = 0usize;
    if comptime!(saved) {
        c = chunks;
    }
    while c + 1 < chunks {
        let v0 = (c * chunk + lane * items) / vec;
        load_dt(
            u,
            delta,
            u_row,
            d_row,
            v0,
            vend,
            bias_v,
            0.0f32,
            &mut dt,
            &mut dtu,
            &mut no_acc,
            nv,
            vec,
            delta_softplus,
            false,
        );
        for n in 0..n_state {
            let a_n = f32::cast_from(a[a_row + n * a_s1]);
            load_b(bm, b_row, n * b_sn, v0, vend, &mut bv, nv, vec);
            // pa / pb: scratch here (the recompute below fills them again)
            let (ga, gb) = compose(&dt, &dtu, &bv, a_n, &mut pa, &mut pb, items);
            let (sa, sb) = scan_lane(ga, gb, seg, false);
            let h_end = sa * carry[cbase + n] + sb;
            let last = plane_shuffle(h_end, seg_last(seg));
            carry[cbase + n] = last;
            // every lane writes the same value, so each lane's later read follows its own
            // write (a WGSL workgroup barrier does not order storage memory)
            if active {
                ckpt[ck_row + (c + 1) * n_state + n] = last;
            }
        }
        c += 1;
    }

    // each lane reads back below the states it wrote above (every lane writes the same value)
    sync_cube();

    // pass 2: chunks from the end; carry holds the mu entering each state from the next chunk
    let mut gy = Array::<f32>::new(items);
    let mut yacc = Array::<f32>::new(items);
    let mut ddt = Array::<f32>::new(items);
    let mut dus = Array::<f32>::new(items);
    let mut hs = Array::<f32>::new(items);
    let mut cv = Array::<f32>::new(items);
    for n in 0..n_state {
        carry[cbase + n] = 0.0f32;
    }
    let mut d_d = 0.0f32;
    let mut d_bias = 0.0f32;
    let mut par = 0usize;
    let mut c = chunks;
    while c > 0 {
        c -= 1;
        let start = c * chunk;
        let v0 = (start + lane * items) / vec;
        load_dt(
            u,
            delta,
            u_row,
            d_row,
            v0,
            vend,
            bias_v,
            0.0f32,
            &mut dt,
            &mut dtu,
            &mut no_acc,
            nv,
            vec,
            delta_softplus,
            false,
        );
        #[unroll]
        for j in 0..nv {
            let inb = v0 + j < vend;
            let mut vj = 0usize;
            if inb {
                vj = v0 + j;
            }
            let gv = dy[g_row + vj];
            let mut zv = gv;
            if has_z {
                zv = z[z_row + vj];
            }
            #[unroll]
            for k in 0..vec {
                let i = j * vec + k;
                let mut g = 0.0f32;
                if inb {
                    g = f32::cast_from(gv[k]);
                    if has_z {
                        let zk = f32::cast_from(zv[k]);
                        g *= zk / (1.0f32 + f32::exp(-zk));
                    }
                }
                gy[i] = g;
                yacc[i] = 0.0f32;
                ddt[i] = 0.0f32;
                dus[i] = 0.0f32;
            }
        }
        for n in 0..n_state {
            let a_n = f32::cast_from(a[a_row + n * a_s1]);
            load_b(bm, b_row, n * b_sn, v0, vend, &mut bv, nv, vec);
            load_b(cm, c_row, n * c_sn, v0, vend, &mut cv, nv, vec);
            // recompute the chunk's states (the first chunk starts from zero)
            let mut h0 = 0.0f32;
            if c > 0 && active {
                h0 = ckpt[ck_row + c * n_state + n];
            }
            let (ga, gb) = compose(&dt, &dtu, &bv, a_n, &mut pa, &mut pb, items);
            let (sa, sb) = scan_lane(ga, gb, seg, false);
            let prev = plane_shuffle_up(sa * h0 + sb, 1u32);
            let mut h = h0;
            if lane > 0 {
                h = prev;
            }
            let h_start = h;
            #[unroll]
            for i in 0..items {
                h = pa[i] * h + pb[i];
                hs[i] = h;
            }
            // reverse: mu <- a_t (g_t C_t + mu), later steps first
            let mut rb = 0.0f32;
            #[unroll]
            for j in 0..items {
                let i = items - 1 - j;
                rb = pa[i] * (rb + gy[i] * cv[i]);
            }
            // the product of the unit's pa is the forward composition's ga
            let (qa, qb) = scan_lane(ga, rb, seg, true);
            let mu0 = carry[cbase + n];
            let mu_start = qa * mu0 + qb;
            let next = plane_shuffle_down(mu_start, 1u32);
            let mut mu = mu0;
            if lane + 1 < comptime!(seg) {
                mu = next;
            }
            carry[cbase + n] = plane_shuffle(mu_start, seg_first(seg));
            let mut d_a = 0.0f32;
            let eoff = ex_base + par * ex_len;
            #[unroll]
            for j in 0..items {
                let i = items - 1 - j;
                let mut hprev = h_start;
                if i > 0 {
                    hprev = hs[i - 1];
                }
                let lam = gy[i] * cv[i] + mu;
                yacc[i] += cv[i] * hs[i];
                let ldh = lam * pa[i] * hprev;
                ddt[i] += a_n * ldh;
                dus[i] += lam * bv[i];
                d_a += dt[i] * ldh;
                let mut r = w_base + par * ex_len + i;
                if comptime!(items > seg) {
                    let jw = lane * items + i;
                    r = eoff + jw + jw / comptime!(seg);
                }
                ex_b[r] = lam * dtu[i];
                ex_c[r] = gy[i] * hs[i];
                mu = pa[i] * lam;
            }
            let total = seg_sum(d_a, seg);
            if active && lane == 0 {
                da[da_row + n * da_s1].fetch_add(total);
            }
            // the other parity's buffers were last read before this barrier's predecessor
            sync_cube();
            if comptime!(cube_sum && chans > 1) {
                // the cube's channels (one batch row and group; inactive ones hold zeros)
                // summed in shared memory first: the cube's units share the chunk's 2 x
                // `chunk` (quantity, step) sums, consecutive units on consecutive steps, each
                // reading its step from every channel's buffer: as many reads per unit as
                // without the sum, `chans` times fewer atomics
                let rem = len - start;
                if rem >= comptime!(chunk) {
                    cube_sums(
                        &ex_b,
                        &ex_c,
                        db,
                        dc,
                        cs_base + par * ex_len,
                        cs_t,
                        db_row + n * db_s2 + start,
                        dc_row + n * dc_s2 + start,
                        rem,
                        ex_len,
                        items,
                        seg,
                        chans,
                        false,
                    );
                } else {
                    cube_sums(
                        &ex_b,
                        &ex_c,
                        db,
                        dc,
                        cs_base + par * ex_len,
                        cs_t,
                        db_row + n * db_s2 + start,
                        dc_row + n * dc_s2 + start,
                        rem,
                        ex_len,
                        items,
                        seg,
                        chans,
                        true,
                    );
                }
            } else if active {
                let rem = len - start;
                let rb0 = r_base + par * ex_len;
                let db0 = db_row + n * db_s2 + start + lane;
                let dc0 = dc_row + n * dc_s2 + start + lane;
                if rem >= comptime!(chunk) {
                    // a full chunk (all but a partial last one): no per-step guard
                    #[unroll]
                    for k in 0..items {
                        let r = rb0 + comptime!(k * (seg + 1));
                        db[db0 + comptime!(k * seg)].fetch_add(ex_b[r]);
                        dc[dc0 + comptime!(k * seg)].fetch_add(ex_c[r]);
                    }
                } else {
                    #[unroll]
                    for k in 0..items {
                        if comptime!(k * seg) + lane < rem {
                            let r = rb0 + comptime!(k * (seg + 1));
                            db[db0 + comptime!(k * seg)].fetch_add(ex_b[r]);
                            dc[dc0 + comptime!(k * seg)].fetch_add(ex_c[r]);
                        }
                    }
                }
            }
            par = 1 - par;
        }
        // the chunk's du, d delta, dz (u, delta, dy and z read again: fewer live registers)
        #[unroll]
        for j in 0..nv {
            let vj = v0 + j;
            if vj < vend {
                let uv = u[u_row + vj];
                let dv = delta[d_row + vj];
                let gv = dy[g_row + vj];
                let mut zv = gv;
                if has_z {
                    zv = z[z_row + vj];
                }
                let mut o_du = Vector::<F, N>::empty();
                let mut o_dd = Vector::<F, N>::empty();
                let mut o_dz = Vector::<F, N>::empty();
                #[unroll]
                for k in 0..vec {
                    let i = j * vec + k;
                    let uk = f32::cast_from(uv[k]);
                    o_du[k] = F::cast_from(gy[i] * d_v + dt[i] * dus[i]);
                    let mut g = ddt[i] + uk * dus[i];
                    if delta_softplus {
                        let raw = f32::cast_from(dv[k]) + bias_v;
                        if raw <= 20.0 {
                            g *= 1.0f32 / (1.0f32 + f32::exp(-raw));
                        }
                    }
                    o_dd[k] = F::cast_from(g);
                    d_bias += g;
                    d_d += gy[i] * uk;
                    if has_z {
                        let zk = f32::cast_from(zv[k]);
                        let sg = 1.0f32 / (1.0f32 + f32::exp(-zk));
                        let y = yacc[i] + d_v * uk;
                        o_dz[k] = F::cast_from(
                            f32::cast_from(gv[k]) * y * sg * (1.0f32 + zk * (1.0f32 - sg)),
                        );
                    }
                }
                du[du_row + vj] = o_du;
                ddelta[dd_row + vj] = o_dd;
                if has_z {
                    dz[dz_row + vj] = o_dz;
                }
            }
        }
    }
    let s_d = seg_sum(d_d, seg);
    let s_bias = seg_sum(d_bias, seg);
    if active && lane == 0 {
        if has_d {
            dd[ch * dd.stride(0)].fetch_add(s_d);
        }
        if has_bias {
            dbias[ch * dbias.stride(0)].fetch_add(s_bias);
        }
    }
}

/// The cube-level dB / dC sums of one state and chunk (see `cube_sum` in [`scan_bwd_vec`]):
/// unit `t0` (its index in the cube) takes the steps `t0 + m U` (`U` = units per cube) of
/// dB, then of dC, sums each over the `chans` channels' buffers (`pos` = its padded position
/// in a buffer at this state's parity) and adds it at `db0 + t` / `dc0 + t`; with `guard`,
/// only steps before `rem`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn cube_sums(
    ex_b: &SharedMemory<f32>,
    ex_c: &SharedMemory<f32>,
    db: &mut Tensor<Atomic<f32>>,
    dc: &mut Tensor<Atomic<f32>>,
    pos: usize,
    t0: usize,
    db0: usize,
    dc0: usize,
    rem: usize,
    #[comptime] ex_len: usize,
    #[comptime] items: usize,
    #[comptime] seg: usize,
    #[comptime] chans: usize,
    #[comptime] guard: bool,
) {
    let units = comptime!(seg * chans);
    let chunk = comptime!(seg * items);
    #[unroll]
    for m in 0..comptime!(2 * items / chans) {
        // quantity (0: dB, 1: dC) and step offset, both known at compile time because the
        // cube's units divide the chunk
        let q = comptime!(m * units / chunk);
        let off = comptime!(m * units - q * chunk);
        let mut acc = 0.0f32;
        #[unroll]
        for c in 0..chans {
            let r = pos + comptime!(c * 2 * ex_len + off + off / seg);
            if comptime!(q == 0) {
                acc += ex_b[r];
            } else {
                acc += ex_c[r];
            }
        }
        let t = t0 + comptime!(off);
        if !guard || t < rem {
            if comptime!(q == 0) {
                db[db0 + t].fetch_add(acc);
            } else {
                dc[dc0 + t].fetch_add(acc);
            }
        }
    }
}

/// dt = softplus?(delta + bias) and dt u of a unit's steps, from vectors (0 at or past
/// `vend`: the identity step); with `with_acc`, also `acc` = D u (the forward's skip term).
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_dt<F: Float, N: Size>(
    u: &Tensor<Vector<F, N>>,
    delta: &Tensor<Vector<F, N>>,
    u_row: usize,
    d_row: usize,
    v0: usize,
    vend: usize,
    bias_v: f32,
    d_v: f32,
    dt: &mut Array<f32>,
    dtu: &mut Array<f32>,
    acc: &mut Array<f32>,
    #[comptime] nv: usize,
    #[comptime] vec: usize,
    #[comptime] delta_softplus: bool,
    #[comptime] with_acc: bool,
) {
    #[unroll]
    for j in 0..nv {
        let inb = v0 + j < vend;
        let mut vj = 0usize;
        if inb {
            vj = v0 + j;
        }
        let uv = u[u_row + vj];
        let dv = delta[d_row + vj];
        #[unroll]
        for k in 0..vec {
            let i = j * vec + k;
            let mut d = f32::cast_from(dv[k]) + bias_v;
            if delta_softplus {
                d = softplus(d);
            }
            let mut dd = 0.0f32;
            if inb {
                dd = d;
            }
            let uk = f32::cast_from(uv[k]);
            dt[i] = dd;
            dtu[i] = dd * uk;
            if with_acc {
                acc[i] = d_v * uk;
            }
        }
    }
}
