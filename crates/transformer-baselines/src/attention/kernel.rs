//! Flash attention as cubecl kernels for Burn's `CubeBackend` (CUDA, wgpu): one forward kernel
//! and two backward kernels, FlashAttention-2's algorithm on the GPU's scalar units.
//!
//! - Forward: a cube of `rows` units takes `rows` query rows of one (batch, head); each unit
//!   keeps its query row and its output accumulator in registers, in f32. The cube walks the
//!   keys in tiles of `tile` rows: its units copy a tile of `k` and `v` (and the tile's keep
//!   flags) into shared memory, then each unit folds the tile into its row with an online
//!   softmax (running maximum `m`, running sum `l`, the accumulator rescaled when `m` grows).
//!   It writes the output and the row log-sum-exp `m + ln l`. Under the causal mask a cube stops
//!   at the last key its rows can see.
//! - Backward, given `delta = rowsum(dO * O)` (tensor ops, f32):
//!   - the key/value kernel: a cube takes `rows` key rows; each unit keeps its key and value
//!     rows and their gradients in registers and walks the queries in shared-memory tiles of
//!     `q`, `dO`, `lse` and `delta`, recomputing `p = exp(s - lse)`: `dv += p dO`,
//!     `ds = p (dO·v - delta)`, `dk += ds q`. Under the causal mask it starts at its first
//!     visible query tile.
//!   - the query kernel: a cube takes `rows` query rows and walks the key tiles like the
//!     forward: `dq += ds k`.
//!
//!   Neither writes a location another unit writes: no atomics.
//!
//! No `[seq_q, seq_k]` tensor is ever allocated. Inputs may have any strides (the models pass
//! head views of `[batch, seq, heads * head_dim]`). Outputs (`o`, `dq`, `dk`, `dv`) are
//! allocated as contiguous `[batch, seq, heads, head_dim]` and returned as `[batch, heads, seq,
//! head_dim]` views, so that merging the heads back (`swap_dims(1, 2)` then `reshape`) copies
//! nothing. Storage f32, f16 or bf16; every product and sum in f32.

use super::FlashConfig;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
use cubecl::{CubeCount, CubeDim};

// Kernel code: `usize::div_ceil` has no cube expansion, and a comptime flag is tested in its own
// `if` (the branch is then dropped at expansion).
#[allow(clippy::manual_div_ceil, clippy::collapsible_if)]
pub(super) mod device {
    use cubecl::prelude::*;

    /// A tile's rows `[j0, j0 + tile)` of `src` (`[batch, heads, seq, d]`, any strides) at
    /// (`batch`, `head`) copied to `dst` (`tile x d`, f32), zero past `len`; the cube's `rows`
    /// units share the copy.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn load_tile<F: Float>(
        src: &Tensor<F>,
        dst: &mut SharedMemory<f32>,
        batch: usize,
        head: usize,
        j0: usize,
        len: usize,
        #[comptime] d: usize,
        #[comptime] rows: usize,
        #[comptime] tile: usize,
    ) {
        let base = batch * src.stride(0) + head * src.stride(1);
        let mut e = UNIT_POS as usize;
        while e < comptime!(tile * d) {
            let r = e / d;
            let c = e % d;
            let j = j0 + r;
            let mut x = 0.0f32;
            if j < len {
                x = f32::cast_from(src[base + j * src.stride(2) + c * src.stride(3)]);
            }
            dst[e] = x;
            e += rows;
        }
    }

    /// The keep flags (1 visible, 0 not) of keys `[j0, j0 + tile)` into `dst`: 0 past `len`,
    /// `keep[batch, j]` with a mask, else 1.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load_keep(
        keep: &Tensor<f32>,
        dst: &mut SharedMemory<f32>,
        batch: usize,
        j0: usize,
        len: usize,
        #[comptime] rows: usize,
        #[comptime] tile: usize,
        #[comptime] has_mask: bool,
    ) {
        let mut r = UNIT_POS as usize;
        while r < tile {
            let j = j0 + r;
            let mut f = 0.0f32;
            if j < len {
                f = 1.0f32;
                if has_mask {
                    f = keep[batch * keep.stride(0) + j * keep.stride(1)];
                }
            }
            dst[r] = f;
            r += rows;
        }
    }

    /// The last key (exclusive) that the query rows `[q0, q0 + rows)` may see.
    #[cube]
    pub(crate) fn key_end(
        q0: usize,
        len: usize,
        #[comptime] rows: usize,
        #[comptime] causal: bool,
    ) -> usize {
        let mut end = len;
        if causal {
            let last = q0 + rows;
            if last < len {
                end = last;
            }
        }
        end
    }

    /// The forward: `o` (`[batch, heads, seq_q, d]`, any strides) and `lse` (contiguous
    /// `[batch, heads, seq_q]`, f32); scores scaled by `scale`.
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn flash_fwd<F: Float>(
        q: &Tensor<F>,
        k: &Tensor<F>,
        v: &Tensor<F>,
        keep: &Tensor<f32>,
        o: &mut Tensor<F>,
        lse: &mut Tensor<f32>,
        scale: f32,
        blocks: u32,
        #[comptime] d: usize,
        #[comptime] rows: usize,
        #[comptime] tile: usize,
        #[comptime] has_mask: bool,
        #[comptime] causal: bool,
        #[comptime] unroll: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let heads = q.shape(1);
        let len_q = q.shape(2);
        let len_k = k.shape(2);
        // cubes over a 2-D grid, `blocks` consecutive cubes per (batch, head)
        let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
        let bh = (cube / blocks) as usize;
        let q0 = (cube % blocks) as usize * rows;
        if bh >= q.shape(0) * heads {
            // the whole cube: no unit reaches the barriers below
            terminate!();
        }
        let b = bh / heads;
        let h = bh % heads;
        let i = q0 + UNIT_POS as usize;
        let row_ok = i < len_q;

        let mut qr = Array::<f32>::new(d);
        let mut acc = Array::<f32>::new(d);
        let q_row = b * q.stride(0) + h * q.stride(1) + i * q.stride(2);
        #[unroll(unroll)]
        for c in 0..d {
            let mut x = 0.0f32;
            if row_ok {
                x = f32::cast_from(q[q_row + c * q.stride(3)]) * scale;
            }
            qr[c] = x;
            acc[c] = 0.0f32;
        }
        let mut ks = SharedMemory::<f32>::new(comptime!(tile * d));
        let mut vs = SharedMemory::<f32>::new(comptime!(tile * d));
        let mut vis = SharedMemory::<f32>::new(tile);
        // the running maximum, from -1e30 (a negated literal would be a compile-time constant)
        let mut m = 0.0f32;
        m -= 1.0e30f32;
        let mut l = 0.0f32;
        let end = key_end(q0, len_k, rows, causal);
        let tiles = (end + tile - 1) / tile;
        for t in 0..tiles {
            let j0 = t * tile;
            load_tile(k, &mut ks, b, h, j0, len_k, d, rows, tile);
            load_tile(v, &mut vs, b, h, j0, len_k, d, rows, tile);
            load_keep(keep, &mut vis, b, j0, len_k, rows, tile, has_mask);
            sync_cube();
            for r in 0..tile {
                let mut ok = vis[r] > 0.5f32;
                if causal {
                    if j0 + r > i {
                        ok = false;
                    }
                }
                if ok {
                    let mut s = 0.0f32;
                    #[unroll(unroll)]
                    for c in 0..d {
                        s += qr[c] * ks[r * d + c];
                    }
                    if s > m {
                        // a new maximum: rescale what was summed so far
                        let alpha = f32::exp(m - s);
                        l *= alpha;
                        #[unroll(unroll)]
                        for c in 0..d {
                            acc[c] *= alpha;
                        }
                        m = s;
                    }
                    let p = f32::exp(s - m);
                    l += p;
                    #[unroll(unroll)]
                    for c in 0..d {
                        acc[c] += p * vs[r * d + c];
                    }
                }
            }
            sync_cube();
        }
        if row_ok {
            let o_row = b * o.stride(0) + h * o.stride(1) + i * o.stride(2);
            let mut inv = 0.0f32;
            let mut row_lse = 1.0e30f32;
            if l > 0.0f32 {
                inv = 1.0f32 / l;
                row_lse = m + l.ln();
            }
            #[unroll(unroll)]
            for c in 0..d {
                o[o_row + c * o.stride(3)] = F::cast_from(acc[c] * inv);
            }
            lse[bh * len_q + i] = row_lse;
        }
    }

    /// The key/value gradients: `dk`, `dv` (`[batch, heads, seq_k, d]`, any strides), given
    /// `lse` and `delta` (contiguous `[batch, heads, seq_q]`, f32).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn flash_bwd_kv<F: Float>(
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
        #[comptime] rows: usize,
        #[comptime] tile: usize,
        #[comptime] has_mask: bool,
        #[comptime] causal: bool,
        #[comptime] unroll: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let heads = q.shape(1);
        let len_q = q.shape(2);
        let len_k = k.shape(2);
        // cubes over a 2-D grid, `blocks` consecutive cubes per (batch, head)
        let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
        let bh = (cube / blocks) as usize;
        let j0 = (cube % blocks) as usize * rows;
        if bh >= q.shape(0) * heads {
            terminate!();
        }
        let b = bh / heads;
        let h = bh % heads;
        let j = j0 + UNIT_POS as usize;
        let row_ok = j < len_k;

        let mut kr = Array::<f32>::new(d);
        let mut vr = Array::<f32>::new(d);
        let mut dkr = Array::<f32>::new(d);
        let mut dvr = Array::<f32>::new(d);
        let k_row = b * k.stride(0) + h * k.stride(1) + j * k.stride(2);
        let v_row = b * v.stride(0) + h * v.stride(1) + j * v.stride(2);
        #[unroll(unroll)]
        for c in 0..d {
            let mut kx = 0.0f32;
            let mut vx = 0.0f32;
            if row_ok {
                kx = f32::cast_from(k[k_row + c * k.stride(3)]) * scale;
                vx = f32::cast_from(v[v_row + c * v.stride(3)]);
            }
            kr[c] = kx;
            vr[c] = vx;
            dkr[c] = 0.0f32;
            dvr[c] = 0.0f32;
        }
        let mut mine = 0.0f32;
        if row_ok {
            mine = 1.0f32;
            if has_mask {
                mine = keep[b * keep.stride(0) + j * keep.stride(1)];
            }
        }
        let mut qs = SharedMemory::<f32>::new(comptime!(tile * d));
        let mut dos = SharedMemory::<f32>::new(comptime!(tile * d));
        let mut ls = SharedMemory::<f32>::new(tile);
        let mut ds_ = SharedMemory::<f32>::new(tile);
        let mut first = 0usize;
        if causal {
            // queries before this cube's first key see none of its keys
            first = j0 / tile;
        }
        let tiles = (len_q + tile - 1) / tile;
        for t in first..tiles {
            let i0 = t * tile;
            load_tile(q, &mut qs, b, h, i0, len_q, d, rows, tile);
            load_tile(d_o, &mut dos, b, h, i0, len_q, d, rows, tile);
            let mut r = UNIT_POS as usize;
            while r < tile {
                let i = i0 + r;
                let mut lv = 1.0e30f32;
                let mut dl = 0.0f32;
                if i < len_q {
                    lv = lse[bh * len_q + i];
                    dl = delta[bh * len_q + i];
                }
                ls[r] = lv;
                ds_[r] = dl;
                r += rows;
            }
            sync_cube();
            if mine > 0.5f32 {
                for r in 0..tile {
                    let mut ok = true;
                    if causal {
                        if j > i0 + r {
                            ok = false;
                        }
                    }
                    if ok {
                        let mut s = 0.0f32;
                        let mut dp = 0.0f32;
                        #[unroll(unroll)]
                        for c in 0..d {
                            s += qs[r * d + c] * kr[c];
                            dp += dos[r * d + c] * vr[c];
                        }
                        let p = f32::exp(s - ls[r]);
                        let g = p * (dp - ds_[r]);
                        #[unroll(unroll)]
                        for c in 0..d {
                            dvr[c] += p * dos[r * d + c];
                            dkr[c] += g * qs[r * d + c];
                        }
                    }
                }
            }
            sync_cube();
        }
        if row_ok {
            let dk_row = b * dk.stride(0) + h * dk.stride(1) + j * dk.stride(2);
            let dv_row = b * dv.stride(0) + h * dv.stride(1) + j * dv.stride(2);
            #[unroll(unroll)]
            for c in 0..d {
                dk[dk_row + c * dk.stride(3)] = F::cast_from(dkr[c] * scale);
                dv[dv_row + c * dv.stride(3)] = F::cast_from(dvr[c]);
            }
        }
    }

    /// The query gradient `dq` (`[batch, heads, seq_q, d]`, any strides).
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub fn flash_bwd_q<F: Float>(
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
        #[comptime] rows: usize,
        #[comptime] tile: usize,
        #[comptime] has_mask: bool,
        #[comptime] causal: bool,
        #[comptime] unroll: bool,
        #[define(F)] _dtype: StorageType,
    ) {
        let heads = q.shape(1);
        let len_q = q.shape(2);
        let len_k = k.shape(2);
        // cubes over a 2-D grid, `blocks` consecutive cubes per (batch, head)
        let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
        let bh = (cube / blocks) as usize;
        let q0 = (cube % blocks) as usize * rows;
        if bh >= q.shape(0) * heads {
            terminate!();
        }
        let b = bh / heads;
        let h = bh % heads;
        let i = q0 + UNIT_POS as usize;
        let row_ok = i < len_q;

        let mut qr = Array::<f32>::new(d);
        let mut dor = Array::<f32>::new(d);
        let mut dqr = Array::<f32>::new(d);
        let q_row = b * q.stride(0) + h * q.stride(1) + i * q.stride(2);
        let do_row = b * d_o.stride(0) + h * d_o.stride(1) + i * d_o.stride(2);
        #[unroll(unroll)]
        for c in 0..d {
            let mut qx = 0.0f32;
            let mut gx = 0.0f32;
            if row_ok {
                qx = f32::cast_from(q[q_row + c * q.stride(3)]) * scale;
                gx = f32::cast_from(d_o[do_row + c * d_o.stride(3)]);
            }
            qr[c] = qx;
            dor[c] = gx;
            dqr[c] = 0.0f32;
        }
        let mut li = 1.0e30f32;
        let mut di = 0.0f32;
        if row_ok {
            li = lse[bh * len_q + i];
            di = delta[bh * len_q + i];
        }
        let mut ks = SharedMemory::<f32>::new(comptime!(tile * d));
        let mut vs = SharedMemory::<f32>::new(comptime!(tile * d));
        let mut vis = SharedMemory::<f32>::new(tile);
        let end = key_end(q0, len_k, rows, causal);
        let tiles = (end + tile - 1) / tile;
        for t in 0..tiles {
            let j0 = t * tile;
            load_tile(k, &mut ks, b, h, j0, len_k, d, rows, tile);
            load_tile(v, &mut vs, b, h, j0, len_k, d, rows, tile);
            load_keep(keep, &mut vis, b, j0, len_k, rows, tile, has_mask);
            sync_cube();
            for r in 0..tile {
                let mut ok = vis[r] > 0.5f32;
                if causal {
                    if j0 + r > i {
                        ok = false;
                    }
                }
                if ok {
                    let mut s = 0.0f32;
                    let mut dp = 0.0f32;
                    #[unroll(unroll)]
                    for c in 0..d {
                        s += qr[c] * ks[r * d + c];
                        dp += dor[c] * vs[r * d + c];
                    }
                    let p = f32::exp(s - li);
                    let g = p * (dp - di);
                    #[unroll(unroll)]
                    for c in 0..d {
                        dqr[c] += g * ks[r * d + c];
                    }
                }
            }
            sync_cube();
        }
        if row_ok {
            let dq_row = b * dq.stride(0) + h * dq.stride(1) + i * dq.stride(2);
            #[unroll(unroll)]
            for c in 0..d {
                dq[dq_row + c * dq.stride(3)] = F::cast_from(dqr[c] * scale);
            }
        }
    }
}

pub(super) type Cb<R, F, I, BT> = CubeBackend<R, F, I, BT>;

pub(super) fn prim<B: burn::tensor::backend::Backend, const D: usize>(
    t: Tensor<B, D>,
) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

pub(super) fn tensor<B: burn::tensor::backend::Backend, const D: usize>(
    p: B::FloatTensorPrimitive,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// The kernels' block sizes for a head dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashBlocks {
    /// Units per cube: query rows (forward, query gradient) or key rows (key/value gradient).
    pub rows: usize,
    /// Rows of each shared-memory tile of keys (forward, query gradient) or queries (key/value
    /// gradient).
    pub tile: usize,
}

/// The block sizes the kernels run with for `head_dim` under `config`, on a device with
/// `shared_bytes` of shared memory per cube: 64 rows per cube, and tiles of 32 rows (fewer past
/// head dim 128, so that a tile pair stays within 32 KiB). An explicit tile is reduced to what
/// the shared memory holds (two `tile x head_dim` f32 tiles and two rows of `tile`).
pub fn flash_blocks(head_dim: usize, config: &FlashConfig, shared_bytes: usize) -> FlashBlocks {
    let rows = config.block_rows.unwrap_or(64).clamp(1, 1024);
    let fit = (shared_bytes / (4 * (2 * head_dim.max(1) + 2))).max(1);
    let tile = config
        .block_tile
        .unwrap_or_else(|| (4096 / head_dim.max(1)).clamp(1, 32))
        .clamp(1, fit);
    FlashBlocks { rows, tile }
}

/// The softmax scale `1 / sqrt(head_dim)`.
pub(super) fn scale_of(d: usize) -> f32 {
    (1.0 / (d as f64).sqrt()) as f32
}

/// The shared memory a cube may use on this device.
pub(super) fn shared_bytes<R: CubeRuntime>(t: &CubeTensor<R>) -> usize {
    t.client.properties().hardware.max_shared_memory_size
}

/// A 2-D grid of `cubes` cubes within the device's per-axis limit.
pub(super) fn grid<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    cubes: usize,
) -> CubeCount {
    let max_x = client.properties().hardware.max_cube_count.0 as usize;
    let cx = cubes.clamp(1, max_x);
    CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1)
}

/// A fresh `[batch, heads, seq, d]` output laid out as contiguous `[batch, seq, heads, d]`
/// (uninitialised, or NaN under `poison`).
pub(super) fn head_output<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    like: &CubeTensor<R>,
    [batch, heads, seq, d]: [usize; 4],
    dtype: DType,
    poison: bool,
) -> Tensor<Cb<R, F, I, BT>, 4> {
    let shape = [batch, seq, heads, d];
    let t: Tensor<Cb<R, F, I, BT>, 4> = if poison {
        tensor(burn_cubecl::kernel::into_contiguous(prim(Tensor::<
            Cb<R, F, I, BT>,
            4,
        >::full(
            shape,
            f32::NAN,
            (&like.device, dtype),
        ))))
    } else {
        tensor(empty_device_contiguous_dtype(
            like.client.clone(),
            like.device.clone(),
            shape.into(),
            dtype,
        ))
    };
    t.swap_dims(1, 2)
}

/// A fresh contiguous f32 `[batch, heads, seq]` (uninitialised, or NaN under `poison`).
pub(super) fn row_output<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    like: &CubeTensor<R>,
    shape: [usize; 3],
    poison: bool,
) -> CubeTensor<R> {
    if poison {
        burn_cubecl::kernel::into_contiguous(prim(Tensor::<Cb<R, F, I, BT>, 3>::full(
            shape,
            f32::NAN,
            (&like.device, DType::F32),
        )))
    } else {
        empty_device_contiguous_dtype(
            like.client.clone(),
            like.device.clone(),
            shape.into(),
            DType::F32,
        )
    }
}

/// The keep mask as contiguous f32 (or, without a mask, `like`: never read).
pub(super) fn keep_arg<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    keep: Option<Tensor<Cb<R, F, I, BT>, 2>>,
    like: &CubeTensor<R>,
) -> (CubeTensor<R>, bool) {
    match keep {
        Some(keep) => (
            burn_cubecl::kernel::into_contiguous(prim(super::cast_to(keep, DType::F32))),
            true,
        ),
        None => (like.clone(), false),
    }
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
) -> (Tensor<Cb<R, F, I, BT>, 4>, Tensor<Cb<R, F, I, BT>, 3>) {
    let [batch, heads, len_q, d] = q.dims();
    let dtype = q.dtype();
    if let Some([blocks, _, _]) = super::tiled::choose(&prim(q.clone()), d, dtype, config) {
        return super::tiled::forward(q, k, v, keep, causal, config, blocks);
    }
    let (q, k, v): (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) = (prim(q), prim(k), prim(v));
    let FlashBlocks { rows, tile } = flash_blocks(d, config, shared_bytes(&q));
    let client = q.client.clone();
    let (keep, has_mask) = keep_arg(keep, &q);
    let o = head_output::<R, F, I, BT>(&q, [batch, heads, len_q, d], dtype, config.poison_outputs);
    let lse = row_output::<R, F, I, BT>(&q, [batch, heads, len_q], config.poison_outputs);
    let blocks = len_q.div_ceil(rows);
    let o_arg: CubeTensor<R> = prim(o.clone());
    // SAFETY: cubes past batch x heads exit before any access; every read is guarded by its
    // row's bound (len_q, len_k) and the head view's strides; each unit writes only its own
    // query row of `o` and `lse` (fresh tensors of the declared shapes).
    unsafe {
        device::flash_fwd::launch_unchecked::<R>(
            &client,
            grid(&client, batch * heads * blocks),
            CubeDim::new_1d(rows as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            keep.into_tensor_arg(),
            o_arg.into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            scale_of(d),
            blocks as u32,
            d,
            rows,
            tile,
            has_mask,
            causal,
            !config.rolled_loops,
            dtype.into(),
        );
    }
    (o, tensor(lse))
}

/// The backward: `(dq, dk, dv)`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    q: Tensor<Cb<R, F, I, BT>, 4>,
    k: Tensor<Cb<R, F, I, BT>, 4>,
    v: Tensor<Cb<R, F, I, BT>, 4>,
    o: Tensor<Cb<R, F, I, BT>, 4>,
    lse: Tensor<Cb<R, F, I, BT>, 3>,
    d_o: Tensor<Cb<R, F, I, BT>, 4>,
    keep: Option<Tensor<Cb<R, F, I, BT>, 2>>,
    causal: bool,
    config: &FlashConfig,
) -> (
    Tensor<Cb<R, F, I, BT>, 4>,
    Tensor<Cb<R, F, I, BT>, 4>,
    Tensor<Cb<R, F, I, BT>, 4>,
) {
    let [batch, heads, len_q, d] = q.dims();
    let len_k = k.dims()[2];
    let dtype = q.dtype();
    let d_o = super::cast_to(d_o, dtype);
    // delta = rowsum(dO * O), f32
    let delta: CubeTensor<R> = burn_cubecl::kernel::into_contiguous(prim(
        (super::cast_to(d_o.clone(), DType::F32) * super::cast_to(o, DType::F32))
            .sum_dim(3)
            .reshape([batch, heads, len_q]),
    ));
    let lse: CubeTensor<R> =
        burn_cubecl::kernel::into_contiguous(prim(super::cast_to(lse, DType::F32)));
    let (q, k, v, d_o): (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) =
        (prim(q), prim(k), prim(v), prim(d_o));
    if let Some([_, kv, qb]) = super::tiled::choose(&q, d, dtype, config) {
        let keep = keep_arg(keep, &q);
        return super::tiled::backward::<R, F, I, BT>(
            q,
            k,
            v,
            d_o,
            lse,
            delta,
            keep,
            [batch, heads, len_q, len_k, d],
            dtype,
            causal,
            config,
            [kv, qb],
        );
    }
    let client = q.client.clone();
    let FlashBlocks { rows, tile } = flash_blocks(d, config, shared_bytes(&q));
    let (keep, has_mask) = keep_arg(keep, &q);
    let poison = config.poison_outputs;
    let dq = head_output::<R, F, I, BT>(&q, [batch, heads, len_q, d], dtype, poison);
    let dk = head_output::<R, F, I, BT>(&q, [batch, heads, len_k, d], dtype, poison);
    let dv = head_output::<R, F, I, BT>(&q, [batch, heads, len_k, d], dtype, poison);
    let scale = scale_of(d);
    let kv_blocks = len_k.div_ceil(rows);
    let q_blocks = len_q.div_ceil(rows);
    let (dq_arg, dk_arg, dv_arg): (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>) =
        (prim(dq.clone()), prim(dk.clone()), prim(dv.clone()));
    // SAFETY: as the forward; each unit writes only its own key row of dk and dv, or its own
    // query row of dq.
    unsafe {
        device::flash_bwd_kv::launch_unchecked::<R>(
            &client,
            grid(&client, batch * heads * kv_blocks),
            CubeDim::new_1d(rows as u32),
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            d_o.clone().into_tensor_arg(),
            lse.clone().into_tensor_arg(),
            delta.clone().into_tensor_arg(),
            keep.clone().into_tensor_arg(),
            dk_arg.into_tensor_arg(),
            dv_arg.into_tensor_arg(),
            scale,
            kv_blocks as u32,
            d,
            rows,
            tile,
            has_mask,
            causal,
            !config.rolled_loops,
            dtype.into(),
        );
        device::flash_bwd_q::launch_unchecked::<R>(
            &client,
            grid(&client, batch * heads * q_blocks),
            CubeDim::new_1d(rows as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            d_o.into_tensor_arg(),
            lse.into_tensor_arg(),
            delta.into_tensor_arg(),
            keep.into_tensor_arg(),
            dq_arg.into_tensor_arg(),
            scale,
            q_blocks as u32,
            d,
            rows,
            tile,
            has_mask,
            causal,
            !config.rolled_loops,
            dtype.into(),
        );
    }
    (dq, dk, dv)
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> super::FlashAttentionBackend
    for CubeBackend<R, F, I, BT>
{
    const FLASH_KERNELS: bool = true;

    fn flash_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> Tensor<Self, 4> {
        forward(q, k, v, keep, causal, config).0
    }

    fn flash_attention_train(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        forward(q, k, v, keep, causal, config)
    }

    fn flash_attention_backward(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        o: Tensor<Self, 4>,
        lse: Tensor<Self, 3>,
        d_o: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> (Tensor<Self, 4>, Tensor<Self, 4>, Tensor<Self, 4>) {
        backward(q, k, v, o, lse, d_o, keep, causal, config)
    }
}
