//! cubecl kernels, device side. In their own module: `cubecl::prelude::Tensor` would clash
//! with Burn's `Tensor`.

use cubecl::prelude::*;

/// Position of this unit in scan order: with plane ops, (plane, lane) so that shuffles follow
/// it. The cube holds `chans` segments of `seg` units (one channel each, whole planes); returns
/// (segment, index inside the segment).
#[cube]
pub(super) fn scan_index(
    #[comptime] seg: usize,
    #[comptime] chans: usize,
    #[comptime] use_plane: bool,
) -> (usize, usize) {
    let mut g = UNIT_POS as usize;
    if use_plane {
        g = (PLANE_POS * PLANE_DIM + UNIT_POS_PLANE) as usize;
    }
    // one channel: segment 0, a constant for the compiler (fewer live registers)
    if comptime!(chans == 1) {
        (0usize, g)
    } else {
        (g / seg, g % seg)
    }
}

/// Inclusive scan over each segment of `seg` units of one (a, b) pair per unit, in scan
/// order, under (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2). Plane path: Kogge-Stone with
/// shuffles inside each plane (its width read at run time), then the plane totals of the
/// segment (planes `planes.0 .. planes.1`, see [`seg_planes`]) folded through shared memory.
/// With `reverse` (comptime), the suffix scan: for unit s, the composition of units last, ...,
/// s (the later ones applied first), for the reverse scan of the backward pass.
/// `smem_a`, `smem_b`: at least CUBE_DIM / plane width entries.
#[cube]
fn scan_plane(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
    planes: (usize, usize),
    #[comptime] lean: bool,
    #[comptime] reverse: bool,
) -> (f32, f32) {
    let lane = UNIT_POS_PLANE;
    let width = PLANE_DIM;
    let plane = PLANE_POS as usize;
    let (first, end) = planes;
    let mut sa = a;
    let mut sb = b;
    let mut d = 1u32;
    while d < width {
        // every lane shuffles (uniform control flow); lanes with fewer than d lanes before
        // them in scan order keep their value
        let pa = shuffle_prev(sa, d, reverse);
        let pb = shuffle_prev(sb, d, reverse);
        let inside = if reverse { lane + d < width } else { lane >= d };
        if inside {
            sb += sa * pb;
            sa *= pa;
        }
        d *= 2u32;
    }
    // the plane's total sits in its last lane in scan order
    let tail = if reverse {
        lane == 0
    } else {
        lane == width - 1
    };
    if tail {
        smem_a[plane] = sa;
        smem_b[plane] = sb;
    }
    sync_cube();
    // fold the totals of the segment's planes before this one in scan order (after it in
    // plane order when reverse), in scan order
    let mut pa = 1.0f32;
    let mut pb = 0.0f32;
    if reverse {
        let mut p = end;
        while p > plane + 1 {
            p -= 1;
            let qa = smem_a[p];
            pb = qa * pb + smem_b[p];
            pa *= qa;
        }
    } else {
        for p in first..plane {
            let qa = smem_a[p];
            pb = qa * pb + smem_b[p];
            pa *= qa;
        }
    }
    // lean: the caller separates these reads from the next writes by its own barriers
    if comptime!(!lean) {
        sync_cube();
    }
    (pa * sa, sa * pb + sb)
}

/// The same scan through shared memory only (Hillis-Steele), for devices without plane ops
/// (suffix scan with `reverse`). `smem_a`, `smem_b`: at least CUBE_DIM entries.
#[cube]
fn scan_smem(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
    #[comptime] seg: usize,
    #[comptime] reverse: bool,
) -> (f32, f32) {
    let i = UNIT_POS as usize;
    let li = i % seg;
    let n = seg;
    let mut sa = a;
    let mut sb = b;
    smem_a[i] = sa;
    smem_b[i] = sb;
    sync_cube();
    let mut d = 1usize;
    while d < n {
        let mut pa = 1.0f32;
        let mut pb = 0.0f32;
        let inside = if reverse { li + d < n } else { li >= d };
        if inside {
            pa = smem_a[prev_unit(i, d, reverse)];
            pb = smem_b[prev_unit(i, d, reverse)];
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

/// The unit `d` before unit `i` in scan order (`i - d`, or `i + d` with `reverse`).
#[cube]
fn prev_unit(i: usize, d: usize, #[comptime] reverse: bool) -> usize {
    if reverse { i + d } else { i - d }
}

/// `x` of the lane `d` before this one in scan order: `d` lanes down the plane, or up with
/// `reverse` (a shuffle up, resp. down).
#[cube]
fn shuffle_prev(x: f32, d: u32, #[comptime] reverse: bool) -> f32 {
    if reverse {
        plane_shuffle_down(x, d)
    } else {
        plane_shuffle_up(x, d)
    }
}

/// delta_bias and D of channel `ch` (0 where absent).
#[cube]
pub(super) fn channel_scalars(
    bias: &Tensor<f32>,
    dvec: &Tensor<f32>,
    ch: usize,
    #[comptime] has_bias: bool,
    #[comptime] has_d: bool,
) -> (f32, f32) {
    let mut bias_v = 0.0f32;
    if has_bias {
        bias_v = bias[ch * bias.stride(0)];
    }
    let mut d_v = 0.0f32;
    if has_d {
        d_v = dvec[ch * dvec.stride(0)];
    }
    (bias_v, d_v)
}

/// The forward's last state `[batch, d_inner, N]` of channel `ch` from the carries at
/// `cbase`, states `first, first + step, ..` written by this unit.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn write_last_state<F: Float>(
    last: &mut Tensor<F>,
    carry: &SharedMemory<f32>,
    bi: usize,
    ch: usize,
    cbase: usize,
    first: usize,
    step: usize,
    n_state: usize,
) {
    let mut k = first;
    while k < n_state {
        last[bi * last.stride(0) + ch * last.stride(1) + k * last.stride(2)] =
            F::cast_from(carry[cbase + k]);
        k += step;
    }
}

#[cube]
pub(super) fn softplus(x: f32) -> f32 {
    let mut y = x;
    if x <= 20.0 {
        y = f32::log1p(f32::exp(x));
    }
    y
}

/// The planes of this unit's segment, `first .. end` (computed once per kernel: a division
/// by the run-time plane width inside the scans costs more than the scan step itself).
#[cube]
fn seg_planes(slot: usize, #[comptime] seg: usize, #[comptime] use_plane: bool) -> (usize, usize) {
    let mut per_seg = 1usize;
    if use_plane {
        per_seg = seg / PLANE_DIM as usize;
    }
    (slot * per_seg, slot * per_seg + per_seg)
}

/// Inclusive scan when a segment is one plane of `seg` lanes (`one_plane`) or an aligned
/// part of one (`seg` a power of two dividing the plane width, lanes `k seg .. (k + 1) seg`):
/// shuffles only, no shared memory and no barrier. The suffix scan with `reverse`.
#[cube]
pub(super) fn scan_lane(
    a: f32,
    b: f32,
    #[comptime] seg: usize,
    #[comptime] reverse: bool,
) -> (f32, f32) {
    let lane = UNIT_POS_PLANE & comptime!((seg - 1) as u32);
    let mut sa = a;
    let mut sb = b;
    let mut d = 1u32;
    #[unroll]
    for _k in 0..comptime!(seg.trailing_zeros() as usize) {
        let pa = shuffle_prev(sa, d, reverse);
        let pb = shuffle_prev(sb, d, reverse);
        let inside = if reverse {
            lane + d < comptime!(seg as u32)
        } else {
            lane >= d
        };
        if inside {
            sb += sa * pb;
            sa *= pa;
        }
        d *= 2u32;
    }
    (sa, sb)
}

/// [`scan_lane`] of two independent pairs (two states), interleaved for instruction-level
/// parallelism.
#[cube]
fn scan_lane2(a0: f32, b0: f32, a1: f32, b1: f32, #[comptime] seg: usize) -> (f32, f32, f32, f32) {
    let lane = UNIT_POS_PLANE;
    let mut sa0 = a0;
    let mut sb0 = b0;
    let mut sa1 = a1;
    let mut sb1 = b1;
    let mut d = 1u32;
    #[unroll]
    for _k in 0..comptime!(seg.trailing_zeros() as usize) {
        let pa0 = plane_shuffle_up(sa0, d);
        let pb0 = plane_shuffle_up(sb0, d);
        let pa1 = plane_shuffle_up(sa1, d);
        let pb1 = plane_shuffle_up(sb1, d);
        if lane >= d {
            sb0 += sa0 * pb0;
            sa0 *= pa0;
            sb1 += sa1 * pb1;
            sa1 *= pa1;
        }
        d *= 2u32;
    }
    (sa0, sb0, sa1, sb1)
}

/// The plane lane of the last unit of this unit's segment of `seg` lanes (see
/// [`scan_lane`]), for `plane_shuffle`.
#[cube]
pub(super) fn seg_last(#[comptime] seg: usize) -> u32 {
    UNIT_POS_PLANE | comptime!((seg - 1) as u32)
}

/// The plane lane of the first unit of this unit's segment of `seg` lanes.
#[cube]
pub(super) fn seg_first(#[comptime] seg: usize) -> u32 {
    UNIT_POS_PLANE & comptime!(!((seg - 1) as u32))
}

/// Sum of `x` over this unit's segment of `seg` lanes (a butterfly of xor shuffles; every
/// lane of the segment gets the sum).
#[cube]
pub(super) fn seg_sum(x: f32, #[comptime] seg: usize) -> f32 {
    let mut s = x;
    #[unroll]
    for k in 0..comptime!(seg.trailing_zeros() as usize) {
        s += plane_shuffle_xor(s, comptime!((seg >> (k + 1)) as u32));
    }
    s
}

/// One inclusive scan over this unit's segment: shuffles only when the segment is one plane
/// ([`scan_lane`]), else plane shuffles and shared memory ([`scan_plane`]), else shared
/// memory only ([`scan_smem`]). The suffix scan with `reverse`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn scan_cube(
    a: f32,
    b: f32,
    smem_a: &mut SharedMemory<f32>,
    smem_b: &mut SharedMemory<f32>,
    planes: (usize, usize),
    #[comptime] seg: usize,
    #[comptime] use_plane: bool,
    #[comptime] lean: bool,
    #[comptime] one_plane: bool,
    #[comptime] reverse: bool,
) -> (f32, f32) {
    if one_plane {
        scan_lane(a, b, seg, reverse)
    } else if use_plane {
        scan_plane(a, b, smem_a, smem_b, planes, lean, reverse)
    } else {
        scan_smem(a, b, smem_a, smem_b, seg, reverse)
    }
}

/// The channel of segment `slot` of this cube: cubes are laid out (batch, group, block of
/// `chans` channels of the group), or with `batch_inner` (group, block, batch); `all_active`
/// when the group's channels are a multiple of `chans` (every segment active). Returns (batch, group, channel, active): a segment past the
/// group's last channel reads channel 0 of the group and writes nothing. Ends the whole cube
/// when it is past the grid's end.
#[cube]
pub(super) fn cube_channel(
    batch: usize,
    dim: usize,
    groups: usize,
    slot: usize,
    #[comptime] chans: usize,
    #[comptime] batch_inner: bool,
    #[comptime] all_active: bool,
) -> (usize, usize, usize, bool) {
    let per_group = dim / groups;
    let blocks = per_group.div_ceil(chans);
    let pos = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if pos >= batch * groups * blocks {
        terminate!();
    }
    let mut bi = pos / (groups * blocks);
    let mut rem = pos % (groups * blocks);
    if batch_inner {
        // consecutive cubes in consecutive batch rows: cubes that run at the same time add
        // into different rows of dB / dC (fewer same-address atomics)
        bi = pos % batch;
        rem = pos / batch;
    }
    let gi = rem / blocks;
    let lc = (rem % blocks) * chans + slot;
    if comptime!(chans == 1 || all_active) {
        // every segment has a channel (the group's channels are a multiple of `chans`): a
        // constant for the compiler (fewer live registers)
        (bi, gi, gi * per_group + lc, true)
    } else {
        let active = lc < per_group;
        let mut ch = gi * per_group;
        if active {
            ch += lc;
        }
        (bi, gi, ch, active)
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
/// composition (first step first). With `dtu`, `uu` already holds dt u (the backward's
/// `fold` variant), so pb = uu B_n.
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
    bvs: &mut Array<f32>,
    #[comptime] items: usize,
    #[comptime] dtu: bool,
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
        // B_t, kept for the backward's gradient loop (dead, so removed, elsewhere)
        bvs[i] = bv;
        let ai = f32::exp(dt[i] * a_n);
        pa[i] = ai;
        if dtu {
            pb[i] = uu[i] * bv;
        } else {
            pb[i] = dt[i] * uu[i] * bv;
        }
        gb = ai * gb + pb[i];
        ga *= ai;
    }
    (ga, gb)
}

/// [`compose_steps`] with B read from the chunk staged in shared memory (see [`padded`]).
#[cube]
fn compose_staged(
    st_b: &SharedMemory<f32>,
    off: usize,
    first: usize,
    a_n: f32,
    dt: &Array<f32>,
    uu: &Array<f32>,
    pa: &mut Array<f32>,
    pb: &mut Array<f32>,
    bvs: &mut Array<f32>,
    #[comptime] items: usize,
    #[comptime] dtu: bool,
) -> (f32, f32) {
    let mut ga = 1.0f32;
    let mut gb = 0.0f32;
    #[unroll]
    for i in 0..items {
        let bv = st_b[off + padded(first + i)];
        bvs[i] = bv;
        let ai = f32::exp(dt[i] * a_n);
        pa[i] = ai;
        if dtu {
            pb[i] = uu[i] * bv;
        } else {
            pb[i] = dt[i] * uu[i] * bv;
        }
        gb = ai * gb + pb[i];
        ga *= ai;
    }
    (ga, gb)
}

/// [`compose_staged`] (B from the staged chunk at `off`) when `stage`, else [`compose_steps`]
/// (B_n from global; state n + 1 with `next`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn compose<F: Float>(
    st_b: &SharedMemory<f32>,
    off: usize,
    bm: &Tensor<F>,
    bc_row: usize,
    n: usize,
    start: usize,
    tid: usize,
    len: usize,
    a_n: f32,
    dt: &Array<f32>,
    uu: &Array<f32>,
    pa: &mut Array<f32>,
    pb: &mut Array<f32>,
    bvs: &mut Array<f32>,
    #[comptime] items: usize,
    #[comptime] stage: bool,
    #[comptime] next: bool,
    #[comptime] dtu: bool,
) -> (f32, f32) {
    if stage {
        compose_staged(st_b, off, tid * items, a_n, dt, uu, pa, pb, bvs, items, dtu)
    } else if next {
        compose_steps(
            bm,
            bc_row,
            n + 1,
            start + tid * items,
            len,
            a_n,
            dt,
            uu,
            pa,
            pb,
            bvs,
            items,
            dtu,
        )
    } else {
        compose_steps(
            bm,
            bc_row,
            n,
            start + tid * items,
            len,
            a_n,
            dt,
            uu,
            pa,
            pb,
            bvs,
            items,
            dtu,
        )
    }
}

/// Compile-time shape and options common to [`scan_fwd`] and [`scan_bwd`] (a comptime field
/// of their launch arguments, so part of each kernel's compilation key).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ScanCommon {
    /// States per channel (N).
    pub n_state: usize,
    /// Consecutive steps per unit.
    pub items: usize,
    /// Units per channel (one segment of whole planes).
    pub cube_units: usize,
    /// Channels (segments) per cube.
    pub chans: usize,
    /// Entries of each of the two scan buffers in shared memory.
    pub smem_len: usize,
    /// D present.
    pub has_d: bool,
    /// z present (output gated by silu(z)).
    pub has_z: bool,
    /// delta_bias present.
    pub has_bias: bool,
    /// dt = softplus(delta + bias).
    pub delta_softplus: bool,
    /// Plane shuffles in the cube scan (else shared memory only).
    pub use_plane: bool,
    /// Fewer barriers: the scan's shared reads are separated from the next writes by the
    /// caller's own barriers.
    pub lean: bool,
    /// Each segment is one plane: the cube scan by shuffles only.
    pub one_plane: bool,
}

/// Launch arguments of [`scan_fwd`], all compile-time.
#[derive(CubeLaunch, CubeType)]
pub struct ScanFwdArgs {
    #[cube(comptime)]
    pub common: ScanCommon,
    /// B_n and C_n of the chunk staged in shared memory.
    #[cube(comptime)]
    pub stage: bool,
    /// Save the states at multiples of this step into `ckpt` (0: none).
    #[cube(comptime)]
    pub save_chunk: usize,
    /// Two states per pass (one plane per channel, N even).
    #[cube(comptime)]
    pub pair: bool,
}

impl ScanFwdArgs {
    /// The kernel argument (the derived `ScanFwdArgsLaunch::new`, by field name).
    pub fn launch<R: Runtime>(self) -> ScanFwdArgsLaunch<R> {
        ScanFwdArgsLaunch::new(self.common, self.stage, self.save_chunk, self.pair)
    }
}

/// Launch arguments of [`scan_bwd`], all compile-time.
#[derive(CubeLaunch, CubeType)]
pub struct ScanBwdArgs {
    #[cube(comptime)]
    pub common: ScanCommon,
    /// Keep B_t in registers from the recompute for the gradient loop (else read it again).
    #[cube(comptime)]
    pub keep_b: bool,
    /// B_n and C_n of the chunk staged in shared memory.
    #[cube(comptime)]
    pub stage_bwd: bool,
    /// The chunk-start states were saved by the forward (no first pass).
    #[cube(comptime)]
    pub saved: bool,
    /// The dB and dC sums over the cube's channels split between all its units (dB by one
    /// half, dC by the other).
    #[cube(comptime)]
    pub red_split: bool,
    /// The `fold` gradient loop (dt u kept in place of u, the B u term of d delta summed over
    /// the states once per step).
    #[cube(comptime)]
    pub fold: bool,
}

impl ScanBwdArgs {
    /// The kernel argument (the derived `ScanBwdArgsLaunch::new`, by field name).
    pub fn launch<R: Runtime>(self) -> ScanBwdArgsLaunch<R> {
        ScanBwdArgsLaunch::new(
            self.common,
            self.keep_b,
            self.stage_bwd,
            self.saved,
            self.red_split,
            self.fold,
        )
    }
}

/// Forward selective scan. One cube per (batch, group, block of `chans` channels), each
/// channel a segment of `cube_units` units (whole planes); the sequence in chunks of
/// `cube_units` x `items` steps, each unit owning `items` consecutive steps. Per state: the
/// unit's steps are composed sequentially, the units' compositions scanned across the segment
/// (plane shuffles + shared memory; shuffles alone when the segment is one plane,
/// `one_plane`), the state carried from the previous chunk, and the unit's states recomputed
/// to accumulate C . h. With `stage`, B_n and C_n of the chunk are staged in shared memory for
/// all channels of the cube (double-buffered by state parity). softplus(delta + bias), D and
/// silu(z) fused. Storage dtype `F` (run time), math in f32.
#[cube(launch_unchecked, fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf)]
#[allow(clippy::too_many_arguments)]
pub fn scan_fwd<F: Float>(
    u: &Tensor<F>,
    delta: &Tensor<F>,
    a: &Tensor<f32>,
    bm: &Tensor<F>,
    cm: &Tensor<F>,
    dvec: &Tensor<f32>,
    z: &Tensor<F>,
    bias: &Tensor<f32>,
    y: &mut Tensor<F>,
    last: &mut Tensor<F>,
    ckpt: &mut Tensor<f32>,
    args: &ScanFwdArgs,
    #[define(F)] _dtype: StorageType,
) {
    // the compile-time arguments, as locals (each a comptime value, as a `#[comptime]` parameter)
    let n_state = comptime!(args.common.n_state);
    let items = comptime!(args.common.items);
    let cube_units = comptime!(args.common.cube_units);
    let chans = comptime!(args.common.chans);
    let smem_len = comptime!(args.common.smem_len);
    let has_d = comptime!(args.common.has_d);
    let has_z = comptime!(args.common.has_z);
    let has_bias = comptime!(args.common.has_bias);
    let delta_softplus = comptime!(args.common.delta_softplus);
    let use_plane = comptime!(args.common.use_plane);
    let lean = comptime!(args.common.lean);
    let one_plane = comptime!(args.common.one_plane);
    let stage = comptime!(args.stage);
    let save_chunk = comptime!(args.save_chunk);
    let pair = comptime!(args.pair);
    let dim = u.shape(1);
    let len = u.shape(2);
    let groups = bm.shape(1);
    let (slot, tid) = scan_index(cube_units, chans, use_plane);
    let (bi, gi, ch, active) = cube_channel(u.shape(0), dim, groups, slot, chans, false, false);
    // save_chunk > 0: the states at multiples of save_chunk (the backward's chunk starts)
    // into ckpt, `[batch x d_inner, chunks, N]`
    let mut ck_row = 0usize;
    if comptime!(save_chunk > 0) {
        ck_row = (bi * dim + ch) * len.div_ceil(save_chunk) * n_state;
    }
    // an inactive segment runs on zero steps (identities) and writes nothing
    let mut slot_len = 0usize;
    if active {
        slot_len = len;
    }
    let units = cube_units;
    let planes = seg_planes(slot, cube_units, use_plane);
    let hi = slot * units + tid;
    let cbase = slot * n_state;

    let mut smem_a = SharedMemory::<f32>::new(smem_len);
    let mut smem_b = SharedMemory::<f32>::new(smem_len);
    let mut smem_h = SharedMemory::<f32>::new(comptime!(cube_units * chans));
    let mut carry = SharedMemory::<f32>::new(comptime!(n_state * chans));
    // stage: B_n and C_n of the chunk, loaded once per cube (coalesced) for all its channels,
    // two buffers by state parity: the next state's values are loaded into registers during
    // this state and stored before its closing barrier (one barrier per state for staging)
    let st_len = comptime!(if stage {
        cube_units * items + cube_units * items / 32
    } else {
        1
    });
    // pair: two states per pass (one_plane only), so two buffers per parity
    let per_par = comptime!(if pair { 2 } else { 1 });
    let mut st_b = SharedMemory::<f32>::new(comptime!(2 * per_par * st_len));
    let mut st_c = SharedMemory::<f32>::new(comptime!(2 * per_par * st_len));
    let threads = comptime!(cube_units * chans);
    let pf = comptime!((cube_units * items).div_ceil(cube_units * chans));
    let mut nb = Array::<f32>::new(pf);
    let mut nc = Array::<f32>::new(pf);
    let pf2 = comptime!(if pair { pf } else { 1 });
    let mut nb2 = Array::<f32>::new(pf2);
    let mut nc2 = Array::<f32>::new(pf2);
    let mut k = tid;
    while k < n_state {
        carry[cbase + k] = 0.0f32;
        k += units;
    }
    sync_cube();

    let (bias_v, d_v) = channel_scalars(bias, dvec, ch, has_bias, has_d);
    let u_row = bi * u.stride(0) + ch * u.stride(1);
    let d_row = bi * delta.stride(0) + ch * delta.stride(1);
    let bc_row = bi * bm.stride(0) + gi * bm.stride(1);
    let cc_row = bi * cm.stride(0) + gi * cm.stride(1);

    let mut dt = Array::<f32>::new(items);
    let mut uu = Array::<f32>::new(items);
    let mut acc = Array::<f32>::new(items);
    let mut pa = Array::<f32>::new(items);
    let mut pb = Array::<f32>::new(items);
    let mut bvs = Array::<f32>::new(items);
    let items2 = comptime!(if pair { items } else { 1 });
    let mut pa1 = Array::<f32>::new(items2);
    let mut pb1 = Array::<f32>::new(items2);

    let chunk = units * items;
    if stage {
        load_stage(
            bm, cm, bc_row, cc_row, 0, 0, len, &mut nb, &mut nc, chunk, threads, pf,
        );
        store_stage(&mut st_b, &mut st_c, 0, &nb, &nc, chunk, threads, pf);
        if pair {
            load_stage(
                bm, cm, bc_row, cc_row, 1, 0, len, &mut nb2, &mut nc2, chunk, threads, pf,
            );
            store_stage(&mut st_b, &mut st_c, st_len, &nb2, &nc2, chunk, threads, pf);
        }
    }
    sync_cube();
    let mut par = 0usize;
    let mut start = 0usize;
    while start < len {
        load_steps(
            u,
            delta,
            u_row,
            d_row,
            start + tid * items,
            slot_len,
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
        if pair {
            // two states per pass (one plane per channel, n_state even): their compositions,
            // scans and recomputes interleaved, one staging barrier for both
            for np in 0..comptime!(n_state / 2) {
                let n = 2 * np;
                let a_0 = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
                let a_1 = f32::cast_from(a[ch * a.stride(0) + (n + 1) * a.stride(1)]);
                let h0_0 = carry[cbase + n];
                let h0_1 = carry[cbase + n + 1];
                let off0 = par * 2 * st_len;
                let off1 = off0 + st_len;
                if stage {
                    // prefetch the next pair's B and C (the next chunk's first pair after the last)
                    let mut nn = n + 2;
                    let mut ns = start;
                    if nn == n_state {
                        nn = 0;
                        ns = start + chunk;
                    }
                    load_stage(
                        bm, cm, bc_row, cc_row, nn, ns, len, &mut nb, &mut nc, chunk, threads, pf,
                    );
                    load_stage(
                        bm,
                        cm,
                        bc_row,
                        cc_row,
                        nn + 1,
                        ns,
                        len,
                        &mut nb2,
                        &mut nc2,
                        chunk,
                        threads,
                        pf,
                    );
                }
                let (ga0, gb0) = compose(
                    &st_b, off0, bm, bc_row, n, start, tid, slot_len, a_0, &dt, &uu, &mut pa,
                    &mut pb, &mut bvs, items, stage, false, false,
                );
                let (ga1, gb1) = compose(
                    &st_b, off1, bm, bc_row, n, start, tid, slot_len, a_1, &dt, &uu, &mut pa1,
                    &mut pb1, &mut bvs, items, stage, true, false,
                );
                let (sa0, sb0, sa1, sb1) = scan_lane2(ga0, gb0, ga1, gb1, cube_units);
                let h_end0 = sa0 * h0_0 + sb0;
                let h_end1 = sa1 * h0_1 + sb1;
                if comptime!(save_chunk > 0) {
                    let end = start + (tid + 1) * items;
                    let q = end / save_chunk;
                    if active && end < len && q * save_chunk == end {
                        ckpt[ck_row + q * n_state + n] = h_end0;
                        ckpt[ck_row + q * n_state + n + 1] = h_end1;
                    }
                }
                let prev0 = plane_shuffle_up(h_end0, 1u32);
                let prev1 = plane_shuffle_up(h_end1, 1u32);
                let mut h_0 = h0_0;
                let mut h_1 = h0_1;
                if tid > 0 {
                    h_0 = prev0;
                    h_1 = prev1;
                }
                carry[cbase + n] = plane_shuffle(h_end0, comptime!((cube_units - 1) as u32));
                carry[cbase + n + 1] = plane_shuffle(h_end1, comptime!((cube_units - 1) as u32));
                #[unroll]
                for i in 0..items {
                    let t = start + tid * items + i;
                    h_0 = pa[i] * h_0 + pb[i];
                    h_1 = pa1[i] * h_1 + pb1[i];
                    if t < slot_len {
                        if stage {
                            let j = padded(tid * items + i);
                            acc[i] += h_0 * st_c[off0 + j] + h_1 * st_c[off1 + j];
                        } else {
                            let cj = cc_row + t * cm.stride(3);
                            acc[i] += h_0 * f32::cast_from(cm[cj + n * cm.stride(2)])
                                + h_1 * f32::cast_from(cm[cj + (n + 1) * cm.stride(2)]);
                        }
                    }
                }
                if stage {
                    // the other parity's buffers were last read before the previous barrier
                    let noff = (1 - par) * 2 * st_len;
                    store_stage(&mut st_b, &mut st_c, noff, &nb, &nc, chunk, threads, pf);
                    store_stage(
                        &mut st_b,
                        &mut st_c,
                        noff + st_len,
                        &nb2,
                        &nc2,
                        chunk,
                        threads,
                        pf,
                    );
                    par = 1 - par;
                    sync_cube();
                }
            }
        } else {
            for n in 0..n_state {
                // exp is `__expf` on CUDA (the kernel's fast-math flags): ex2.approx after one multiply
                let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
                let h0 = carry[cbase + n];
                let off = par * st_len;
                if stage {
                    // prefetch the next state's B and C (the next chunk's first state after the last)
                    let mut nn = n + 1;
                    let mut ns = start;
                    if nn == n_state {
                        nn = 0;
                        ns = start + chunk;
                    }
                    load_stage(
                        bm, cm, bc_row, cc_row, nn, ns, len, &mut nb, &mut nc, chunk, threads, pf,
                    );
                }
                let (ga, gb) = compose(
                    &st_b, off, bm, bc_row, n, start, tid, slot_len, a_n, &dt, &uu, &mut pa,
                    &mut pb, &mut bvs, items, stage, false, false,
                );
                let (sa, sb) = scan_cube(
                    ga,
                    gb,
                    &mut smem_a,
                    &mut smem_b,
                    planes,
                    cube_units,
                    use_plane,
                    lean,
                    one_plane,
                    false,
                );
                // state after this unit's last step; the one before its first step is the previous unit's
                let h_end = sa * h0 + sb;
                if comptime!(save_chunk > 0) {
                    // the unit ends on a backward chunk start (not the first, not past the end)
                    let end = start + (tid + 1) * items;
                    let q = end / save_chunk;
                    if active && end < len && q * save_chunk == end {
                        ckpt[ck_row + q * n_state + n] = h_end;
                    }
                }
                let mut h = h0;
                if one_plane {
                    // the segment is one plane: the previous lane's state by a shuffle, the carry
                    // from the last lane (every lane stores the same value; only this plane reads it)
                    let prev = plane_shuffle_up(h_end, 1u32);
                    if tid > 0 {
                        h = prev;
                    }
                    carry[cbase + n] = plane_shuffle(h_end, comptime!((cube_units - 1) as u32));
                } else {
                    smem_h[hi] = h_end;
                    sync_cube();
                    if tid > 0 {
                        h = smem_h[hi - 1];
                    }
                    if tid == units - 1 {
                        carry[cbase + n] = smem_h[hi];
                    }
                }
                #[unroll]
                for i in 0..items {
                    let t = start + tid * items + i;
                    h = pa[i] * h + pb[i];
                    if t < slot_len {
                        if stage {
                            acc[i] += h * st_c[off + padded(tid * items + i)];
                        } else {
                            acc[i] += h * f32::cast_from(
                                cm[cc_row + n * cm.stride(2) + t * cm.stride(3)],
                            );
                        }
                    }
                }
                if stage {
                    // the other buffer was last read in the previous state, before its barrier
                    store_stage(
                        &mut st_b,
                        &mut st_c,
                        (1 - par) * st_len,
                        &nb,
                        &nc,
                        chunk,
                        threads,
                        pf,
                    );
                    par = 1 - par;
                    sync_cube();
                } else if !lean {
                    // lean: the next write of smem_h follows the next state's scan barrier
                    sync_cube();
                }
            }
        }
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            if t < slot_len {
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
    if active {
        write_last_state(last, &carry, bi, ch, cbase, tid, units, n_state);
    }
}

/// Index into a chunk-sized shared buffer with one padding word per 32, so that units writing
/// their `items` consecutive steps (stride `items` across lanes) do not collide in banks.
#[cube]
fn padded(j: usize) -> usize {
    j + j / 32
}

/// B_n and C_n of the chunk starting at `start` into registers: `pf` values per unit, the
/// cube's `threads` units striding over the chunk (coalesced); zero past `len`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_stage<F: Float>(
    bm: &Tensor<F>,
    cm: &Tensor<F>,
    bc_row: usize,
    cc_row: usize,
    n: usize,
    start: usize,
    len: usize,
    nb: &mut Array<f32>,
    nc: &mut Array<f32>,
    #[comptime] chunk: usize,
    #[comptime] threads: usize,
    #[comptime] pf: usize,
) {
    #[unroll]
    for p in 0..pf {
        let j = UNIT_POS as usize + p * threads;
        let t = start + j;
        let mut bv = 0.0f32;
        let mut cv = 0.0f32;
        if j < chunk && t < len {
            bv = f32::cast_from(bm[bc_row + n * bm.stride(2) + t * bm.stride(3)]);
            cv = f32::cast_from(cm[cc_row + n * cm.stride(2) + t * cm.stride(3)]);
        }
        nb[p] = bv;
        nc[p] = cv;
    }
}

/// Stores the values of [`load_stage`] into the staging buffers at `off` (padded).
#[cube]
#[allow(clippy::too_many_arguments)]
fn store_stage(
    st_b: &mut SharedMemory<f32>,
    st_c: &mut SharedMemory<f32>,
    off: usize,
    nb: &Array<f32>,
    nc: &Array<f32>,
    #[comptime] chunk: usize,
    #[comptime] threads: usize,
    #[comptime] pf: usize,
) {
    #[unroll]
    for p in 0..pf {
        let j = UNIT_POS as usize + p * threads;
        if j < chunk {
            st_b[off + padded(j)] = nb[p];
            st_c[off + padded(j)] = nc[p];
        }
    }
}

/// Backward selective scan, same cube layout as [`scan_fwd`] (`chans` channels of one
/// (batch, group) per cube). A forward sweep saves the state at every chunk start but the
/// first (`ckpt`, `[cubes x chans, chunks, N]` f32 scratch); then, chunk by chunk from the
/// end and per state, the chunk's states are recomputed (forward cube scan) and the gradient
/// carried backwards, mu_t = exp(dt_t A) lambda_t with lambda_t = g_t C_t + mu_{t+1}, by a
/// reverse cube scan. du, d delta and dz are written per step. dB and dC are summed over the
/// cube's channels in shared memory, then added with one coalesced f32 atomic per (cube,
/// state, step); dA (summed per plane first), dD and d delta_bias with f32 atomics.
#[cube(launch_unchecked, fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf)]
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
pub fn scan_bwd<F: Float>(
    u: &Tensor<F>,
    delta: &Tensor<F>,
    a: &Tensor<f32>,
    bm: &Tensor<F>,
    cm: &Tensor<F>,
    dvec: &Tensor<f32>,
    z: &Tensor<F>,
    bias: &Tensor<f32>,
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
    args: &ScanBwdArgs,
    #[define(F)] _dtype: StorageType,
) {
    // the compile-time arguments, as locals (each a comptime value, as a `#[comptime]` parameter)
    let n_state = comptime!(args.common.n_state);
    let items = comptime!(args.common.items);
    let cube_units = comptime!(args.common.cube_units);
    let chans = comptime!(args.common.chans);
    let smem_len = comptime!(args.common.smem_len);
    let has_d = comptime!(args.common.has_d);
    let has_z = comptime!(args.common.has_z);
    let has_bias = comptime!(args.common.has_bias);
    let delta_softplus = comptime!(args.common.delta_softplus);
    let use_plane = comptime!(args.common.use_plane);
    let lean = comptime!(args.common.lean);
    let one_plane = comptime!(args.common.one_plane);
    let keep_b = comptime!(args.keep_b);
    let stage_bwd = comptime!(args.stage_bwd);
    let saved = comptime!(args.saved);
    let red_split = comptime!(args.red_split);
    let fold = comptime!(args.fold);
    let dim = u.shape(1);
    let len = u.shape(2);
    let groups = bm.shape(1);
    let (slot, tid) = scan_index(cube_units, chans, use_plane);
    let (bi, gi, ch, active) = cube_channel(u.shape(0), dim, groups, slot, chans, false, false);
    let mut slot_len = 0usize;
    if active {
        slot_len = len;
    }
    let units = cube_units;
    let planes = seg_planes(slot, cube_units, use_plane);
    let hi = slot * units + tid;
    let cbase = slot * n_state;
    let chunk = units * items;
    let chunks = len.div_ceil(chunk);

    let mut smem_a = SharedMemory::<f32>::new(smem_len);
    let mut smem_b = SharedMemory::<f32>::new(smem_len);
    let mut smem_h = SharedMemory::<f32>::new(comptime!(cube_units * chans));
    let mut carry = SharedMemory::<f32>::new(comptime!(n_state * chans));
    // per (channel, step) dB and dC terms of one state and chunk, padded (see `padded`)
    let red_len = comptime!(cube_units * items + cube_units * items / 32);
    let mut red_b = SharedMemory::<f32>::new(comptime!(red_len * chans));
    let mut red_c = SharedMemory::<f32>::new(comptime!(red_len * chans));
    // stage_bwd: B_n and C_n of the chunk in shared memory, two buffers (state parity); state
    // n+1's are loaded during state n and stored before its reduction barrier
    let st_len = comptime!(if stage_bwd {
        cube_units * items + cube_units * items / 32
    } else {
        1
    });
    let mut st_b = SharedMemory::<f32>::new(comptime!(2 * st_len));
    let mut st_c = SharedMemory::<f32>::new(comptime!(2 * st_len));
    let threads = comptime!(cube_units * chans);
    let pf = comptime!((cube_units * items).div_ceil(cube_units * chans));
    let mut nb = Array::<f32>::new(pf);
    let mut nc = Array::<f32>::new(pf);

    let (bias_v, d_v) = channel_scalars(bias, dvec, ch, has_bias, has_d);
    let u_row = bi * u.stride(0) + ch * u.stride(1);
    let d_row = bi * delta.stride(0) + ch * delta.stride(1);
    let bc_row = bi * bm.stride(0) + gi * bm.stride(1);
    let cc_row = bi * cm.stride(0) + gi * cm.stride(1);
    // the states at chunk starts, `[batch x d_inner, chunks, N]` (saved: written by the forward)
    let ck_row = (bi * dim + ch) * chunks * n_state;

    let mut dt = Array::<f32>::new(items);
    let mut uu = Array::<f32>::new(items);
    let mut pa = Array::<f32>::new(items);
    let mut pb = Array::<f32>::new(items);
    let mut bvs = Array::<f32>::new(items);

    // pass 1: the state at every chunk start (none needed past the last chunk's start; none
    // at all when the forward saved them)
    let mut k = tid;
    while k < n_state {
        carry[cbase + k] = 0.0f32;
        k += units;
    }
    sync_cube();
    let mut c = 0usize;
    if comptime!(saved) {
        c = chunks;
    }
    while c + 1 < chunks {
        let start = c * chunk;
        load_steps(
            u,
            delta,
            u_row,
            d_row,
            start + tid * items,
            slot_len,
            bias_v,
            &mut dt,
            &mut uu,
            items,
            delta_softplus,
        );
        for n in 0..n_state {
            let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
            let h0 = carry[cbase + n];
            let (ga, gb) = compose_steps(
                bm,
                bc_row,
                n,
                start + tid * items,
                slot_len,
                a_n,
                &dt,
                &uu,
                &mut pa,
                &mut pb,
                &mut bvs,
                items,
                false,
            );
            let (sa, sb) = scan_cube(
                ga,
                gb,
                &mut smem_a,
                &mut smem_b,
                planes,
                cube_units,
                use_plane,
                lean,
                one_plane,
                false,
            );
            let h_end = sa * h0 + sb;
            if one_plane {
                // every lane stores the last lane's state (only this plane reads it)
                let last = plane_shuffle(h_end, comptime!((cube_units - 1) as u32));
                carry[cbase + n] = last;
                if active && tid == units - 1 {
                    ckpt[ck_row + (c + 1) * n_state + n] = last;
                }
            } else {
                smem_h[hi] = h_end;
                sync_cube();
                if tid == units - 1 {
                    carry[cbase + n] = smem_h[hi];
                    if active {
                        ckpt[ck_row + (c + 1) * n_state + n] = smem_h[hi];
                    }
                }
                sync_cube();
            }
        }
        c += 1;
    }

    // pass 2: chunks from the end
    let mut gy = Array::<f32>::new(items);
    let mut yacc = Array::<f32>::new(items);
    let mut ddt = Array::<f32>::new(items);
    let mut dus = Array::<f32>::new(items);
    let mut hs = Array::<f32>::new(items);
    let mut cvs = Array::<f32>::new(items);
    let mut k = tid;
    while k < n_state {
        carry[cbase + k] = 0.0f32; // now the carried mu per state
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
            slot_len,
            bias_v,
            &mut dt,
            &mut uu,
            items,
            delta_softplus,
        );
        if fold {
            // uu holds dt u from here (u itself is read again for the chunk's outputs)
            #[unroll]
            for i in 0..items {
                uu[i] *= dt[i];
            }
        }
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            let mut g = 0.0f32;
            if t < slot_len {
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
        if stage_bwd {
            load_stage(
                bm, cm, bc_row, cc_row, 0, start, len, &mut nb, &mut nc, chunk, threads, pf,
            );
            store_stage(&mut st_b, &mut st_c, 0, &nb, &nc, chunk, threads, pf);
            sync_cube();
        }
        for n in 0..n_state {
            let a_n = f32::cast_from(a[ch * a.stride(0) + n * a.stride(1)]);
            let off = (n % 2) * st_len;
            // prefetch state n+1's B and C (stored before this state's reduction barrier)
            if stage_bwd && n + 1 < n_state {
                load_stage(
                    bm,
                    cm,
                    bc_row,
                    cc_row,
                    n + 1,
                    start,
                    len,
                    &mut nb,
                    &mut nc,
                    chunk,
                    threads,
                    pf,
                );
            }
            // recompute the chunk's states (the first chunk starts from zero)
            let mut h0 = 0.0f32;
            if c > 0 && active {
                h0 = ckpt[ck_row + c * n_state + n];
            }
            let (ga, gb) = compose(
                &st_b, off, bm, bc_row, n, start, tid, slot_len, a_n, &dt, &uu, &mut pa, &mut pb,
                &mut bvs, items, stage_bwd, false, fold,
            );
            let (sa, sb) = scan_cube(
                ga,
                gb,
                &mut smem_a,
                &mut smem_b,
                planes,
                cube_units,
                use_plane,
                lean,
                one_plane,
                false,
            );
            let h_end = sa * h0 + sb;
            let mut h = h0;
            if one_plane {
                let prev = plane_shuffle_up(h_end, 1u32);
                if tid > 0 {
                    h = prev;
                }
            } else {
                smem_h[hi] = h_end;
                sync_cube();
                if tid > 0 {
                    h = smem_h[hi - 1];
                }
                // lean: the reverse scan's first barrier comes before the next write of smem_h
                if comptime!(!lean) {
                    sync_cube();
                }
            }
            let h_start = h;
            #[unroll]
            for i in 0..items {
                h = pa[i] * h + pb[i];
                hs[i] = h;
            }
            // reverse: steps mu <- a_t (g_t C_t + mu), later steps first
            let mu0 = carry[cbase + n];
            let mut ra = 1.0f32;
            let mut rb = 0.0f32;
            #[unroll]
            for j in 0..items {
                let i = items - 1 - j;
                let t = start + tid * items + i;
                let mut cv = 0.0f32;
                if t < slot_len {
                    if stage_bwd {
                        cv = st_c[off + padded(tid * items + i)];
                    } else {
                        cv = f32::cast_from(cm[cc_row + n * cm.stride(2) + t * cm.stride(3)]);
                    }
                }
                cvs[i] = cv;
                rb = pa[i] * (rb + gy[i] * cv);
                if !fold {
                    ra *= pa[i];
                }
            }
            if fold {
                // the product of the unit's pa is the composition's ga (other order)
                ra = ga;
            }
            let (qa, qb) = scan_cube(
                ra,
                rb,
                &mut smem_a,
                &mut smem_b,
                planes,
                cube_units,
                use_plane,
                lean,
                one_plane,
                true,
            );
            let mu_start = qa * mu0 + qb;
            let mut mu = mu0;
            if one_plane {
                let next = plane_shuffle_down(mu_start, 1u32);
                if tid + 1 < units {
                    mu = next;
                }
                // every lane stores lane 0's value (only this plane reads it)
                carry[cbase + n] = plane_shuffle(mu_start, 0u32);
            } else {
                smem_h[hi] = mu_start;
                sync_cube();
                if tid + 1 < units {
                    mu = smem_h[hi + 1];
                }
                if tid == 0 {
                    carry[cbase + n] = smem_h[hi];
                }
            }
            let mut d_a = 0.0f32;
            let rbase = slot * red_len;
            #[unroll]
            for j in 0..items {
                let i = items - 1 - j;
                let t = start + tid * items + i;
                let cv = cvs[i];
                let mut bv = 0.0f32;
                if keep_b {
                    bv = bvs[i];
                } else if t < slot_len {
                    bv = f32::cast_from(bm[bc_row + n * bm.stride(2) + t * bm.stride(3)]);
                }
                let mut hprev = h_start;
                if i > 0 {
                    hprev = hs[i - 1];
                }
                // zero past the end (gy, dt, u and C are zero there)
                let lam = gy[i] * cv + mu;
                yacc[i] += cv * hs[i];
                let dh = pa[i] * hprev;
                if fold {
                    // ddt's B u term summed over the states is u dus (added per chunk at
                    // the end); uu is dt u here
                    let ldh = lam * dh;
                    ddt[i] += a_n * ldh;
                    dus[i] += lam * bv;
                    d_a += dt[i] * ldh;
                    let r = rbase + padded(tid * items + i);
                    red_b[r] = lam * uu[i];
                    red_c[r] = gy[i] * hs[i];
                } else {
                    ddt[i] += lam * (a_n * dh + bv * uu[i]);
                    dus[i] += lam * bv;
                    d_a += lam * dt[i] * dh;
                    let r = rbase + padded(tid * items + i);
                    red_b[r] = lam * dt[i] * uu[i];
                    red_c[r] = gy[i] * hs[i];
                }
                mu = pa[i] * lam;
            }
            // dA: summed over the plane first (one atomic per plane, not per unit)
            if active {
                if use_plane {
                    let total = plane_sum(d_a);
                    if UNIT_POS_PLANE == 0 {
                        da[ch * da.stride(0) + n * da.stride(1)].fetch_add(total);
                    }
                } else {
                    da[ch * da.stride(0) + n * da.stride(1)].fetch_add(d_a);
                }
            }
            if stage_bwd && n + 1 < n_state {
                let noff = ((n + 1) % 2) * st_len;
                store_stage(&mut st_b, &mut st_c, noff, &nb, &nc, chunk, threads, pf);
            }
            sync_cube();
            // dB, dC: summed over the cube's channels, one coalesced atomic per step
            if red_split {
                // dB by units [0, chunk), dC by [chunk, 2 chunk) (modulo the cube's units)
                let mut j = UNIT_POS as usize;
                while j < 2 * chunk {
                    let is_c = j >= chunk;
                    let mut jj = j;
                    if is_c {
                        jj = j - chunk;
                    }
                    let t = start + jj;
                    if t < len {
                        let r = padded(jj);
                        let mut acc = 0.0f32;
                        if is_c {
                            #[unroll]
                            for k in 0..chans {
                                acc += red_c[k * red_len + r];
                            }
                            dc[bi * dc.stride(0)
                                + gi * dc.stride(1)
                                + n * dc.stride(2)
                                + t * dc.stride(3)]
                            .fetch_add(acc);
                        } else {
                            #[unroll]
                            for k in 0..chans {
                                acc += red_b[k * red_len + r];
                            }
                            db[bi * db.stride(0)
                                + gi * db.stride(1)
                                + n * db.stride(2)
                                + t * db.stride(3)]
                            .fetch_add(acc);
                        }
                    }
                    j += units * chans;
                }
            } else {
                let mut j = UNIT_POS as usize;
                while j < chunk {
                    let t = start + j;
                    if t < len {
                        let r = padded(j);
                        let mut sb_ = 0.0f32;
                        let mut sc_ = 0.0f32;
                        #[unroll]
                        for k in 0..chans {
                            sb_ += red_b[k * red_len + r];
                            sc_ += red_c[k * red_len + r];
                        }
                        db[bi * db.stride(0)
                            + gi * db.stride(1)
                            + n * db.stride(2)
                            + t * db.stride(3)]
                        .fetch_add(sb_);
                        dc[bi * dc.stride(0)
                            + gi * dc.stride(1)
                            + n * dc.stride(2)
                            + t * dc.stride(3)]
                        .fetch_add(sc_);
                    }
                    j += units * chans;
                }
            }
            sync_cube();
        }
        #[unroll]
        for i in 0..items {
            let t = start + tid * items + i;
            if t < slot_len {
                du[bi * du.stride(0) + ch * du.stride(1) + t * du.stride(2)] =
                    F::cast_from(gy[i] * d_v + dt[i] * dus[i]);
                let mut g = ddt[i];
                if fold {
                    // uu holds dt u, so u is read again: d delta's B u term, and dD's
                    let uf = f32::cast_from(u[u_row + t * u.stride(2)]);
                    g += uf * dus[i];
                    d_d += gy[i] * uf;
                }
                if delta_softplus {
                    let raw = f32::cast_from(delta[d_row + t * delta.stride(2)]) + bias_v;
                    if raw <= 20.0 {
                        g *= 1.0f32 / (1.0f32 + f32::exp(-raw));
                    }
                }
                ddelta[bi * ddelta.stride(0) + ch * ddelta.stride(1) + t * ddelta.stride(2)] =
                    F::cast_from(g);
                d_bias += g;
                if !fold {
                    d_d += gy[i] * uu[i];
                }
                if has_z {
                    let zv =
                        f32::cast_from(z[bi * z.stride(0) + ch * z.stride(1) + t * z.stride(2)]);
                    let dyv = f32::cast_from(
                        dy[bi * dy.stride(0) + ch * dy.stride(1) + t * dy.stride(2)],
                    );
                    let sg = 1.0f32 / (1.0f32 + f32::exp(-zv));
                    let y = if fold {
                        yacc[i] + d_v * f32::cast_from(u[u_row + t * u.stride(2)])
                    } else {
                        yacc[i] + d_v * uu[i]
                    };
                    dz[bi * dz.stride(0) + ch * dz.stride(1) + t * dz.stride(2)] =
                        F::cast_from(dyv * y * sg * (1.0f32 + zv * (1.0f32 - sg)));
                }
            }
        }
    }
    if active {
        if has_d {
            dd[ch * dd.stride(0)].fetch_add(d_d);
        }
        if has_bias {
            dbias[ch * dbias.stride(0)].fetch_add(d_bias);
        }
    }
}
