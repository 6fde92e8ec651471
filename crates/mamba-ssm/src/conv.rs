//! Mamba's depthwise causal convolution over the sequence, with an optional fused SiLU:
//! `y[b, c, t] = act(bias[c] + sum_j w[c, j] * x[b, c, t - (k - 1) + j])`, `x` zero before
//! position 0, `act` = SiLU or the identity.
//!
//! This module holds the validating entry points and the plain tensor-op formulation that
//! [`SelectiveScanBackend`]'s default methods use (`k` shifted multiply-adds; the backward
//! likewise). The cubecl kernels (`kernel::conv`) replace both on `CubeBackend`.

use crate::{KernelConfig, ScanError, SelectiveScanBackend};
use burn::tensor::{Tensor, activation, backend::Backend};

/// `t` in `dtype` (a no-op when it already is).
fn cast_to<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    dtype: burn::tensor::DType,
) -> Tensor<B, D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// `x` `[batch, d, L]` padded with `left` zeros before and `right` zeros after along L.
fn pad_len<B: Backend>(x: Tensor<B, 3>, left: usize, right: usize) -> Tensor<B, 3> {
    if left == 0 && right == 0 {
        return x;
    }
    let [batch, d, _] = x.dims();
    let zeros = |n: usize| cast_to(Tensor::<B, 3>::zeros([batch, d, n], &x.device()), x.dtype());
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(zeros(left));
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(zeros(right));
    }
    Tensor::cat(parts, 2)
}

/// The pre-activation `bias + sum_j w[:, j] * x shifted`, in `x`'s dtype.
fn pre_activation<B: Backend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, 3> {
    let [batch, d, len] = x.dims();
    let k = weight.dims()[1];
    let dtype = x.dtype();
    let w = cast_to(weight, dtype).reshape([1, d, k]);
    let padded = pad_len(x, k - 1, 0);
    let mut y: Option<Tensor<B, 3>> = None;
    for j in 0..k {
        let tap = w.clone().slice([0..1, 0..d, j..j + 1]);
        let term = padded.clone().slice([0..batch, 0..d, j..j + len]) * tap;
        y = Some(match y {
            Some(acc) => acc + term,
            None => term,
        });
    }
    // k >= 1 (validated)
    let y = y.expect("kernel width k >= 1");
    match bias {
        Some(b) => y + cast_to(b, dtype).reshape([1, d, 1]),
        None => y,
    }
}

/// The forward as Burn tensor ops (the trait's default; any backend).
pub fn causal_conv1d_tensor_ops<B: Backend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    silu: bool,
) -> Tensor<B, 3> {
    let p = pre_activation(x, weight, bias);
    if silu { activation::silu(p) } else { p }
}

/// The backward as Burn tensor ops (the trait's default): `(dx, dweight, dbias)` in the
/// dtypes of `x`, `weight` and `bias`.
pub fn causal_conv1d_backward_tensor_ops<B: Backend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    silu: bool,
    dy: Tensor<B, 3>,
) -> (Tensor<B, 3>, Tensor<B, 2>, Option<Tensor<B, 1>>) {
    let [batch, d, len] = x.dims();
    let k = weight.dims()[1];
    let dtype = x.dtype();
    let (w_dtype, b_dtype) = (weight.dtype(), bias.as_ref().map(|b| b.dtype()));
    let has_bias = bias.is_some();
    let dy = cast_to(dy, dtype);
    // g = dLoss / d pre-activation
    let g = if silu {
        let p = pre_activation(x.clone(), weight.clone(), bias);
        let s = activation::sigmoid(p.clone());
        // silu'(p) = s (1 + p (1 - s))
        let ds = s.clone() * (p * (s.neg() + 1.0) + 1.0);
        dy * ds
    } else {
        dy
    };
    let dbias = has_bias.then(|| {
        cast_to(
            g.clone().sum_dim(0).sum_dim(2).reshape([d]),
            b_dtype.unwrap(),
        )
    });
    // dweight[c, j] = sum_{b, t} g[b, c, t] x[b, c, t - (k - 1) + j]
    let padded = pad_len(x, k - 1, 0);
    let taps: Vec<Tensor<B, 2>> = (0..k)
        .map(|j| {
            (g.clone() * padded.clone().slice([0..batch, 0..d, j..j + len]))
                .sum_dim(0)
                .sum_dim(2)
                .reshape([d, 1])
        })
        .collect();
    let dweight = cast_to(Tensor::cat(taps, 1), w_dtype);
    // dx[b, c, s] = sum_j w[c, j] g[b, c, s + (k - 1) - j] (g zero past L)
    let w = cast_to(weight, dtype).reshape([1, d, k]);
    let gpad = pad_len(g, 0, k - 1);
    let mut dx: Option<Tensor<B, 3>> = None;
    for j in 0..k {
        let tap = w.clone().slice([0..1, 0..d, j..j + 1]);
        let off = k - 1 - j;
        let term = gpad.clone().slice([0..batch, 0..d, off..off + len]) * tap;
        dx = Some(match dx {
            Some(acc) => acc + term,
            None => term,
        });
    }
    (dx.expect("kernel width k >= 1"), dweight, dbias)
}

/// Shapes of `causal_conv1d`'s inputs: `x [batch, d, L]` (all positive), `weight [d, k]`
/// (`k >= 1`), `bias [d]`. Returns `(batch, d, L, k)`.
fn validate<B: Backend>(
    x: &Tensor<B, 3>,
    weight: &Tensor<B, 2>,
    bias: Option<&Tensor<B, 1>>,
) -> Result<[usize; 4], ScanError> {
    let xs = x.dims();
    let [batch, d, len] = xs;
    let err = |tensor, got: &[usize], expected: String| ScanError::ConvShape {
        tensor,
        got: got.to_vec(),
        expected,
    };
    if batch == 0 || d == 0 || len == 0 {
        return Err(err(
            "x",
            &xs,
            "[batch, d, L] with every size positive".into(),
        ));
    }
    let ws = weight.dims();
    if ws[0] != d || ws[1] == 0 {
        return Err(err("weight", &ws, format!("[d={d}, k] with k >= 1")));
    }
    if let Some(b) = bias
        && b.dims() != [d]
    {
        return Err(err("bias", &b.dims(), format!("[d={d}]")));
    }
    Ok([batch, d, len, ws[1]])
}

/// The depthwise causal convolution (SiLU fused when `silu`), after validating shapes:
/// `x [batch, d, L]`, `weight [d, k]`, `bias [d]`; returns `[batch, d, L]` in `x`'s dtype.
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::Tensor;
///
/// let dev = Default::default();
/// let x = Tensor::<NdArray, 3>::from_floats([[[1.0, 2.0, 3.0]]], &dev);
/// let w = Tensor::<NdArray, 2>::from_floats([[0.5, 1.0]], &dev);
/// let y = mamba_ssm::causal_conv1d(x, w, None, false)?;
/// // y[t] = 0.5 x[t-1] + x[t]
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![1.0, 2.5, 4.0]);
/// # Ok::<(), mamba_ssm::ScanError>(())
/// ```
pub fn causal_conv1d<B: SelectiveScanBackend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    silu: bool,
) -> Result<Tensor<B, 3>, ScanError> {
    validate(&x, &weight, bias.as_ref())?;
    Ok(B::causal_conv1d(x, weight, bias, silu))
}

/// [`causal_conv1d`] with the kernel settings `config` (see [`KernelConfig`]; backends
/// without cubecl kernels ignore it). Through `Autodiff` the backward runs with the same
/// settings.
pub fn causal_conv1d_with_config<B: SelectiveScanBackend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    silu: bool,
    config: &KernelConfig,
) -> Result<Tensor<B, 3>, ScanError> {
    validate(&x, &weight, bias.as_ref())?;
    Ok(B::causal_conv1d_with_config(x, weight, bias, silu, config))
}

/// `dy`'s shape against `x`'s.
fn validate_dy<B: Backend>(x: &Tensor<B, 3>, dy: &Tensor<B, 3>) -> Result<(), ScanError> {
    if dy.dims() != x.dims() {
        return Err(ScanError::ConvShape {
            tensor: "dy",
            got: dy.dims().to_vec(),
            expected: format!("{:?} like x", x.dims()),
        });
    }
    Ok(())
}

/// The hand-written backward of [`causal_conv1d`] after validating shapes (`dy` like `x`):
/// `(dx, dweight, dbias)`.
#[allow(clippy::type_complexity)]
pub fn causal_conv1d_backward<B: SelectiveScanBackend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    silu: bool,
    dy: Tensor<B, 3>,
) -> Result<(Tensor<B, 3>, Tensor<B, 2>, Option<Tensor<B, 1>>), ScanError> {
    validate(&x, &weight, bias.as_ref())?;
    validate_dy(&x, &dy)?;
    Ok(B::causal_conv1d_backward(x, weight, bias, silu, dy))
}

/// [`causal_conv1d_backward`] with the kernel settings `config` (see [`KernelConfig`]).
#[allow(clippy::type_complexity)]
pub fn causal_conv1d_backward_with_config<B: SelectiveScanBackend>(
    x: Tensor<B, 3>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    silu: bool,
    dy: Tensor<B, 3>,
    config: &KernelConfig,
) -> Result<(Tensor<B, 3>, Tensor<B, 2>, Option<Tensor<B, 1>>), ScanError> {
    validate(&x, &weight, bias.as_ref())?;
    validate_dy(&x, &dy)?;
    Ok(B::causal_conv1d_backward_with_config(
        x, weight, bias, silu, dy, config,
    ))
}
