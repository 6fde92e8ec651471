//! Scaled dot-product attention with a key-padding mask and an optional causal mask.
//!
//! [`AttentionImpl::Fused`] calls Burn's `burn::tensor::module::attention`, which the cubecl
//! backends (CUDA, wgpu) run as flash attention when Burn's `autotune` feature is on (and no
//! bias, softcap or custom scale is given: this module never passes them). On NdArray and under
//! `Autodiff` Burn decomposes it into matmul + softmax. [`AttentionImpl::Reference`] is a plain
//! matmul-softmax kept as a checked reference: tests compare the two on random masks.
//!
//! Semantics shared by both paths: scores are `q kᵀ / sqrt(head_dim)`; masked keys get no weight;
//! a query row that sees no key at all (a left-padding position under the causal mask) is zero.

use burn::tensor::module::attention as burn_attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor, activation::softmax, backend::Backend};

/// Which attention implementation a model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttentionImpl {
    /// Burn's fused `attention` (flash attention on the cubecl backends).
    #[default]
    Fused,
    /// Explicit matmul, mask, softmax, matmul: the checked reference.
    Reference,
}

/// Attention of `q`, `k`, `v` (`[batch, heads, seq, head_dim]`) with an optional key-padding
/// mask (`[batch, seq_k]`, `true` = padding, never attended to) and an optional causal mask.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    key_padding: Option<Tensor<B, 2, Bool>>,
    causal: bool,
    implementation: AttentionImpl,
) -> Tensor<B, 4> {
    match implementation {
        AttentionImpl::Fused => fused_attention(q, k, v, key_padding, causal),
        AttentionImpl::Reference => reference_attention(q, k, v, key_padding, causal),
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
