//! The fast CPU selective scan on plain `f32` slices: rayon over (batch, channel) rows, the
//! state in a small per-thread buffer (never a `[batch, d_inner, L, N]` array), inner loops
//! over the state dimension in lanes of 8 that the compiler vectorises, softplus / D / z
//! fused, exp computed as a polynomial exp2 with log2(e) folded into A. An AVX2+FMA build of
//! the same code is chosen at run time where the CPU has it.
//!
//! Layouts (row-major, contiguous): u, delta, z, y: `[batch, dim, len]`; A: `[dim, state]`;
//! B, C: `[batch, groups, state, len]`; D, delta_bias: `[dim]`; last state `[batch, dim, state]`.

use rayon::prelude::*;

/// Sizes of a scan. `dim` must be a multiple of `groups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanDims {
    /// Batch size.
    pub batch: usize,
    /// Channels (d_inner).
    pub dim: usize,
    /// Sequence length L.
    pub len: usize,
    /// State size N.
    pub state: usize,
    /// Groups G of B and C (channels `g * dim / G ..` share group g).
    pub groups: usize,
}

/// Borrowed inputs of [`forward`] and [`backward`].
#[derive(Debug, Clone, Copy)]
pub struct CpuScanInputs<'a> {
    /// `[batch, dim, len]`
    pub u: &'a [f32],
    /// `[batch, dim, len]`
    pub delta: &'a [f32],
    /// `[dim, state]`
    pub a: &'a [f32],
    /// `[batch, groups, state, len]`
    pub b: &'a [f32],
    /// `[batch, groups, state, len]`
    pub c: &'a [f32],
    /// `[dim]`
    pub d: Option<&'a [f32]>,
    /// `[batch, dim, len]`
    pub z: Option<&'a [f32]>,
    /// `[dim]`
    pub delta_bias: Option<&'a [f32]>,
    /// Apply softplus to `delta + delta_bias`.
    pub delta_softplus: bool,
}

/// Gradients from [`backward`], in the layouts of the inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuScanGrads {
    /// d u
    pub du: Vec<f32>,
    /// d delta
    pub ddelta: Vec<f32>,
    /// d A
    pub da: Vec<f32>,
    /// d B
    pub db: Vec<f32>,
    /// d C
    pub dc: Vec<f32>,
    /// d D (when D was given)
    pub dd: Option<Vec<f32>>,
    /// d z (when z was given)
    pub dz: Option<Vec<f32>>,
    /// d delta_bias (when given)
    pub ddelta_bias: Option<Vec<f32>>,
}

const LANES: usize = 8;
/// Chunk of time steps between saved states in the backward pass.
const CHUNK: usize = 64;
const LOG2E: f32 = std::f32::consts::LOG2_E;

/// 2^x for x in about [-127, 127], relative error below 2e-7; 0 below -127.
///
/// Round to the nearest integer r with the 1.5 * 2^23 trick (t = x + 1.5 * 2^23 holds r in its
/// low mantissa bits, which also give the exponent field of 2^r), then a degree-6 polynomial
/// for 2^f on f = x - r in [-0.5, 0.5]. Branch-free and without float-to-int conversion, so
/// loops over it vectorise (no SSE4.1 rounding needed).
#[inline(always)]
pub fn exp2_fast(x: f32) -> f32 {
    let x = if x < -127.0 { -127.0 } else { x };
    let x = if x > 127.0 { 127.0 } else { x };
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let t = x + MAGIC;
    let r = t - MAGIC;
    let f = x - r;
    // Taylor coefficients of 2^f = e^(f ln 2)
    const C1: f32 = std::f32::consts::LN_2;
    const C2: f32 = 0.240_226_5;
    const C3: f32 = 0.055_504_11;
    const C4: f32 = 0.009_618_129;
    const C5: f32 = 0.001_333_355_8;
    const C6: f32 = 0.000_154_035_3;
    let p = 1.0 + f * (C1 + f * (C2 + f * (C3 + f * (C4 + f * (C5 + f * C6)))));
    // low bits of t are r (two's complement in the mantissa): (r + 127) << 23 is 2^r
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    p * scale
}

/// ln(x) for finite x > 0 (normal), relative error about 1e-7: x = 2^e m with m in
/// [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m - 1) / (m + 1), by its odd series to s^11.
/// Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn ln_fast(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = if big { e + 1 } else { e };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s
        * (2.0
            + s2 * (2.0 / 3.0
                + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0 + s2 * (2.0 / 11.0))))));
    e as f32 * std::f32::consts::LN_2 + p
}

/// softplus with PyTorch's threshold (x above 20 is returned as is), branch-free:
/// ln(1 + e^x) with the rounding of 1 + e^x corrected (log1p(y) = ln(u) y / (u - 1)).
/// Relative error below 3e-7 + 1e-7 |x| (the f32 product x log2(e) dominates for large |x|).
#[inline(always)]
pub fn softplus_fast(x: f32) -> f32 {
    let y = exp2_fast(x.min(20.0) * LOG2E);
    let u = 1.0 + y;
    let d = u - 1.0;
    let l = if d == 0.0 { y } else { ln_fast(u) * (y / d) };
    if x > 20.0 { x } else { l }
}

/// 1 / (1 + e^-x), branch-free; relative error below 3e-7 + 1e-7 |x|.
#[inline(always)]
pub fn sigmoid_fast(x: f32) -> f32 {
    1.0 / (1.0 + exp2_fast(-x * LOG2E))
}

fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// `[outer, state, len]` -> `[outer, len, np]` with the state padded by zeros to `np`.
fn transpose_pad(x: &[f32], outer: usize, state: usize, len: usize, np: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; outer * len * np];
    out.par_chunks_mut(len * np)
        .enumerate()
        .for_each(|(o, dst)| {
            let src = &x[o * state * len..(o + 1) * state * len];
            for n in 0..state {
                for t in 0..len {
                    dst[t * np + n] = src[n * len + t];
                }
            }
        });
    out
}

/// Per-row constants.
#[derive(Clone, Copy)]
struct Row<'a> {
    u: &'a [f32],
    dl: &'a [f32],
    z: Option<&'a [f32]>,
    /// A * log2(e), padded with zeros to np
    a2: &'a [f32],
    /// A, padded
    a: &'a [f32],
    /// `[len, np]`
    bt: &'a [f32],
    /// `[len, np]`
    ct: &'a [f32],
    d: f32,
    bias: f32,
    softplus: bool,
}

impl Row<'_> {
    /// dt = softplus?(delta + bias) for every step (a vectorised pass before the scan).
    #[inline(always)]
    fn fill_dt(&self, dt: &mut [f32]) {
        let bias = self.bias;
        if self.softplus {
            for (o, &x) in dt.iter_mut().zip(self.dl) {
                *o = softplus_fast(x + bias);
            }
        } else {
            for (o, &x) in dt.iter_mut().zip(self.dl) {
                *o = x + bias;
            }
        }
    }
}

/// One time step: h <- exp(dt A) h + dt u B_t; returns C_t . h. Written as three plain
/// loops over the (padded) state so that each vectorises; `da` is scratch of the same length.
#[inline(always)]
fn step(
    h: &mut [f32],
    da: &mut [f32],
    a2: &[f32],
    bt: &[f32],
    ct: &[f32],
    dt: f32,
    du: f32,
) -> f32 {
    let np = h.len();
    let (da, a2, bt, ct) = (&mut da[..np], &a2[..np], &bt[..np], &ct[..np]);
    for (d, &a) in da.iter_mut().zip(a2) {
        *d = exp2_fast(dt * a);
    }
    for ((hv, &d), &b) in h.iter_mut().zip(da.iter()).zip(bt) {
        *hv = d * *hv + du * b;
    }
    let mut acc = [0.0f32; LANES];
    for (hc, cc) in h.chunks_exact(LANES).zip(ct.chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += hc[k] * cc[k];
        }
    }
    acc.iter().sum()
}

/// Per-thread buffers of the forward pass.
struct FwdScratch {
    h: Vec<f32>,
    da: Vec<f32>,
    dt: Vec<f32>,
    gate: Vec<f32>,
}

#[inline(always)]
fn row_forward_impl(r: &Row<'_>, np: usize, s: &mut FwdScratch, y: &mut [f32]) {
    let len = y.len();
    s.h.fill(0.0);
    s.dt.resize(len, 0.0);
    r.fill_dt(&mut s.dt);
    let (h, da) = (&mut s.h, &mut s.da);
    for (t, yt) in y.iter_mut().enumerate() {
        let dt = s.dt[t];
        let ut = r.u[t];
        *yt = step(
            h,
            da,
            r.a2,
            &r.bt[t * np..(t + 1) * np],
            &r.ct[t * np..(t + 1) * np],
            dt,
            dt * ut,
        ) + r.d * ut;
    }
    if let Some(z) = r.z {
        s.gate.resize(len, 0.0);
        for (g, &zt) in s.gate.iter_mut().zip(z) {
            *g = zt * sigmoid_fast(zt);
        }
        for (yt, g) in y.iter_mut().zip(&s.gate) {
            *yt *= g;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_forward_avx2(r: &Row<'_>, np: usize, s: &mut FwdScratch, y: &mut [f32]) {
    row_forward_impl(r, np, s, y)
}

fn row_forward(r: &Row<'_>, np: usize, s: &mut FwdScratch, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { row_forward_avx2(r, np, s, y) };
    }
    row_forward_impl(r, np, s, y)
}

/// Scratch of one backward worker.
struct Scratch {
    h: Vec<f32>,
    ckpt: Vec<f32>,
    hs: Vec<f32>,
    /// exp(dt A) of every step of the row (`[len, np]`), from the checkpoint pass
    das: Vec<f32>,
    dh: Vec<f32>,
    /// dt of every step of the row
    dt: Vec<f32>,
    lam: Vec<f32>,
    da_row: Vec<f32>,
}

impl Scratch {
    fn new(len: usize, np: usize) -> Self {
        let chunks = len.div_ceil(CHUNK);
        Scratch {
            h: vec![0.0; np],
            ckpt: vec![0.0; (chunks + 1) * np],
            hs: vec![0.0; CHUNK * np],
            das: vec![0.0; len.max(1) * np],
            dh: vec![0.0; np],
            dt: vec![0.0; len],
            lam: vec![0.0; np],
            da_row: vec![0.0; np],
        }
    }
}

/// Per-row outputs of the backward pass.
struct RowGrads<'a> {
    du: &'a mut [f32],
    ddelta: &'a mut [f32],
    dz: Option<&'a mut [f32]>,
    /// `[len, np]`, accumulated over the channels of the group
    dbt: &'a mut [f32],
    dct: &'a mut [f32],
}

/// Backward of one row: checkpoints every CHUNK steps (keeping every step's decays), then per
/// chunk (last first) recompute the states from the checkpoint and run the reverse scan. Returns (dD, d delta_bias) of the row; dA of the row
/// is left in `s.da_row` (padded).
#[inline(always)]
fn row_backward_impl(
    r: &Row<'_>,
    np: usize,
    dy: &[f32],
    s: &mut Scratch,
    g: &mut RowGrads<'_>,
) -> (f32, f32) {
    let len = r.u.len();
    r.fill_dt(&mut s.dt);
    // pass 1: states at chunk starts
    let h = &mut s.h;
    h.fill(0.0);
    s.ckpt[..np].fill(0.0);
    for t in 0..len {
        let dt = s.dt[t];
        let du = dt * r.u[t];
        let bt = &r.bt[t * np..(t + 1) * np];
        let da = &mut s.das[t * np..(t + 1) * np];
        for (d, &a2) in da.iter_mut().zip(r.a2) {
            *d = exp2_fast(dt * a2);
        }
        for ((hv, &d), &b) in h.iter_mut().zip(da.iter()).zip(bt) {
            *hv = d * *hv + du * b;
        }
        if (t + 1) % CHUNK == 0 {
            let k = (t + 1) / CHUNK;
            s.ckpt[k * np..(k + 1) * np].copy_from_slice(h);
        }
    }
    // pass 2: reverse, chunk by chunk
    let lam = &mut s.lam;
    lam.fill(0.0);
    s.da_row.fill(0.0);
    let (mut d_d, mut d_bias) = (0.0f32, 0.0f32);
    let chunks = len.div_ceil(CHUNK);
    for k in (0..chunks).rev() {
        let (t0, t1) = (k * CHUNK, ((k + 1) * CHUNK).min(len));
        // recompute the states and decays of the chunk
        for t in t0..t1 {
            let i = t - t0;
            let dt = s.dt[t];
            let du = dt * r.u[t];
            let bt = &r.bt[t * np..(t + 1) * np];
            let (before, cur) = s.hs.split_at_mut(i * np);
            let hprev: &[f32] = if i == 0 {
                &s.ckpt[k * np..(k + 1) * np]
            } else {
                &before[(i - 1) * np..]
            };
            let das = &s.das[t * np..(t + 1) * np]; // kept from pass 1
            for (((c, &d), &hp), &b) in cur[..np].iter_mut().zip(das.iter()).zip(hprev).zip(bt) {
                *c = d * hp + du * b;
            }
        }
        for t in (t0..t1).rev() {
            let i = t - t0;
            let dt = s.dt[t];
            let ut = r.u[t];
            let hcur = &s.hs[i * np..(i + 1) * np];
            let hprev: &[f32] = if i == 0 {
                &s.ckpt[k * np..(k + 1) * np]
            } else {
                &s.hs[(i - 1) * np..i * np]
            };
            let das = &s.das[t * np..(t + 1) * np];
            let bt = &r.bt[t * np..(t + 1) * np];
            let ct = &r.ct[t * np..(t + 1) * np];
            let mut gy = dy[t];
            if let (Some(z), Some(dz)) = (r.z, g.dz.as_deref_mut()) {
                let mut acc = [0.0f32; LANES];
                for (hc, cc) in hcur.chunks_exact(LANES).zip(ct.chunks_exact(LANES)) {
                    for k in 0..LANES {
                        acc[k] += hc[k] * cc[k];
                    }
                }
                let y: f32 = acc.iter().sum::<f32>() + r.d * ut;
                let zt = z[t];
                let sg = sigmoid_fast(zt);
                dz[t] = gy * y * sg * (1.0 + zt * (1.0 - sg));
                gy *= zt * sg;
            }
            d_d += gy * ut;
            let dbt = &mut g.dbt[t * np..(t + 1) * np];
            let dct = &mut g.dct[t * np..(t + 1) * np];
            // plain loops over the padded state (each vectorises), reductions in lanes of 8
            let dtu = dt * ut;
            let (lam, dh) = (&mut lam[..np], &mut s.dh[..np]);
            for (l, &c) in lam.iter_mut().zip(&ct[..np]) {
                *l += gy * c;
            }
            for (o, &h) in dct[..np].iter_mut().zip(&hcur[..np]) {
                *o += gy * h;
            }
            for ((o, &d), &hp) in dh.iter_mut().zip(&das[..np]).zip(&hprev[..np]) {
                *o = d * hp;
            }
            for ((o, &l), &d) in s.da_row[..np].iter_mut().zip(lam.iter()).zip(dh.iter()) {
                *o += l * dt * d;
            }
            for (o, &l) in dbt[..np].iter_mut().zip(lam.iter()) {
                *o += l * dtu;
            }
            let (mut ddt_l, mut dus_l) = ([0.0f32; LANES], [0.0f32; LANES]);
            for (((lc, ac), dc), bc) in lam
                .chunks_exact(LANES)
                .zip(r.a.chunks_exact(LANES))
                .zip(dh.chunks_exact(LANES))
                .zip(bt.chunks_exact(LANES))
            {
                for k in 0..LANES {
                    ddt_l[k] += lc[k] * (ac[k] * dc[k] + bc[k] * ut);
                    dus_l[k] += lc[k] * bc[k];
                }
            }
            for (l, &d) in lam.iter_mut().zip(&das[..np]) {
                *l *= d;
            }
            let mut ddt: f32 = ddt_l.iter().sum();
            let dus: f32 = dus_l.iter().sum();
            g.du[t] = gy * r.d + dt * dus;
            let raw = r.dl[t] + r.bias;
            // d softplus / dx = sigmoid(x), 1 above the threshold
            if r.softplus && raw <= 20.0 {
                ddt *= sigmoid_fast(raw);
            }
            g.ddelta[t] = ddt;
            d_bias += ddt;
        }
    }
    (d_d, d_bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_backward_avx2(
    r: &Row<'_>,
    np: usize,
    dy: &[f32],
    s: &mut Scratch,
    g: &mut RowGrads<'_>,
) -> (f32, f32) {
    row_backward_impl(r, np, dy, s, g)
}

fn row_backward(
    r: &Row<'_>,
    np: usize,
    dy: &[f32],
    s: &mut Scratch,
    g: &mut RowGrads<'_>,
) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { row_backward_avx2(r, np, dy, s, g) };
    }
    row_backward_impl(r, np, dy, s, g)
}

/// What the rows of one call share: A padded and scaled by log2(e), B and C transposed to
/// `[batch, groups, len, np]`.
struct Prepared {
    dims: ScanDims,
    np: usize,
    ap: Vec<f32>,
    a2: Vec<f32>,
    bt: Vec<f32>,
    ct: Vec<f32>,
}

impl Prepared {
    fn new(dims: &ScanDims, inp: &CpuScanInputs<'_>) -> Self {
        let ScanDims {
            batch,
            dim,
            len,
            state,
            groups,
        } = *dims;
        let np = round_up(state.max(1));
        let (ap, a2) = prepare_a(inp.a, dim, state, np);
        Prepared {
            dims: *dims,
            np,
            ap,
            a2,
            bt: transpose_pad(inp.b, batch * groups, state, len, np),
            ct: transpose_pad(inp.c, batch * groups, state, len, np),
        }
    }

    /// The constants of row `idx` (= batch * dim + channel).
    fn row<'a>(&'a self, inp: &CpuScanInputs<'a>, idx: usize) -> Row<'a> {
        let ScanDims {
            dim, len, groups, ..
        } = self.dims;
        let np = self.np;
        let (bi, ch) = (idx / dim, idx % dim);
        let gi = ch / (dim / groups);
        let bg = (bi * groups + gi) * len * np;
        Row {
            u: &inp.u[idx * len..(idx + 1) * len],
            dl: &inp.delta[idx * len..(idx + 1) * len],
            z: inp.z.map(|z| &z[idx * len..(idx + 1) * len]),
            a2: &self.a2[ch * np..(ch + 1) * np],
            a: &self.ap[ch * np..(ch + 1) * np],
            bt: &self.bt[bg..bg + len * np],
            ct: &self.ct[bg..bg + len * np],
            d: inp.d.map_or(0.0, |d| d[ch]),
            bias: inp.delta_bias.map_or(0.0, |b| b[ch]),
            softplus: inp.delta_softplus,
        }
    }
}

/// Padded A and A * log2(e): `[dim, np]` each.
fn prepare_a(a: &[f32], dim: usize, state: usize, np: usize) -> (Vec<f32>, Vec<f32>) {
    let mut ap = vec![0.0f32; dim * np];
    for ch in 0..dim {
        ap[ch * np..ch * np + state].copy_from_slice(&a[ch * state..(ch + 1) * state]);
    }
    let a2 = ap.iter().map(|x| x * LOG2E).collect();
    (ap, a2)
}

fn check(dims: &ScanDims, inp: &CpuScanInputs<'_>) {
    let ScanDims {
        batch,
        dim,
        len,
        state,
        groups,
    } = *dims;
    let x = batch * dim * len;
    assert!(
        groups > 0 && dim % groups == 0,
        "dim must be a multiple of groups"
    );
    assert_eq!(inp.u.len(), x, "u");
    assert_eq!(inp.delta.len(), x, "delta");
    assert_eq!(inp.a.len(), dim * state, "A");
    assert_eq!(inp.b.len(), batch * groups * state * len, "B");
    assert_eq!(inp.c.len(), batch * groups * state * len, "C");
    assert!(inp.d.is_none_or(|d| d.len() == dim), "D");
    assert!(inp.delta_bias.is_none_or(|d| d.len() == dim), "delta_bias");
    assert!(inp.z.is_none_or(|z| z.len() == x), "z");
}

/// Forward scan. Returns y `[batch, dim, len]` and, if asked, the last state
/// `[batch, dim, state]`.
///
/// # Panics
/// When slice lengths do not match `dims` (the typed API in the crate root validates shapes
/// and returns errors before calling this).
pub fn forward(
    dims: &ScanDims,
    inp: &CpuScanInputs<'_>,
    return_last_state: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    check(dims, inp);
    let ScanDims {
        batch,
        dim,
        len,
        state,
        ..
    } = *dims;
    let prep = Prepared::new(dims, inp);
    let np = prep.np;
    let mut y = vec![0.0f32; batch * dim * len];
    let mut last = vec![
        0.0f32;
        if return_last_state {
            batch * dim * state
        } else {
            0
        }
    ];
    let row = |idx: usize| prep.row(inp, idx);
    if len == 0 {
        return (y, return_last_state.then_some(last));
    }
    let init = || FwdScratch {
        h: vec![0.0f32; np],
        da: vec![0.0f32; np],
        dt: Vec::new(),
        gate: Vec::new(),
    };
    if return_last_state {
        y.par_chunks_mut(len)
            .zip(last.par_chunks_mut(state.max(1)))
            .enumerate()
            .for_each_init(init, |s, (idx, (yr, lr))| {
                row_forward(&row(idx), np, s, yr);
                lr.copy_from_slice(&s.h[..lr.len()]);
            });
    } else {
        y.par_chunks_mut(len)
            .enumerate()
            .for_each_init(init, |s, (idx, yr)| row_forward(&row(idx), np, s, yr));
    }
    (y, return_last_state.then_some(last))
}

/// Channels per block in the backward's dB / dC reduction (fixed, for reproducibility).
const ROW_BLOCK: usize = 16;

/// Backward scan: gradients of `sum(dy * y)` with respect to every input. States are
/// recomputed from checkpoints every 64 steps (O(dim x N x L / 64) extra memory per worker,
/// not O(L x N) per row). Bitwise reproducible: the reductions over channels run in a fixed
/// order whatever the thread count.
///
/// # Panics
/// When slice lengths do not match `dims`.
pub fn backward(dims: &ScanDims, inp: &CpuScanInputs<'_>, dy: &[f32]) -> CpuScanGrads {
    check(dims, inp);
    let ScanDims {
        batch,
        dim,
        len,
        state,
        groups,
    } = *dims;
    assert_eq!(dy.len(), batch * dim * len, "dy");
    let prep = Prepared::new(dims, inp);
    let np = prep.np;
    let per_group = dim / groups;
    let x = batch * dim * len;
    let mut du = vec![0.0f32; x];
    let mut ddelta = vec![0.0f32; x];
    let mut dz = inp.z.map(|_| vec![0.0f32; x]);
    // transposed, padded dB / dC: [batch, groups, len, np]
    let mut dbt = vec![0.0f32; batch * groups * len * np];
    let mut dct = vec![0.0f32; batch * groups * len * np];
    // per (batch, channel): dA row (np), dD, dbias; summed over batch at the end
    let mut da_rows = vec![0.0f32; batch * dim * np];
    let mut dd_rows = vec![0.0f32; batch * dim];
    let mut db_rows = vec![0.0f32; batch * dim];

    if len > 0 {
        for bi in 0..batch {
            for gi in 0..groups {
                let c0 = bi * dim + gi * per_group; // first row of this (batch, group)
                let rows = c0..c0 + per_group;
                let bg = (bi * groups + gi) * len * np;
                let span = rows.start * len..rows.end * len;
                let dz_rows: Vec<Option<&mut [f32]>> = match dz.as_mut() {
                    Some(v) => v[span.clone()].chunks_mut(len).map(Some).collect(),
                    None => (0..per_group).map(|_| None).collect(),
                };
                // Channels in fixed blocks of ROW_BLOCK: each block sums its rows' dB / dC in
                // order, blocks run in parallel, and the block sums are added in block order.
                // The result does not depend on the thread count or on work stealing, so the
                // backward (and training on top of it) is bitwise reproducible.
                let mut dz_rows = dz_rows;
                let partials: Vec<(Vec<f32>, Vec<f32>)> = du[span.clone()]
                    .par_chunks_mut(len * ROW_BLOCK)
                    .zip(ddelta[span].par_chunks_mut(len * ROW_BLOCK))
                    .zip(dz_rows.par_chunks_mut(ROW_BLOCK))
                    .zip(da_rows[rows.start * np..rows.end * np].par_chunks_mut(np * ROW_BLOCK))
                    .zip(dd_rows[rows.clone()].par_chunks_mut(ROW_BLOCK))
                    .zip(db_rows[rows.clone()].par_chunks_mut(ROW_BLOCK))
                    .enumerate()
                    .map(|(blk, (((((du_b, dd_b), dz_b), da_b), d_out), bias_out))| {
                        let mut acc_b = vec![0.0f32; len * np];
                        let mut acc_c = vec![0.0f32; len * np];
                        let mut scratch = Scratch::new(len, np);
                        for (k, dz_r) in dz_b.iter_mut().enumerate() {
                            let idx = c0 + blk * ROW_BLOCK + k;
                            let row = prep.row(inp, idx);
                            let mut g = RowGrads {
                                du: &mut du_b[k * len..(k + 1) * len],
                                ddelta: &mut dd_b[k * len..(k + 1) * len],
                                dz: dz_r.as_deref_mut(),
                                dbt: &mut acc_b,
                                dct: &mut acc_c,
                            };
                            let (d_d, d_bias) = row_backward(
                                &row,
                                np,
                                &dy[idx * len..(idx + 1) * len],
                                &mut scratch,
                                &mut g,
                            );
                            da_b[k * np..(k + 1) * np].copy_from_slice(&scratch.da_row);
                            d_out[k] = d_d;
                            bias_out[k] = d_bias;
                        }
                        (acc_b, acc_c)
                    })
                    .collect();
                let mut sum_b = vec![0.0f32; len * np];
                let mut sum_c = vec![0.0f32; len * np];
                for (b, c) in &partials {
                    sum_b.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    sum_c.iter_mut().zip(c).for_each(|(x, y)| *x += y);
                }
                dbt[bg..bg + len * np].copy_from_slice(&sum_b);
                dct[bg..bg + len * np].copy_from_slice(&sum_c);
            }
        }
    }
    // reduce over batch, drop padding, transpose dB / dC back to [.., state, len]
    let mut da = vec![0.0f32; dim * state];
    let mut dd = vec![0.0f32; dim];
    let mut dbias = vec![0.0f32; dim];
    for bi in 0..batch {
        for ch in 0..dim {
            let r = bi * dim + ch;
            for n in 0..state {
                da[ch * state + n] += da_rows[r * np + n];
            }
            dd[ch] += dd_rows[r];
            dbias[ch] += db_rows[r];
        }
    }
    let untranspose = |t: &[f32]| {
        let mut out = vec![0.0f32; batch * groups * state * len];
        out.par_chunks_mut((state * len).max(1))
            .enumerate()
            .for_each(|(o, dst)| {
                for n in 0..state {
                    for tt in 0..len {
                        dst[n * len + tt] = t[(o * len + tt) * np + n];
                    }
                }
            });
        out
    };
    CpuScanGrads {
        du,
        ddelta,
        da,
        db: untranspose(&dbt),
        dc: untranspose(&dct),
        dd: inp.d.map(|_| dd),
        dz,
        ddelta_bias: inp.delta_bias.map(|_| dbias),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_fast_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -126.0f32;
        while x < 126.0 {
            let want = (x as f64).exp2();
            let got = exp2_fast(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp2_fast(-200.0), 0.0);
    }

    #[test]
    fn ln_softplus_sigmoid_are_accurate() {
        let (mut e_ln, mut e_sp, mut e_sg) = (0.0f64, 0.0f64, 0.0f64);
        let mut x = -30.0f64;
        while x < 40.0 {
            let xf = x as f32;
            let xd = xf as f64;
            let sp = if xd > 20.0 { xd } else { xd.exp().ln_1p() };
            // e^x through exp2(x log2 e): the f32 product carries |x| x 6e-8 of relative error
            e_sp =
                e_sp.max(((softplus_fast(xf) as f64 - sp) / sp).abs() / (3e-7 + 1e-7 * xd.abs()));
            let sg = 1.0 / (1.0 + (-xd).exp());
            e_sg = e_sg.max(((sigmoid_fast(xf) as f64 - sg) / sg).abs() / (3e-7 + 1e-7 * xd.abs()));
            let p = (xd / 3.0).exp();
            e_ln = e_ln.max(
                (ln_fast(p as f32) as f64 - (p as f32 as f64).ln()).abs()
                    / (1.0 + (p as f32 as f64).ln().abs()),
            );
            x += 0.00731;
        }
        assert!(e_ln < 3e-7, "ln {e_ln:e}");
        assert!(
            e_sp < 1.0,
            "softplus error exceeds 3e-7 + 1e-7 |x| relative by {e_sp}x"
        );
        assert!(
            e_sg < 1.0,
            "sigmoid error exceeds 3e-7 + 1e-7 |x| relative by {e_sg}x"
        );
    }
}
