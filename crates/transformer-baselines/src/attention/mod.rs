//! Scaled dot-product attention with a key-padding mask and an optional causal mask.
//!
//! Three implementations, one semantics ([`AttentionImpl`]):
//! - [`AttentionImpl::Flash`] (the default): [`flash_attention`], this crate's flash attention.
//!   On the cubecl backends (CUDA, wgpu; with the `cubecl` feature) it runs cubecl kernels,
//!   forward and backward (FlashAttention-2's algorithm: online softmax over key tiles; the
//!   forward saves only the output and the row log-sum-exp, the backward recomputes the scores
//!   tile by tile), so no `seq x seq` tensor exists in memory, in inference or in training. Under
//!   `Autodiff` it is one graph node. On other backends (NdArray) it runs Burn tensor ops.
//! - [`AttentionImpl::Burn`]: Burn's `burn::tensor::module::attention` (flash kernels on the
//!   cubecl backends when Burn's `autotune` feature is on, forward only; decomposed into
//!   matmul + softmax under `Autodiff` and on NdArray).
//! - [`AttentionImpl::Reference`]: a plain matmul-softmax, kept as the checked reference.
//!
//! Semantics shared by all: scores are `q kᵀ / sqrt(head_dim)`; masked keys get no weight; a
//! query row that sees no key at all (a left-padding position under the causal mask) is zero.
//! The causal mask is aligned at the start: query `i` sees keys `j <= i`.

#[cfg(feature = "cubecl")]
mod kernel;
#[cfg(feature = "cubecl")]
pub use kernel::{FlashBlocks, flash_blocks};
#[cfg(feature = "cubecl")]
mod tiled;
#[cfg(feature = "cubecl")]
pub use tiled::{TiledBlocks, TiledKernel, tiled_blocks, tiled_plan, tiled_shared_bytes};

mod autodiff;
#[cfg(feature = "fusion")]
mod fusion;

use crate::TransformerError;
use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Int, Tensor, activation::softmax, backend::Backend};

/// Which attention implementation a model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttentionImpl {
    /// This crate's flash attention ([`flash_attention`]): cubecl kernels forward and backward
    /// on the cubecl backends, tensor ops elsewhere.
    #[default]
    Flash,
    /// This crate's flash attention with the given kernels on the cubecl backends
    /// ([`FlashKernel`]; [`AttentionImpl::Flash`] is `FlashWith(FlashKernel::Auto)`).
    FlashWith(FlashKernel),
    /// Burn's `attention` module operation (flash kernels on the cubecl backends with Burn's
    /// `autotune` feature, forward only).
    Burn,
    /// Explicit matmul, mask, softmax, matmul: the checked reference.
    Reference,
}

/// Attention of `q`, `k`, `v` (`[batch, heads, seq, head_dim]`) with an optional key-padding
/// mask (`[batch, seq_k]`, `true` = padding, never attended to) and an optional causal mask.
/// The shapes must agree (the models build them): [`flash_attention`] is the checked entry
/// point.
pub fn attention<B: FlashAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    key_padding: Option<Tensor<B, 2, Bool>>,
    causal: bool,
    implementation: AttentionImpl,
) -> Tensor<B, 4> {
    match implementation {
        AttentionImpl::Flash | AttentionImpl::FlashWith(_) => {
            let kernel = match implementation {
                AttentionImpl::FlashWith(kernel) => kernel,
                _ => FlashKernel::Auto,
            };
            let config = FlashConfig {
                kernel,
                ..FlashConfig::default()
            };
            B::flash_attention(q, k, v, key_padding.map(keep_of), causal, &config)
        }
        AttentionImpl::Burn => fused_attention(q, k, v, key_padding, causal),
        AttentionImpl::Reference => reference_attention(q, k, v, key_padding, causal),
    }
}

/// Which keys each batch row may attend to, as a `[batch]` or `[batch, seq_k]` tensor: never a
/// materialised `[batch, heads, seq_q, seq_k]` mask.
#[derive(Debug, Clone)]
pub enum KeyMask<B: Backend> {
    /// `[batch]`: row `b` sees its first `lengths[b]` keys (right padding).
    Lengths(Tensor<B, 1, Int>),
    /// `[batch, seq_k]`, `true` = padding (never attended to).
    Padding(Tensor<B, 2, Bool>),
}

/// Settings of the flash-attention kernels (the cubecl backends; other backends ignore them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashConfig {
    /// Fill every output with NaN before the kernels run (tests: an element a kernel fails to
    /// write stays NaN).
    pub poison_outputs: bool,
    /// Query rows per cube of the forward and of the query-gradient kernel, and key rows per
    /// cube of the key/value-gradient kernel (`None`: the crate's choice, `flash_blocks` and
    /// `tiled_blocks` with the `cubecl` feature; the tiled kernels round it up to a multiple
    /// of 16).
    pub block_rows: Option<usize>,
    /// Keys (forward, query gradient) or queries (key/value gradient) per shared-memory tile
    /// (`None`: the crate's choice; the tiled kernels round it up to a multiple of 16).
    pub block_tile: Option<usize>,
    /// Keep the loops over the head dimension rolled: smaller kernels that compile much faster
    /// (lavapipe takes about a minute per unrolled head-dim-128 kernel set) but index the
    /// per-row arrays at run time. Default: unrolled, so that those arrays live in registers.
    /// (Scalar kernels only.)
    pub rolled_loops: bool,
    /// Which kernels run.
    pub kernel: FlashKernel,
}

/// The flash-attention kernels of the cubecl backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FlashKernel {
    /// The tiled kernels where the device multiplies tiles of the storage type on tensor cores
    /// (f16 and bf16 on CUDA), with a head dim that is a multiple of 16; the scalar kernels
    /// elsewhere.
    #[default]
    Auto,
    /// The scalar kernels: one unit per row, every product on the scalar units.
    Scalar,
    /// The tiled kernels: planes multiply 16 x 16 tiles, on tensor cores where the device has
    /// them for the storage type and on the plane's units otherwise (slow; how CI checks them
    /// on devices without tensor cores). Needs a head dim that is a multiple of 16; falls back
    /// to the scalar kernels where the tiles do not fit the shared memory.
    Tiled,
}

/// The row log-sum-exp of a row that sees no key: large and finite, so that every probability
/// recomputed from it, `exp(s - lse)`, is zero.
pub const EMPTY_ROW_LSE: f32 = 1.0e30;

/// A backend that runs flash attention, forward and backward. Every method takes checked
/// shapes ([`flash_attention`] checks them): `q` `[batch, heads, seq_q, head_dim]`, `k` and `v`
/// `[batch, heads, seq_k, head_dim]`, and `keep`, when given, `[batch, seq_k]` with 1 for a
/// visible key and 0 for padding.
///
/// Implemented for NdArray (the tensor-op defaults), for `Autodiff<B>` of any implementor (one
/// graph node whose backward is the inner backend's; plain Burn autodiff over the tensor ops
/// when the inner backend has no kernels), and with the `cubecl` / `fusion` features for
/// `CubeBackend` (cubecl kernels) and `Fusion<B>` (custom operations).
pub trait FlashAttentionBackend:
    linear_kernels::MatmulBackend + linear_kernels::NormBackend
{
    /// Whether the backend runs its own kernels (then `Autodiff` records one node calling
    /// [`FlashAttentionBackend::flash_attention_backward`]); `false`: Burn's autodiff
    /// differentiates the tensor ops.
    const FLASH_KERNELS: bool = false;

    /// The output, `[batch, heads, seq_q, head_dim]` in `q`'s dtype.
    fn flash_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> Tensor<Self, 4> {
        let _ = config;
        tensor_ops::forward(q, k, v, keep, causal).0
    }

    /// The output and the row log-sum-exp of the scaled scores (`[batch, heads, seq_q]`, f32;
    /// [`EMPTY_ROW_LSE`] for a row that sees no key), which the backward needs.
    fn flash_attention_train(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        keep: Option<Tensor<Self, 2>>,
        causal: bool,
        config: &FlashConfig,
    ) -> (Tensor<Self, 4>, Tensor<Self, 3>) {
        let _ = config;
        tensor_ops::forward(q, k, v, keep, causal)
    }

    /// `(dq, dk, dv)` given the forward's output `o`, its `lse` and `d_o` = dLoss/do, in the
    /// dtypes of `q`, `k` and `v`.
    #[allow(clippy::too_many_arguments)]
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
        let _ = config;
        tensor_ops::backward(q, k, v, o, lse, d_o, keep, causal)
    }
}

/// Flash attention of `q` `[batch, heads, seq_q, head_dim]`, `k` and `v` `[batch, heads, seq_k,
/// head_dim]` (every size positive), with an optional key mask and an optional causal mask (see
/// the module's semantics). Differentiable under `Autodiff`. Errors name the tensor whose shape
/// does not fit.
pub fn flash_attention<B: FlashAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<KeyMask<B>>,
    causal: bool,
) -> Result<Tensor<B, 4>, TransformerError> {
    flash_attention_with_config(q, k, v, mask, causal, &FlashConfig::default())
}

/// [`flash_attention`] with explicit kernel settings.
pub fn flash_attention_with_config<B: FlashAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<KeyMask<B>>,
    causal: bool,
    config: &FlashConfig,
) -> Result<Tensor<B, 4>, TransformerError> {
    let keep = check(&q, &k, &v, mask)?;
    let dim = q.dims()[3];
    if config.kernel == FlashKernel::Tiled && !dim.is_multiple_of(16) {
        return Err(TransformerError::Input(format!(
            "flash attention: the tiled kernels need a head_dim that is a multiple of 16 (q {:?})",
            q.dims()
        )));
    }
    Ok(B::flash_attention(q, k, v, keep, causal, config))
}

/// Checks the shapes and turns the mask into the `[batch, seq_k]` keep tensor.
fn check<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<KeyMask<B>>,
) -> Result<Option<Tensor<B, 2>>, TransformerError> {
    let bad = |m: String| TransformerError::Input(format!("flash attention: {m}"));
    let [batch, heads, seq_q, dim] = q.dims();
    let [kb, kh, seq_k, kd] = k.dims();
    if batch == 0 || heads == 0 || seq_q == 0 || dim == 0 || seq_k == 0 {
        return Err(bad(format!(
            "q {:?} and k {:?} need every size positive",
            q.dims(),
            k.dims()
        )));
    }
    if (kb, kh, kd) != (batch, heads, dim) {
        return Err(bad(format!(
            "k {:?} does not fit q {:?} (batch, heads and head_dim must agree)",
            k.dims(),
            q.dims()
        )));
    }
    if v.dims() != k.dims() {
        return Err(bad(format!(
            "v {:?} must have k's shape {:?}",
            v.dims(),
            k.dims()
        )));
    }
    if q.dtype() != k.dtype() || q.dtype() != v.dtype() {
        return Err(bad(format!(
            "q, k and v must share one dtype (got {:?}, {:?}, {:?})",
            q.dtype(),
            k.dtype(),
            v.dtype()
        )));
    }
    Ok(match mask {
        None => None,
        Some(KeyMask::Padding(pad)) => {
            if pad.dims() != [batch, seq_k] {
                return Err(bad(format!(
                    "the padding mask {:?} must be [batch, seq_k] = [{batch}, {seq_k}]",
                    pad.dims()
                )));
            }
            Some(keep_of(pad))
        }
        Some(KeyMask::Lengths(lengths)) => {
            if lengths.dims() != [batch] {
                return Err(bad(format!(
                    "the lengths {:?} must be [batch] = [{batch}]",
                    lengths.dims()
                )));
            }
            let device = lengths.device();
            let positions =
                Tensor::<B, 1, Int>::arange(0..seq_k as i64, &device).reshape([1, seq_k]);
            let keep = positions
                .expand([batch, seq_k])
                .lower(lengths.reshape([batch, 1]).expand([batch, seq_k]));
            Some(keep.float())
        }
    })
}

/// A padding mask (`true` = padding) as the keep tensor (1 = visible).
fn keep_of<B: Backend>(key_padding: Tensor<B, 2, Bool>) -> Tensor<B, 2> {
    key_padding.bool_not().float()
}

/// The tensor-op formulation of flash attention's forward and backward (the trait's defaults),
/// computed in f32. It materialises the `[batch, heads, seq_q, seq_k]` scores: the kernels are
/// what avoids them.
pub mod tensor_ops {
    use super::EMPTY_ROW_LSE;
    use burn::tensor::{DType, Tensor, backend::Backend};

    fn f32_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
        if t.dtype() == DType::F32 {
            t
        } else {
            t.cast(DType::F32)
        }
    }

    fn to<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
        if t.dtype() == dtype { t } else { t.cast(dtype) }
    }

    /// Scaled scores in f32 `[batch, heads, seq_q, seq_k]` and the visibility of each (query,
    /// key) pair, 1 or 0, broadcastable to them (`None`: every key visible).
    fn scores<B: Backend>(
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        keep: Option<Tensor<B, 2>>,
        causal: bool,
    ) -> (Tensor<B, 4>, Option<Tensor<B, 4>>) {
        let [_, _, seq_q, dim] = q.dims();
        let seq_k = k.dims()[2];
        let device = q.device();
        let s = f32_of(q.clone()).matmul(f32_of(k.clone()).swap_dims(2, 3)) / (dim as f64).sqrt();
        let keep = keep.map(|k| {
            let batch = k.dims()[0];
            f32_of(k).reshape([batch, 1, 1, seq_k])
        });
        // `float()` gives the device's default float type, which need not be f32
        let past = causal.then(|| {
            f32_of(
                super::causal_mask::<B>(seq_q, seq_k, &device)
                    .bool_not()
                    .float(),
            )
            .reshape([1, 1, seq_q, seq_k])
        });
        let vis = match (keep, past) {
            (Some(k), Some(p)) => Some(k * p),
            (k, p) => k.or(p),
        };
        (s, vis)
    }

    /// `(output, lse)`: the output in `q`'s dtype, the row log-sum-exp in f32.
    pub fn forward<B: Backend>(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        keep: Option<Tensor<B, 2>>,
        causal: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 3>) {
        let [batch, heads, seq_q, _] = q.dims();
        let dtype = q.dtype();
        let (s, vis) = scores(&q, &k, keep, causal);
        let Some(vis) = vis else {
            let m = s.clone().max_dim(3);
            let p = (s - m.clone()).exp();
            let l = p.clone().sum_dim(3);
            let o = (p / l.clone()).matmul(f32_of(v));
            let lse = (m + l.log()).reshape([batch, heads, seq_q]);
            return (to(o, dtype), lse);
        };
        let shape = s.dims();
        let vis = vis.expand(shape);
        // masked scores do not take part in the row maximum
        let masked = s.clone() * vis.clone() + (vis.clone() - 1.0) * 1.0e30;
        let m = masked.max_dim(3);
        let p = (s - m.clone()).clamp_max(0.0).exp() * vis;
        let l = p.clone().sum_dim(3);
        let seen = l.clone().greater_elem(0.0);
        let o = (p / l.clone().clamp_min(f32::MIN_POSITIVE)).matmul(f32_of(v));
        let lse = (m + l.clamp_min(f32::MIN_POSITIVE).log())
            .mask_fill(seen.bool_not(), EMPTY_ROW_LSE)
            .reshape([batch, heads, seq_q]);
        (to(o, dtype), lse)
    }

    /// `(dq, dk, dv)` in the dtypes of `q`, `k`, `v`, from the saved `o` and `lse`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<B: Backend>(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        o: Tensor<B, 4>,
        lse: Tensor<B, 3>,
        d_o: Tensor<B, 4>,
        keep: Option<Tensor<B, 2>>,
        causal: bool,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, heads, seq_q, dim] = q.dims();
        let (qt, kt, vt) = (q.dtype(), k.dtype(), v.dtype());
        let scale = 1.0 / (dim as f64).sqrt();
        let (s, vis) = scores(&q, &k, keep, causal);
        let lse = f32_of(lse).reshape([batch, heads, seq_q, 1]);
        let mut p = (s - lse).clamp_max(0.0).exp();
        if let Some(vis) = vis {
            p = p * vis;
        }
        let d_o = f32_of(d_o);
        let dv = p.clone().swap_dims(2, 3).matmul(d_o.clone());
        let dp = d_o.clone().matmul(f32_of(v).swap_dims(2, 3));
        let delta = (d_o * f32_of(o)).sum_dim(3);
        let ds = p * (dp - delta);
        let dq = ds.clone().matmul(f32_of(k)) * scale;
        let dk = ds.swap_dims(2, 3).matmul(f32_of(q)) * scale;
        (to(dq, qt), to(dk, kt), to(dv, vt))
    }
}

/// Burn's fused attention. The padding mask is materialised as `[batch, heads, seq_q, seq_k]`
/// (see [`full_mask`]); the causal mask is Burn's `is_causal` option.
pub fn fused_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    key_padding: Option<Tensor<B, 2, Bool>>,
    causal: bool,
) -> Tensor<B, 4> {
    let [_, heads, seq_q, _] = q.dims();
    let mask = key_padding.map(|pad| full_mask(pad, heads, seq_q));
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    burn_attention(q, k, v, mask, None, options)
}

/// The reference: `softmax(q kᵀ / sqrt(d) + mask) v` spelled out, with masked scores filled with
/// a large negative number and rows without any visible key set to zero.
pub fn reference_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    key_padding: Option<Tensor<B, 2, Bool>>,
    causal: bool,
) -> Tensor<B, 4> {
    let [batch, heads, seq_q, head_dim] = q.dims();
    let seq_k = k.dims()[2];
    let device = q.device();
    let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt();
    let mut mask: Option<Tensor<B, 4, Bool>> = key_padding.map(|pad| {
        pad.reshape([batch, 1, 1, seq_k])
            .expand([batch, heads, seq_q, seq_k])
    });
    if causal {
        let future = causal_mask::<B>(seq_q, seq_k, &device)
            .reshape([1, 1, seq_q, seq_k])
            .expand([batch, heads, seq_q, seq_k]);
        mask = Some(match mask {
            Some(m) => m.bool_or(future),
            None => future,
        });
    }
    let Some(mask) = mask else {
        return softmax(scores, 3).matmul(v);
    };
    let probs = softmax(scores.mask_fill(mask.clone(), -1.0e30), 3);
    // A row whose keys are all masked would average every value: make it zero instead.
    let visible = mask.bool_not().any_dim(3).float(); // [batch, heads, seq_q, 1]
    (probs * visible).matmul(v)
}

/// A key-padding mask `[batch, seq_k]` as the `[batch, heads, seq_q, seq_k]` mask that Burn's
/// `attention` takes, materialised (contiguous). A broadcast view (`expand` or, on the cubecl
/// backends, `repeat_dim`: stride 0) is not enough: Burn 0.21's cubecl flash kernels read the
/// mask as if it were contiguous and return wrong results for a broadcast one (measured on
/// wgpu, tests/wgpu.rs), while the decomposed path accepts either. The broadcast view goes
/// through one element-wise op (`bool_not` of the inverted mask), whose output is contiguous.
pub fn full_mask<B: Backend>(
    key_padding: Tensor<B, 2, Bool>,
    heads: usize,
    seq_q: usize,
) -> Tensor<B, 4, Bool> {
    let [batch, seq_k] = key_padding.dims();
    key_padding
        .bool_not()
        .reshape([batch, 1, 1, seq_k])
        .expand([batch, heads, seq_q, seq_k])
        .bool_not()
}

/// `[seq_q, seq_k]`, `true` where key `j` lies after query `i` (`j > i`), aligned at the start.
pub fn causal_mask<B: Backend>(
    seq_q: usize,
    seq_k: usize,
    device: &B::Device,
) -> Tensor<B, 2, Bool> {
    let rows = Tensor::<B, 1, Int>::arange(0..seq_q as i64, device).reshape([seq_q, 1]);
    let cols = Tensor::<B, 1, Int>::arange(0..seq_k as i64, device).reshape([1, seq_k]);
    cols.expand([seq_q, seq_k])
        .greater(rows.expand([seq_q, seq_k]))
}

/// Splits `[batch, seq, heads * head_dim]` into `[batch, heads, seq, head_dim]`.
pub(crate) fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [batch, seq, hidden] = x.dims();
    x.reshape([batch, seq, heads, hidden / heads])
        .swap_dims(1, 2)
}

/// Merges `[batch, heads, seq, head_dim]` back into `[batch, seq, heads * head_dim]`.
pub(crate) fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, seq, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::FlashAttentionBackend;
    use burn::backend::NdArray;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
    };

    /// The tensor-op defaults (Burn's autodiff differentiates them under `Autodiff`).
    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> FlashAttentionBackend
        for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
    }
}

/// `t` in `dtype` (a no-op when it already is).
#[allow(dead_code)]
pub(crate) fn cast_to<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}
