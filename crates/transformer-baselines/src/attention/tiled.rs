//! Flash attention on the tensor cores: the same FlashAttention-2 algorithm as the scalar
//! kernels (`kernel.rs`), with every matrix product done by planes (warps) on 16 x 16 tiles.
//!
//! - A cube has `planes` planes of 32 units; plane `p` owns 16 rows of the cube's block (query
//!   rows in the forward and the query-gradient kernel, key rows in the key/value-gradient
//!   kernel) and walks the other side in shared-memory tiles of `tile` rows.
//! - Each product `C (+)= A B` of a 16 x 16 output tile is a cooperative matrix multiply
//!   (`cmma`, f16/bf16 inputs, f32 accumulator) read from and written back to shared memory.
//!   Row-wise work (masking, the online softmax, `p = exp(s - lse)`, `ds = p (dp - delta)`,
//!   rescaling the output) is done by the plane's units on those shared-memory tiles, two units
//!   per row.
//! - Without tensor cores for the storage type (f32 storage, or a device without cooperative
//!   matrices, such as lavapipe) the same kernels run each tile product on the plane's units
//!   (`mma = false`): slow, but the same data flow, which is how CI checks them.
//!
//! The probabilities `p` and score gradients `ds` are rounded to the storage type before their
//! products (as FlashAttention-2 does); accumulators, maxima and sums stay f32.

use super::FlashConfig;
use super::kernel::{Cb, grid, head_output, keep_arg, prim, row_output, scale_of, tensor};
use burn::tensor::{DType, Tensor};
use burn_cubecl::{BoolElement, CubeRuntime, FloatElement, IntElement, tensor::CubeTensor};
use cubecl::CubeDim;
use cubecl::features::MmaConfig;
use cubecl::ir::{ElemType, FloatKind, StorageType};

/// Units per plane the tiled kernels are written for (one CUDA warp).
const PLANE: usize = 32;

#[allow(
    clippy::manual_div_ceil,
    clippy::collapsible_if,
    clippy::collapsible_else_if
)]
mod device {
    use crate::attention::kernel::device::{key_end, load_keep};
    use cubecl::cmma::{self, MatrixIdent, MatrixLayout};
    use cubecl::prelude::*;

    /// Alignment of every shared-memory tile (a cooperative-matrix load or store wants at least
    /// 32 bytes).
    const ALIGN: usize = 128;

    /// `C[16 x 16] (+)= A[16 x kdim] B[kdim x 16]` by the calling plane, in shared memory.
    /// `A` is row-major (element `(r, k)` at `a_off + r * a_stride + k`) or, with `a_col`,
    /// column-major (`a_off + k * a_stride + r`); `B` likewise (`(k, n)` at `b_off + k *
    /// b_stride + n`, or with `b_col` at `b_off + n * b_stride + k`); `C` is row-major f32.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    pub fn tile_mm<F: Float>(
        a: &SharedMemory<F>,
        a_off: usize,
        a_stride: usize,
        b: &SharedMemory<F>,
        b_off: usize,
        b_stride: usize,
        c: &mut SharedMemory<f32>,
        c_off: usize,
        c_stride: usize,
        #[comptime] kdim: usize,
        #[comptime] a_col: bool,
        #[comptime] b_col: bool,
        #[comptime] accumulate: bool,
        #[comptime] mma: bool,
    ) {
        if mma {
            let acc = unsafe {
                cmma::Matrix::<f32>::uninitialized(
                    MatrixIdent::Accumulator,
                    16usize,
                    16usize,
                    16usize,
                    MatrixLayout::Undefined,
                )
            };
            let c_end = c_off + 15usize * c_stride + 16usize;
            if accumulate {
                cmma::load_with_layout(
                    &acc,
                    &c.slice(c_off, c_end),
                    c_stride as u32,
                    MatrixLayout::RowMajor,
                );
            } else {
                cmma::fill(&acc, 0.0f32);
            }
            #[unroll]
            for kk in 0..comptime!(kdim / 16usize) {
                if a_col {
                    let a_frag = unsafe {
                        cmma::Matrix::<F>::uninitialized(
                            MatrixIdent::A,
                            16usize,
                            16usize,
                            16usize,
                            MatrixLayout::ColMajor,
                        )
                    };
                    let s = a_off + kk * 16usize * a_stride;
                    cmma::load(
                        &a_frag,
                        &a.slice(s, s + 15usize * a_stride + 16usize),
                        a_stride as u32,
                    );
                    mma_b::<F>(&a_frag, &acc, b, b_off, b_stride, kk, b_col);
                } else {
                    let a_frag = unsafe {
                        cmma::Matrix::<F>::uninitialized(
                            MatrixIdent::A,
                            16usize,
                            16usize,
                            16usize,
                            MatrixLayout::RowMajor,
                        )
                    };
                    let s = a_off + kk * 16usize;
                    cmma::load(
                        &a_frag,
                        &a.slice(s, s + 15usize * a_stride + 16usize),
                        a_stride as u32,
                    );
                    mma_b::<F>(&a_frag, &acc, b, b_off, b_stride, kk, b_col);
                }
            }
            cmma::store(
                &mut c.slice_mut(c_off, c_end),
                &acc,
                c_stride as u32,
                MatrixLayout::RowMajor,
            );
        } else {
            let mut e = UNIT_POS_X as usize;
            while e < 256usize {
                let r = e / 16usize;
                let n = e % 16usize;
                let mut s = 0.0f32;
                for kk in 0..kdim {
                    let mut av = a[a_off + r * a_stride + kk];
                    if a_col {
                        av = a[a_off + kk * a_stride + r];
                    }
                    let mut bv = b[b_off + kk * b_stride + n];
                    if b_col {
                        bv = b[b_off + n * b_stride + kk];
                    }
                    s += f32::cast_from(av) * f32::cast_from(bv);
                }
                let ci = c_off + r * c_stride + n;
                if accumulate {
                    c[ci] += s;
                } else {
                    c[ci] = s;
                }
                e += 32usize;
            }
        }
    }

    /// Loads step `kk` of `B` (row- or column-major) and runs `acc += a_frag b`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn mma_b<F: Float>(
        a_frag: &cmma::Matrix<F>,
        acc: &cmma::Matrix<f32>,
        b: &SharedMemory<F>,
        b_off: usize,
        b_stride: usize,
        kk: usize,
        #[comptime] b_col: bool,
    ) {
        if b_col {
            let b_frag = unsafe {
                cmma::Matrix::<F>::uninitialized(
                    MatrixIdent::B,
                    16usize,
                    16usize,
                    16usize,
                    MatrixLayout::ColMajor,
                )
            };
            let s = b_off + kk * 16usize;
            cmma::load(
                &b_frag,
                &b.slice(s, s + 15usize * b_stride + 16usize),
                b_stride as u32,
            );
            cmma::execute::<F, F, f32, f32>(a_frag, &b_frag, acc, acc);
        } else {
            let b_frag = unsafe {
                cmma::Matrix::<F>::uninitialized(
                    MatrixIdent::B,
                    16usize,
                    16usize,
                    16usize,
                    MatrixLayout::RowMajor,
                )
            };
            let s = b_off + kk * 16usize * b_stride;
            cmma::load(
                &b_frag,
                &b.slice(s, s + 15usize * b_stride + 16usize),
                b_stride as u32,
            );
            cmma::execute::<F, F, f32, f32>(a_frag, &b_frag, acc, acc);
        }
    }

    /// Rows `[r0, r0 + n)` of `src` (`[batch, heads, seq, d]`, any strides) at (`batch`,
    /// `head`) into `dst` (`n` rows of `d`, `ld` apart, storage type), zero past `len`; the
    /// whole cube (`units` units) shares the copy.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn load_rows<F: Float>(
        src: &Tensor<F>,
        dst: &mut SharedMemory<F>,
        batch: usize,
        head: usize,
        r0: usize,
        len: usize,
        #[comptime] n: usize,
        #[comptime] d: usize,
        #[comptime] ld: usize,
        #[comptime] units: usize,
    ) {
        let base = batch * src.stride(0) + head * src.stride(1);
        let mut e = UNIT_POS as usize;
        while e < comptime!(n * d) {
            let r = e / d;
            let c = e % d;
            let j = r0 + r;
            let mut x = F::cast_from(0.0f32);
            if j < len {
                x = src[base + j * src.stride(2) + c * src.stride(3)];
            }
            dst[r * ld + c] = x;
            e += units;
        }
    }

    /// Fills `n` f32 of `dst` with `value`.
    #[cube]
    fn fill(
        dst: &mut SharedMemory<f32>,
        value: f32,
        #[comptime] n: usize,
        #[comptime] units: usize,
    ) {
        let mut e = UNIT_POS as usize;
        while e < n {
            dst[e] = value;
            e += units;
        }
    }

    /// The forward: `o` and `lse` (contiguous `[batch, heads, seq_q]`, f32).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn flash_fwd_tiled<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        keep: &Tensor<f32>,
        o: &mut Tensor<F>,
        lse: &mut Tensor<f32>,
        scale: f32,
        blocks: u32,
        #[comptime] d: usize,
        #[comptime] planes: usize,
        #[comptime] tile: usize,
        #[comptime] pad: usize,
        #[comptime] has_mask: bool,
        #[comptime] causal: bool,
        #[comptime] mma: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let rows = comptime!(16 * planes);
        let units = comptime!(32 * planes);
        let heads = q.shape(1);
        let len_q = q.shape(2);
        let len_k = k.shape(2);
        let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
        let bh = (cube / blocks) as usize;
        let q0 = (cube % blocks) as usize * rows;
        if bh >= q.shape(0) * heads {
            terminate!();
        }
        let b = bh / heads;
        let h = bh % heads;
        let lane = UNIT_POS_X as usize;
        let p0 = UNIT_POS_Y as usize * 16;
        // row strides padded by 16 bytes (`pad` elements of the storage type; 4 for f32): rows
        // of the storage-type tiles, the f32 accumulators and the f32 and storage-type score
        // tiles start on different banks; strides stay multiples of 16 bytes and every 16-row
        // tile start a multiple of 32 bytes, as cooperative loads need
        let ld = comptime!(d + pad);
        let lacc = comptime!(d + 4);
        let lsf = comptime!(tile + 4);
        let lsh = comptime!(tile + pad);

        let mut qs = SharedMemory::<F>::new_aligned(comptime!(rows * ld), ALIGN);
        let mut ks = SharedMemory::<F>::new_aligned(comptime!(tile * ld), ALIGN);
        let mut vs = SharedMemory::<F>::new_aligned(comptime!(tile * ld), ALIGN);
        let mut ss = SharedMemory::<f32>::new_aligned(comptime!(rows * lsf), ALIGN);
        let mut ps = SharedMemory::<F>::new_aligned(comptime!(rows * lsh), ALIGN);
        let mut os = SharedMemory::<f32>::new_aligned(comptime!(rows * lacc), ALIGN);
        let mut ms = SharedMemory::<f32>::new(rows);
        let mut ls = SharedMemory::<f32>::new(rows);
        let mut red = SharedMemory::<f32>::new(comptime!(2 * rows));
        let mut vis = SharedMemory::<f32>::new(tile);

        load_rows(q, &mut qs, b, h, q0, len_q, rows, d, ld, units);
        fill(&mut os, 0.0f32, comptime!(rows * lacc), units);
        let mut lo = 0.0f32;
        lo -= 1.0e30f32;
        fill(&mut ms, lo, rows, units);
        fill(&mut ls, 0.0f32, rows, units);

        // two units per row: row `p0 + lane / 2`; unit `lane % 2` takes every other column
        let r = p0 + lane / 2;
        let half = lane % 2;
        let i = q0 + r;
        let cols = comptime!(tile / 2);
        let dh = comptime!(d / 2);

        let end = key_end(q0, len_k, rows, causal);
        let tiles = (end + tile - 1) / tile;
        for t in 0..tiles {
            let j0 = t * tile;
            sync_cube();
            load_rows(k, &mut ks, b, h, j0, len_k, tile, d, ld, units);
            load_rows(v, &mut vs, b, h, j0, len_k, tile, d, ld, units);
            load_keep(keep, &mut vis, b, j0, len_k, units, tile, has_mask);
            sync_cube();
            // S = Q K^T for the plane's rows (K^T: column-major K)
            for n in 0..comptime!(tile / 16) {
                tile_mm::<F>(
                    &qs,
                    p0 * ld,
                    ld,
                    &ks,
                    n * 16 * ld,
                    ld,
                    &mut ss,
                    p0 * lsf + n * 16,
                    lsf,
                    d,
                    false,
                    true,
                    false,
                    mma,
                );
            }
            sync_cube();
            // this half's maximum of the visible scaled scores
            let mut mx = lo;
            for c in 0..cols {
                let col = 2 * c + half;
                let j = j0 + col;
                let mut ok = vis[col] > 0.5f32;
                if causal {
                    if j > i {
                        ok = false;
                    }
                }
                if ok {
                    mx = f32::max(mx, ss[r * lsf + col] * scale);
                }
            }
            red[2 * r + half] = mx;
            sync_cube();
            let m_old = ms[r];
            let m_new = f32::max(m_old, f32::max(red[2 * r], red[2 * r + 1]));
            let alpha = f32::exp(m_old - m_new);
            let mut sum = 0.0f32;
            for c in 0..cols {
                let col = 2 * c + half;
                let j = j0 + col;
                let mut ok = vis[col] > 0.5f32;
                if causal {
                    if j > i {
                        ok = false;
                    }
                }
                let mut p = 0.0f32;
                if ok {
                    p = f32::exp(ss[r * lsf + col] * scale - m_new);
                }
                // the sum of the rounded probabilities, as the product below sees them
                let pr = F::cast_from(p);
                sum += f32::cast_from(pr);
                ps[r * lsh + col] = pr;
            }
            for c in 0..dh {
                os[r * lacc + 2 * c + half] *= alpha;
            }
            sync_cube();
            // both units of the row have read `red` and `ms`
            if half == 0 {
                ls[r] = ls[r] * alpha + sum;
                ms[r] = m_new;
            }
            sync_cube();
            if half == 1 {
                ls[r] += sum;
            }
            // O += P V for the plane's rows
            for n in 0..comptime!(d / 16) {
                tile_mm::<F>(
                    &ps,
                    p0 * lsh,
                    lsh,
                    &vs,
                    n * 16,
                    ld,
                    &mut os,
                    p0 * lacc + n * 16,
                    lacc,
                    tile,
                    false,
                    false,
                    true,
                    mma,
                );
            }
        }
        sync_cube();
        let o_base = b * o.stride(0) + h * o.stride(1);
        let mut e = UNIT_POS as usize;
        while e < comptime!(rows * d) {
            let rr = e / d;
            let c = e % d;
            let ii = q0 + rr;
            if ii < len_q {
                let l = ls[rr];
                let mut inv = 0.0f32;
                if l > 0.0f32 {
                    inv = 1.0f32 / l;
                }
                o[o_base + ii * o.stride(2) + c * o.stride(3)] =
                    F::cast_from(os[rr * lacc + c] * inv);
            }
            e += units;
        }
        let mut rr = UNIT_POS as usize;
        while rr < rows {
            let ii = q0 + rr;
            if ii < len_q {
                let l = ls[rr];
                let mut row_lse = 1.0e30f32;
                if l > 0.0f32 {
                    row_lse = ms[rr] + l.ln();
                }
                lse[bh * len_q + ii] = row_lse;
            }
            rr += units;
        }
    }

    /// Per-row f32 values `src[bh * len + i]` of rows `[i0, i0 + n)` into `dst`, `fill` past
    /// `len`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn load_row_values(
        src: &Tensor<f32>,
        dst: &mut SharedMemory<f32>,
        bh: usize,
        i0: usize,
        len: usize,
        fill: f32,
        #[comptime] n: usize,
        #[comptime] units: usize,
    ) {
        let mut r = UNIT_POS as usize;
        while r < n {
            let i = i0 + r;
            let mut x = fill;
            if i < len {
                x = src[bh * len + i];
            }
            dst[r] = x;
            r += units;
        }
    }

    /// The key/value gradients `dk`, `dv`, given `lse` and `delta` (contiguous `[batch, heads,
    /// seq_q]`, f32). Plane `p` owns 16 keys and walks the query tiles: `S^T = K Q^T`,
    /// `dP^T = V dO^T`, `P^T = exp(S^T - lse)`, `dS^T = P^T (dP^T - delta)`, then
    /// `dV += P^T dO` and `dK += dS^T Q`.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn flash_bwd_kv_tiled<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        d_o: &Tensor<F>,
        lse: &Tensor<f32>,
        delta: &Tensor<f32>,
        keep: &Tensor<f32>,
        dk: &mut Tensor<F>,
        dv: &mut Tensor<F>,
        scale: f32,
        blocks: u32,
        #[comptime] d: usize,
        #[comptime] planes: usize,
        #[comptime] tile: usize,
        #[comptime] pad: usize,
        #[comptime] has_mask: bool,
        #[comptime] causal: bool,
        #[comptime] mma: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let rows = comptime!(16 * planes);
        let units = comptime!(32 * planes);
        let heads = q.shape(1);
        let len_q = q.shape(2);
        let len_k = k.shape(2);
        let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
        let bh = (cube / blocks) as usize;
        let j0 = (cube % blocks) as usize * rows;
        if bh >= q.shape(0) * heads {
            terminate!();
        }
        let b = bh / heads;
        let h = bh % heads;
        let lane = UNIT_POS_X as usize;
        let p0 = UNIT_POS_Y as usize * 16;
        // row strides padded by 16 bytes (`pad` elements of the storage type; 4 for f32): rows
        // of the storage-type tiles, the f32 accumulators and the f32 and storage-type score
        // tiles start on different banks; strides stay multiples of 16 bytes and every 16-row
        // tile start a multiple of 32 bytes, as cooperative loads need
        let ld = comptime!(d + pad);
        let lacc = comptime!(d + 4);
        let lsf = comptime!(tile + 4);
        let lsh = comptime!(tile + pad);

        let mut ks = SharedMemory::<F>::new_aligned(comptime!(rows * ld), ALIGN);
        let mut vs = SharedMemory::<F>::new_aligned(comptime!(rows * ld), ALIGN);
        let mut qs = SharedMemory::<F>::new_aligned(comptime!(tile * ld), ALIGN);
        let mut dos = SharedMemory::<F>::new_aligned(comptime!(tile * ld), ALIGN);
        let mut sts = SharedMemory::<f32>::new_aligned(comptime!(rows * lsf), ALIGN);
        let mut dpts = SharedMemory::<f32>::new_aligned(comptime!(rows * lsf), ALIGN);
        let mut pts = SharedMemory::<F>::new_aligned(comptime!(rows * lsh), ALIGN);
        let mut dsts = SharedMemory::<F>::new_aligned(comptime!(rows * lsh), ALIGN);
        let mut dks = SharedMemory::<f32>::new_aligned(comptime!(rows * lacc), ALIGN);
        let mut dvs = SharedMemory::<f32>::new_aligned(comptime!(rows * lacc), ALIGN);
        let mut kvis = SharedMemory::<f32>::new(rows);
        let mut lss = SharedMemory::<f32>::new(tile);
        let mut dls = SharedMemory::<f32>::new(tile);

        load_rows(k, &mut ks, b, h, j0, len_k, rows, d, ld, units);
        load_rows(v, &mut vs, b, h, j0, len_k, rows, d, ld, units);
        load_keep(keep, &mut kvis, b, j0, len_k, units, rows, has_mask);
        fill(&mut dks, 0.0f32, comptime!(rows * lacc), units);
        fill(&mut dvs, 0.0f32, comptime!(rows * lacc), units);

        let r = p0 + lane / 2;
        let half = lane % 2;
        let j = j0 + r;
        let cols = comptime!(tile / 2);

        let mut first = 0usize;
        if causal {
            // queries before this cube's first key see none of its keys
            first = j0 / tile;
        }
        let tiles = (len_q + tile - 1) / tile;
        for t in first..tiles {
            let i0 = t * tile;
            sync_cube();
            load_rows(q, &mut qs, b, h, i0, len_q, tile, d, ld, units);
            load_rows(d_o, &mut dos, b, h, i0, len_q, tile, d, ld, units);
            load_row_values(lse, &mut lss, bh, i0, len_q, 1.0e30f32, tile, units);
            load_row_values(delta, &mut dls, bh, i0, len_q, 0.0f32, tile, units);
            sync_cube();
            for n in 0..comptime!(tile / 16) {
                tile_mm::<F>(
                    &ks,
                    p0 * ld,
                    ld,
                    &qs,
                    n * 16 * ld,
                    ld,
                    &mut sts,
                    p0 * lsf + n * 16,
                    lsf,
                    d,
                    false,
                    true,
                    false,
                    mma,
                );
                tile_mm::<F>(
                    &vs,
                    p0 * ld,
                    ld,
                    &dos,
                    n * 16 * ld,
                    ld,
                    &mut dpts,
                    p0 * lsf + n * 16,
                    lsf,
                    d,
                    false,
                    true,
                    false,
                    mma,
                );
            }
            sync_cube();
            let mine = kvis[r] > 0.5f32;
            for c in 0..cols {
                let col = 2 * c + half;
                let i = i0 + col;
                let mut ok = mine;
                if causal {
                    if j > i {
                        ok = false;
                    }
                }
                let mut p = 0.0f32;
                let mut g = 0.0f32;
                let at = r * lsf + col;
                if ok {
                    p = f32::exp(sts[at] * scale - lss[col]);
                    g = p * (dpts[at] - dls[col]);
                }
                pts[r * lsh + col] = F::cast_from(p);
                dsts[r * lsh + col] = F::cast_from(g);
            }
            sync_cube();
            for n in 0..comptime!(d / 16) {
                tile_mm::<F>(
                    &pts,
                    p0 * lsh,
                    lsh,
                    &dos,
                    n * 16,
                    ld,
                    &mut dvs,
                    p0 * lacc + n * 16,
                    lacc,
                    tile,
                    false,
                    false,
                    true,
                    mma,
                );
                tile_mm::<F>(
                    &dsts,
                    p0 * lsh,
                    lsh,
                    &qs,
                    n * 16,
                    ld,
                    &mut dks,
                    p0 * lacc + n * 16,
                    lacc,
                    tile,
                    false,
                    false,
                    true,
                    mma,
                );
            }
        }
        sync_cube();
        let dk_base = b * dk.stride(0) + h * dk.stride(1);
        let dv_base = b * dv.stride(0) + h * dv.stride(1);
        let mut e = UNIT_POS as usize;
        while e < comptime!(rows * d) {
            let rr = e / d;
            let c = e % d;
            let jj = j0 + rr;
            if jj < len_k {
                dk[dk_base + jj * dk.stride(2) + c * dk.stride(3)] =
                    F::cast_from(dks[rr * lacc + c] * scale);
                dv[dv_base + jj * dv.stride(2) + c * dv.stride(3)] =
                    F::cast_from(dvs[rr * lacc + c]);
            }
            e += units;
        }
    }

    /// The query gradient `dq`. Plane `p` owns 16 queries and walks the key tiles:
    /// `S = Q K^T`, `dP = dO V^T`, `dS = P (dP - delta)`, `dQ += dS K`.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn flash_bwd_q_tiled<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        d_o: &Tensor<F>,
        lse: &Tensor<f32>,
        delta: &Tensor<f32>,
        keep: &Tensor<f32>,
        dq: &mut Tensor<F>,
        scale: f32,
        blocks: u32,
        #[comptime] d: usize,
        #[comptime] planes: usize,
        #[comptime] tile: usize,
        #[comptime] pad: usize,
        #[comptime] has_mask: bool,
        #[comptime] causal: bool,
        #[comptime] mma: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let rows = comptime!(16 * planes);
        let units = comptime!(32 * planes);
        let heads = q.shape(1);
        let len_q = q.shape(2);
        let len_k = k.shape(2);
        let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
        let bh = (cube / blocks) as usize;
        let q0 = (cube % blocks) as usize * rows;
        if bh >= q.shape(0) * heads {
            terminate!();
        }
        let b = bh / heads;
        let h = bh % heads;
        let lane = UNIT_POS_X as usize;
        let p0 = UNIT_POS_Y as usize * 16;
        // row strides padded by 16 bytes (`pad` elements of the storage type; 4 for f32): rows
        // of the storage-type tiles, the f32 accumulators and the f32 and storage-type score
        // tiles start on different banks; strides stay multiples of 16 bytes and every 16-row
        // tile start a multiple of 32 bytes, as cooperative loads need
        let ld = comptime!(d + pad);
        let lacc = comptime!(d + 4);
        let lsf = comptime!(tile + 4);
        let lsh = comptime!(tile + pad);

        let mut qs = SharedMemory::<F>::new_aligned(comptime!(rows * ld), ALIGN);
        let mut dos = SharedMemory::<F>::new_aligned(comptime!(rows * ld), ALIGN);
        let mut ks = SharedMemory::<F>::new_aligned(comptime!(tile * ld), ALIGN);
        let mut vs = SharedMemory::<F>::new_aligned(comptime!(tile * ld), ALIGN);
        let mut ss = SharedMemory::<f32>::new_aligned(comptime!(rows * lsf), ALIGN);
        let mut dps = SharedMemory::<f32>::new_aligned(comptime!(rows * lsf), ALIGN);
        let mut dss = SharedMemory::<F>::new_aligned(comptime!(rows * lsh), ALIGN);
        let mut dqs = SharedMemory::<f32>::new_aligned(comptime!(rows * lacc), ALIGN);
        let mut lr = SharedMemory::<f32>::new(rows);
        let mut dr = SharedMemory::<f32>::new(rows);
        let mut vis = SharedMemory::<f32>::new(tile);

        load_rows(q, &mut qs, b, h, q0, len_q, rows, d, ld, units);
        load_rows(d_o, &mut dos, b, h, q0, len_q, rows, d, ld, units);
        load_row_values(lse, &mut lr, bh, q0, len_q, 1.0e30f32, rows, units);
        load_row_values(delta, &mut dr, bh, q0, len_q, 0.0f32, rows, units);
        fill(&mut dqs, 0.0f32, comptime!(rows * lacc), units);

        let r = p0 + lane / 2;
        let half = lane % 2;
        let i = q0 + r;
        let cols = comptime!(tile / 2);

        let end = key_end(q0, len_k, rows, causal);
        let tiles = (end + tile - 1) / tile;
        for t in 0..tiles {
            let j0 = t * tile;
            sync_cube();
            load_rows(k, &mut ks, b, h, j0, len_k, tile, d, ld, units);
            load_rows(v, &mut vs, b, h, j0, len_k, tile, d, ld, units);
            load_keep(keep, &mut vis, b, j0, len_k, units, tile, has_mask);
            sync_cube();
            for n in 0..comptime!(tile / 16) {
                tile_mm::<F>(
                    &qs,
                    p0 * ld,
                    ld,
                    &ks,
                    n * 16 * ld,
                    ld,
                    &mut ss,
                    p0 * lsf + n * 16,
                    lsf,
                    d,
                    false,
                    true,
                    false,
                    mma,
                );
                tile_mm::<F>(
                    &dos,
                    p0 * ld,
                    ld,
                    &vs,
                    n * 16 * ld,
                    ld,
                    &mut dps,
                    p0 * lsf + n * 16,
                    lsf,
                    d,
                    false,
                    true,
                    false,
                    mma,
                );
            }
            sync_cube();
            let li = lr[r];
            let di = dr[r];
            for c in 0..cols {
                let col = 2 * c + half;
                let jj = j0 + col;
                let mut ok = vis[col] > 0.5f32;
                if causal {
                    if jj > i {
                        ok = false;
                    }
                }
                let at = r * lsf + col;
                let mut g = 0.0f32;
                if ok {
                    let p = f32::exp(ss[at] * scale - li);
                    g = p * (dps[at] - di);
                }
                dss[r * lsh + col] = F::cast_from(g);
            }
            sync_cube();
            for n in 0..comptime!(d / 16) {
                tile_mm::<F>(
                    &dss,
                    p0 * lsh,
                    lsh,
                    &ks,
                    n * 16,
                    ld,
                    &mut dqs,
                    p0 * lacc + n * 16,
                    lacc,
                    tile,
                    false,
                    false,
                    true,
                    mma,
                );
            }
        }
        sync_cube();
        let dq_base = b * dq.stride(0) + h * dq.stride(1);
        let mut e = UNIT_POS as usize;
        while e < comptime!(rows * d) {
            let rr = e / d;
            let c = e % d;
            let ii = q0 + rr;
            if ii < len_q {
                dq[dq_base + ii * dq.stride(2) + c * dq.stride(3)] =
                    F::cast_from(dqs[rr * lacc + c] * scale);
            }
            e += units;
        }
    }
}

/// The three tiled kernels, which differ in their shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TiledKernel {
    /// The forward.
    Forward,
    /// The key/value gradient.
    KeyValue,
    /// The query gradient.
    Query,
}

/// Block sizes of a tiled kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TiledBlocks {
    /// Planes (of 32 units) per cube; each owns 16 rows.
    pub planes: usize,
    /// Rows of each shared-memory tile of the other side (a multiple of 16).
    pub tile: usize,
}

/// Shared memory of a tiled kernel in bytes, with `elem` bytes per stored element.
pub fn tiled_shared_bytes(
    kernel: TiledKernel,
    head_dim: usize,
    blocks: TiledBlocks,
    elem: usize,
) -> usize {
    let (r, t) = (16 * blocks.planes, blocks.tile);
    // the kernels' padded row strides
    let pad = 16 / elem;
    let (ld, lacc, lsf, lsh) = (head_dim + pad, head_dim + 4, t + 4, t + pad);
    match kernel {
        // q, k, v, P; S and the output accumulator (f32); m, l, two partial maxima per row
        // and the tile's keep flags
        TiledKernel::Forward => {
            elem * (r * ld + 2 * t * ld + r * lsh) + 4 * (r * lsf + r * lacc + 4 * r + t)
        }
        // k, v, q, dO, P^T, dS^T; S^T, dP^T, dK, dV (f32); keep flags, lse and delta
        TiledKernel::KeyValue => {
            elem * (2 * r * ld + 2 * t * ld + 2 * r * lsh)
                + 4 * (2 * r * lsf + 2 * r * lacc + r + 2 * t)
        }
        // q, dO, k, v, dS; S, dP, dQ (f32); lse, delta and keep flags
        TiledKernel::Query => {
            elem * (2 * r * ld + 2 * t * ld + r * lsh) + 4 * (2 * r * lsf + r * lacc + 2 * r + t)
        }
    }
}

/// A tiled kernel's block sizes for `head_dim` (a multiple of 16) with `elem`-byte storage,
/// under `config` and within `budget` bytes of shared memory: 4 planes (64 rows) and tiles of
/// 64 by default, halved (tile first, down to 16, then planes) until the kernel fits. `None`
/// when even one plane and a tile of 16 do not fit.
pub fn tiled_blocks(
    kernel: TiledKernel,
    head_dim: usize,
    elem: usize,
    config: &FlashConfig,
    budget: usize,
) -> Option<TiledBlocks> {
    let mut planes = config
        .block_rows
        .map(|r| r.div_ceil(16))
        .unwrap_or(4)
        .clamp(1, 16);
    let mut tile = config
        .block_tile
        .map(|t| t.div_ceil(16) * 16)
        .unwrap_or(64)
        .clamp(16, 256);
    loop {
        let b = TiledBlocks { planes, tile };
        if tiled_shared_bytes(kernel, head_dim, b, elem) <= budget {
            return Some(b);
        }
        if tile > 16 {
            tile = (tile / 2).div_ceil(16) * 16;
        } else if planes > 1 {
            planes /= 2;
        } else {
            return None;
        }
    }
}

/// Shared memory a tiled cube aims to stay within: at most half of an H100 multiprocessor's
/// 228 KiB, so that two cubes (eight planes) share one.
const TILED_BUDGET: usize = 112 * 1024;

/// Whether the device multiplies 16 x 16 x 16 tiles of `dtype` into f32 on cooperative
/// matrices, as these kernels were checked: CUDA (wmma) from Ampere on. cubecl also lists bf16
/// tiles before Ampere, where wmma has none, so the Ampere-only TF32 16 x 16 x 8 tile is asked
/// for too; other runtimes' cooperative matrices (HIP, Vulkan) are not used until checked.
fn has_mma<R: CubeRuntime>(client: &cubecl::client::ComputeClient<R>, dtype: DType) -> bool {
    let elem = match dtype {
        DType::F16 => ElemType::Float(FloatKind::F16),
        DType::BF16 => ElemType::Float(FloatKind::BF16),
        _ => return false,
    };
    if R::name(client) != "cuda" {
        return false;
    }
    let f32_ty = StorageType::Scalar(ElemType::Float(FloatKind::F32));
    let tile = |a: ElemType, m, n, k| MmaConfig {
        a_type: StorageType::Scalar(a),
        b_type: StorageType::Scalar(a),
        cd_type: f32_ty,
        m,
        n,
        k,
    };
    let cmma = &client.properties().features.matmul.cmma;
    cmma.contains(&tile(elem, 16, 16, 16))
        && cmma.contains(&tile(ElemType::Float(FloatKind::TF32), 16, 16, 8))
}

/// The tiled kernels' blocks (forward, key/value gradient, query gradient) that attention with
/// `head_dim` in `dtype` storage runs under `config` on `device`, or `None` when it runs the
/// scalar kernels there.
pub fn tiled_plan<R: CubeRuntime>(
    device: &R::Device,
    head_dim: usize,
    dtype: DType,
    config: &FlashConfig,
) -> Option<[TiledBlocks; 3]> {
    let client = R::client(device);
    decide(&client, head_dim, dtype, config)
}

/// Which kernels run: the tiled kernels' blocks (forward, key/value gradient, query gradient),
/// or `None` for the scalar kernels. [`super::FlashKernel::Auto`] takes the tiled kernels where
/// the device has tensor cores for the storage type; [`super::FlashKernel::Tiled`] wherever
/// they fit. Both need a head dim that is a multiple of 16.
pub(crate) fn choose<R: CubeRuntime>(
    t: &CubeTensor<R>,
    head_dim: usize,
    dtype: DType,
    config: &FlashConfig,
) -> Option<[TiledBlocks; 3]> {
    decide(&t.client, head_dim, dtype, config)
}

fn decide<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    head_dim: usize,
    dtype: DType,
    config: &FlashConfig,
) -> Option<[TiledBlocks; 3]> {
    use super::FlashKernel;
    let wanted = match config.kernel {
        FlashKernel::Scalar => false,
        FlashKernel::Tiled => true,
        FlashKernel::Auto => has_mma(client, dtype),
    };
    if !wanted || head_dim == 0 || !head_dim.is_multiple_of(16) {
        return None;
    }
    let budget = client
        .properties()
        .hardware
        .max_shared_memory_size
        .min(TILED_BUDGET);
    let elem = dtype.size();
    let one = |k| tiled_blocks(k, head_dim, elem, config, budget);
    Some([
        one(TiledKernel::Forward)?,
        one(TiledKernel::KeyValue)?,
        one(TiledKernel::Query)?,
    ])
}

/// The forward: the output and the row log-sum-exp.
#[allow(clippy::type_complexity)]
pub(crate) fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    q: Tensor<Cb<R, F, I, BT>, 4>,
    k: Tensor<Cb<R, F, I, BT>, 4>,
    v: Tensor<Cb<R, F, I, BT>, 4>,
    keep: Option<Tensor<Cb<R, F, I, BT>, 2>>,
    causal: bool,
    config: &FlashConfig,
    blocks: TiledBlocks,
) -> (Tensor<Cb<R, F, I, BT>, 4>, Tensor<Cb<R, F, I, BT>, 3>) {
    let [batch, heads, len_q, d] = q.dims();
    let dtype = q.dtype();
    let (q, k, v): (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) = (prim(q), prim(k), prim(v));
    let mma = has_mma(&q.client, dtype);
    let TiledBlocks { planes, tile } = blocks;
    let rows = 16 * planes;
    let client = q.client.clone();
    let (keep, has_mask) = keep_arg(keep, &q);
    let o = head_output::<R, F, I, BT>(&q, [batch, heads, len_q, d], dtype, config.poison_outputs);
    let lse = row_output::<R, F, I, BT>(&q, [batch, heads, len_q], config.poison_outputs);
    let n_blocks = len_q.div_ceil(rows);
    let o_arg: CubeTensor<R> = prim(o.clone());
    // SAFETY: cubes past batch x heads exit before any access; every global read is guarded by
    // its row's bound and the head view's strides; shared-memory tiles are sized by the same
    // comptime block sizes that index them; each cube writes only its own query rows of `o` and
    // `lse` (fresh tensors of the declared shapes).
    unsafe {
        device::flash_fwd_tiled::launch_unchecked::<R>(
            &client,
            grid(&client, batch * heads * n_blocks),
            CubeDim::new_2d(PLANE as u32, planes as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            keep.into_tensor_arg(),
            o_arg.into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            scale_of(d),
            n_blocks as u32,
            d,
            planes,
            tile,
            16 / dtype.size(),
            has_mask,
            causal,
            mma,
            dtype.into(),
        );
    }
    (o, tensor(lse))
}

/// The backward: `(dq, dk, dv)`, given contiguous f32 `lse` and `delta`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    d_o: CubeTensor<R>,
    lse: CubeTensor<R>,
    delta: CubeTensor<R>,
    keep: (CubeTensor<R>, bool),
    [batch, heads, len_q, len_k, d]: [usize; 5],
    dtype: DType,
    causal: bool,
    config: &FlashConfig,
    [kv_b, q_b]: [TiledBlocks; 2],
) -> (
    Tensor<Cb<R, F, I, BT>, 4>,
    Tensor<Cb<R, F, I, BT>, 4>,
    Tensor<Cb<R, F, I, BT>, 4>,
) {
    let client = q.client.clone();
    let mma = has_mma(&q.client, dtype);
    let (keep, has_mask) = keep;
    let poison = config.poison_outputs;
    let dq = head_output::<R, F, I, BT>(&q, [batch, heads, len_q, d], dtype, poison);
    let dk = head_output::<R, F, I, BT>(&q, [batch, heads, len_k, d], dtype, poison);
    let dv = head_output::<R, F, I, BT>(&q, [batch, heads, len_k, d], dtype, poison);
    let kv_blocks = len_k.div_ceil(16 * kv_b.planes);
    let q_blocks = len_q.div_ceil(16 * q_b.planes);
    let (dq_arg, dk_arg, dv_arg): (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) =
        (prim(dq.clone()), prim(dk.clone()), prim(dv.clone()));
    // SAFETY: as the forward; each cube writes only its own key rows of dk and dv, or its own
    // query rows of dq.
    unsafe {
        device::flash_bwd_kv_tiled::launch_unchecked::<R>(
            &client,
            grid(&client, batch * heads * kv_blocks),
            CubeDim::new_2d(PLANE as u32, kv_b.planes as u32),
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            d_o.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            keep.clone().into_tensor_arg(),
            dk_arg.into_tensor_arg(),
            dv_arg.into_tensor_arg(),
            scale_of(d),
            kv_blocks as u32,
            d,
            kv_b.planes,
            kv_b.tile,
            16 / dtype.size(),
            has_mask,
            causal,
            mma,
            dtype.into(),
        );
        device::flash_bwd_q_tiled::launch_unchecked::<R>(
            &client,
            grid(&client, batch * heads * q_blocks),
            CubeDim::new_2d(PLANE as u32, q_b.planes as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            d_o.into_tensor_arg(),
            lse.into_tensor_arg(),
            delta.into_tensor_arg(),
            keep.into_tensor_arg(),
            dq_arg.into_tensor_arg(),
            scale_of(d),
            q_blocks as u32,
            d,
            q_b.planes,
            q_b.tile,
            16 / dtype.size(),
            has_mask,
            causal,
            mma,
            dtype.into(),
        );
    }
    (dq, dk, dv)
}
