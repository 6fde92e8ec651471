//! `mamba-ssm`: the selective state-space scan of Mamba (Gu and Dao, 2023) on Burn.
//!
//! Semantics are those of the official `mamba_ssm.selective_scan_fn` /
//! `selective_scan_ref` (see [`ScanInputs`]). Implementations:
//! - [`reference`](mod@reference): plain Burn tensor ops, sequential over L, for any backend;
//! - [`cpu`]: the fast CPU scan (rayon, state in registers, vectorised, fused
//!   softplus / D / z) with a hand-written backward; used by the `NdArray` backend;
//! - `Autodiff<B>`: one graph node whose backward is the inner backend's backward.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::{Distribution, Tensor};
//! use mamba_ssm::{ScanInputs, selective_scan};
//!
//! type B = Autodiff<NdArray>;
//! let dev = Default::default();
//! let (batch, dim, len, n) = (2, 8, 16, 4);
//! let r = |s: [usize; 3]| Tensor::<B, 3>::random(s, Distribution::Normal(0.0, 1.0), &dev);
//! let a = -Tensor::<B, 2>::random([dim, n], Distribution::Uniform(0.5, 1.5), &dev);
//! let inp = ScanInputs::new_ungrouped(r([batch, dim, len]).require_grad(), r([batch, dim, len]), a, r([batch, n, len]), r([batch, n, len]))
//!     .with_d(Tensor::ones([dim], &dev))
//!     .with_z(r([batch, dim, len]))
//!     .with_softplus(true);
//! let out = selective_scan(inp.clone(), true)?;
//! assert_eq!(out.y.dims(), [batch, dim, len]);
//! assert_eq!(out.last_state.unwrap().dims(), [batch, dim, n]);
//! let grads = out.y.sum().backward();
//! assert!(inp.u.grad(&grads).is_some());
//! # Ok::<(), mamba_ssm::ScanError>(())
//! ```

mod autodiff;
pub mod conv;
pub mod cpu;
#[cfg(feature = "fusion")]
mod fusion;
pub mod host;
mod input;
pub mod kernel;
pub mod reference;

pub use conv::{
    causal_conv1d, causal_conv1d_backward, causal_conv1d_backward_with_config,
    causal_conv1d_with_config,
};
pub use input::{Dims, ScanError, ScanGrads, ScanInputs, ScanOutput};
pub use kernel::KernelConfig;

use burn::tensor::{Tensor, backend::Backend};

/// A backend that carries Mamba's fused operations, forward and backward: the selective scan
/// and the depthwise causal convolution (with SiLU fused).
///
/// Implemented for `NdArray` (the fast CPU scan), for `Autodiff<B>` of any implementor
/// (custom backward, one graph node per operation), and with the `cubecl` / `fusion` features
/// for `CubeBackend` (cubecl kernels) and `Fusion<B>`. Shapes reaching these methods are
/// validated by [`selective_scan`] and [`causal_conv1d`].
pub trait SelectiveScanBackend:
    linear_kernels::MatmulBackend + linear_kernels::NormBackend
{
    /// The forward scan.
    fn selective_scan(inputs: ScanInputs<Self>, return_last_state: bool) -> ScanOutput<Self>;
    /// Gradients of a loss with respect to every input, given `dy` = dLoss/dy.
    fn selective_scan_backward(inputs: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self>;
    /// The forward scan of a training step: also returns what the backward may reuse (the
    /// cubecl kernel: the states at its backward's chunk starts, so that the backward does
    /// not recompute them). Default: the plain forward, nothing saved.
    fn selective_scan_train(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
    ) -> (ScanOutput<Self>, Option<Tensor<Self, 1>>) {
        (Self::selective_scan(inputs, return_last_state), None)
    }
    /// The length of the 1-D tensor that [`SelectiveScanBackend::selective_scan_train`] saves
    /// for inputs of these sizes in storage type `dtype` on `device`, `None` when it saves
    /// nothing (wrappers that declare their outputs before running, like Burn's `Fusion`,
    /// need it). Default: `None`.
    fn selective_scan_saved_len(
        device: &Self::Device,
        dims: Dims,
        dtype: burn::tensor::DType,
    ) -> Option<usize> {
        let _ = (device, dims, dtype);
        None
    }
    /// [`SelectiveScanBackend::selective_scan_backward`] given what
    /// [`SelectiveScanBackend::selective_scan_train`] saved for the same inputs. Default: the
    /// saved tensor is ignored.
    fn selective_scan_backward_saved(
        inputs: ScanInputs<Self>,
        dy: Tensor<Self, 3>,
        saved: Option<Tensor<Self, 1>>,
    ) -> ScanGrads<Self> {
        let _ = saved;
        Self::selective_scan_backward(inputs, dy)
    }

    /// [`SelectiveScanBackend::selective_scan`] with the kernel settings `config` (the
    /// cubecl kernels and the wrappers around them: `Fusion`, `Autodiff`, whose backward then
    /// runs with the same settings). Default: `config` is ignored.
    fn selective_scan_with_config(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
        config: &KernelConfig,
    ) -> ScanOutput<Self> {
        let _ = config;
        Self::selective_scan(inputs, return_last_state)
    }
    /// [`SelectiveScanBackend::selective_scan_train`] with the kernel settings `config`.
    /// Default: `config` is ignored.
    fn selective_scan_train_with_config(
        inputs: ScanInputs<Self>,
        return_last_state: bool,
        config: &KernelConfig,
    ) -> (ScanOutput<Self>, Option<Tensor<Self, 1>>) {
        let _ = config;
        Self::selective_scan_train(inputs, return_last_state)
    }
    /// [`SelectiveScanBackend::selective_scan_saved_len`] with the kernel settings `config`.
    /// Default: `config` is ignored.
    fn selective_scan_saved_len_with_config(
        device: &Self::Device,
        dims: Dims,
        dtype: burn::tensor::DType,
        config: &KernelConfig,
    ) -> Option<usize> {
        let _ = config;
        Self::selective_scan_saved_len(device, dims, dtype)
    }
    /// [`SelectiveScanBackend::selective_scan_backward_saved`] with the kernel settings
    /// `config` (`saved`: `None` for the plain backward). Default: `config` is ignored.
    fn selective_scan_backward_saved_with_config(
        inputs: ScanInputs<Self>,
        dy: Tensor<Self, 3>,
        saved: Option<Tensor<Self, 1>>,
        config: &KernelConfig,
    ) -> ScanGrads<Self> {
        let _ = config;
        Self::selective_scan_backward_saved(inputs, dy, saved)
    }

    /// The depthwise causal convolution `y[b, c, t] = act(bias[c] + sum_j weight[c, j] *
    /// x[b, c, t - (k - 1) + j])` (`x` zero before position 0; `act` = SiLU when `silu`, else
    /// the identity). `x`: `[batch, d, L]`, `weight`: `[d, k]`, `bias`: `[d]`; the output is
    /// `[batch, d, L]` in `x`'s dtype. Default: Burn tensor ops (`k` shifted multiply-adds,
    /// [`conv::causal_conv1d_tensor_ops`]).
    fn causal_conv1d(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
    ) -> Tensor<Self, 3> {
        conv::causal_conv1d_tensor_ops(x, weight, bias, silu)
    }

    /// Gradients of a loss through [`SelectiveScanBackend::causal_conv1d`] given `dy` =
    /// dLoss/dy: `(dx, dweight, dbias)` in the dtypes of `x`, `weight` and `bias` (`dbias` is
    /// `None` without a bias). Default: Burn tensor ops
    /// ([`conv::causal_conv1d_backward_tensor_ops`]).
    #[allow(clippy::type_complexity)]
    fn causal_conv1d_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        dy: Tensor<Self, 3>,
    ) -> (Tensor<Self, 3>, Tensor<Self, 2>, Option<Tensor<Self, 1>>) {
        conv::causal_conv1d_backward_tensor_ops(x, weight, bias, silu, dy)
    }

    /// [`SelectiveScanBackend::causal_conv1d`] with the kernel settings `config`. Default:
    /// `config` is ignored.
    fn causal_conv1d_with_config(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        config: &KernelConfig,
    ) -> Tensor<Self, 3> {
        let _ = config;
        Self::causal_conv1d(x, weight, bias, silu)
    }

    /// [`SelectiveScanBackend::causal_conv1d_backward`] with the kernel settings `config`.
    /// Default: `config` is ignored.
    #[allow(clippy::type_complexity)]
    fn causal_conv1d_backward_with_config(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
        silu: bool,
        dy: Tensor<Self, 3>,
        config: &KernelConfig,
    ) -> (Tensor<Self, 3>, Tensor<Self, 2>, Option<Tensor<Self, 1>>) {
        let _ = config;
        Self::causal_conv1d_backward(x, weight, bias, silu, dy)
    }
}

/// Run the selective scan after validating shapes. `return_last_state` also returns the
/// state after the last step, `[batch, d_inner, N]`.
///
/// Forward and backward through Burn's `Autodiff`, checked against the tensor-op reference
/// ([`reference::selective_scan`]):
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::{Distribution, Tensor};
/// use mamba_ssm::{ScanInputs, reference, selective_scan};
///
/// type B = Autodiff<NdArray>;
/// let dev = Default::default();
/// let (batch, dim, len, n) = (1, 4, 9, 2);
/// let r = |s: [usize; 3]| Tensor::<B, 3>::random(s, Distribution::Normal(0.0, 1.0), &dev);
/// let a = -Tensor::<B, 2>::random([dim, n], Distribution::Uniform(0.5, 1.5), &dev);
/// let (u, delta) = (r([batch, dim, len]).require_grad(), r([batch, dim, len]));
/// let inputs = ScanInputs::new_ungrouped(u.clone(), delta, a, r([batch, n, len]), r([batch, n, len]))
///     .with_softplus(true);
///
/// let fast = selective_scan(inputs.clone(), false)?;
/// let slow = reference::selective_scan(inputs, false);
/// let diff = (fast.y.clone() - slow.y).abs().max().into_scalar();
/// assert!(diff < 1e-4);
///
/// // the backward (this crate's custom gradient) reaches every tracked input
/// let grads = fast.y.sum().backward();
/// assert_eq!(u.grad(&grads).unwrap().dims(), [batch, dim, len]);
/// # Ok::<(), mamba_ssm::ScanError>(())
/// ```
pub fn selective_scan<B: SelectiveScanBackend>(
    inputs: ScanInputs<B>,
    return_last_state: bool,
) -> Result<ScanOutput<B>, ScanError> {
    inputs.validate()?;
    Ok(B::selective_scan(inputs, return_last_state))
}

/// [`selective_scan`] with the kernel settings `config` (see [`KernelConfig`]; backends
/// without cubecl kernels ignore it). Through `Autodiff` the backward runs with the same
/// settings.
pub fn selective_scan_with_config<B: SelectiveScanBackend>(
    inputs: ScanInputs<B>,
    return_last_state: bool,
    config: &KernelConfig,
) -> Result<ScanOutput<B>, ScanError> {
    inputs.validate()?;
    Ok(B::selective_scan_with_config(
        inputs,
        return_last_state,
        config,
    ))
}

/// `dy`'s shape against `u`'s.
fn validate_dy<B: Backend>(inputs: &ScanInputs<B>, dy: &Tensor<B, 3>) -> Result<(), ScanError> {
    inputs.validate()?;
    if dy.dims() != inputs.u.dims() {
        return Err(ScanError::Shape {
            tensor: "dy",
            got: dy.dims().to_vec(),
            expected: format!("{:?} like u", inputs.u.dims()),
        });
    }
    Ok(())
}

/// The hand-written backward, after validating shapes (`dy` must be `[batch, d_inner, L]`).
pub fn selective_scan_backward<B: SelectiveScanBackend>(
    inputs: ScanInputs<B>,
    dy: Tensor<B, 3>,
) -> Result<ScanGrads<B>, ScanError> {
    validate_dy(&inputs, &dy)?;
    Ok(B::selective_scan_backward(inputs, dy))
}

/// [`selective_scan_backward`] with the kernel settings `config` (see [`KernelConfig`]).
pub fn selective_scan_backward_with_config<B: SelectiveScanBackend>(
    inputs: ScanInputs<B>,
    dy: Tensor<B, 3>,
    config: &KernelConfig,
) -> Result<ScanGrads<B>, ScanError> {
    validate_dy(&inputs, &dy)?;
    Ok(B::selective_scan_backward_saved_with_config(
        inputs, dy, None, config,
    ))
}

#[cfg(feature = "ndarray")]
mod ndarray_impl {
    use super::*;
    use crate::host::{HostInputs, backward_host, dims_of, forward_host};
    use burn::backend::NdArray;
    use burn::backend::ndarray::{
        FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
    };
    use burn::tensor::TensorMetadata;
    use std::borrow::Cow;

    /// Borrow an f32 tensor in standard layout without copying; copy (in logical order)
    /// otherwise.
    fn slice_of(t: &NdArrayTensor) -> Cow<'_, [f32]> {
        match t {
            NdArrayTensor::F32(storage) => match storage.view().to_slice() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(storage.view().iter().copied().collect()),
            },
            NdArrayTensor::F64(storage) => {
                Cow::Owned(storage.view().iter().map(|&x| x as f32).collect())
            }
            other => unreachable!(
                "float tensors are F32 or F64 on NdArray, got {:?}",
                other.dtype()
            ),
        }
    }

    fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
        t.into_primitive().tensor()
    }

    /// The inputs' NdArray primitives, kept alive while the scan borrows them.
    struct Prims {
        dims: crate::cpu::ScanDims,
        softplus: bool,
        u: NdArrayTensor,
        delta: NdArrayTensor,
        a: NdArrayTensor,
        b: NdArrayTensor,
        c: NdArrayTensor,
        d: Option<NdArrayTensor>,
        z: Option<NdArrayTensor>,
        bias: Option<NdArrayTensor>,
    }

    impl Prims {
        fn new<B: Backend<FloatTensorPrimitive = NdArrayTensor>>(inputs: ScanInputs<B>) -> Self {
            Prims {
                dims: dims_of(&inputs),
                softplus: inputs.delta_softplus,
                u: prim(inputs.u),
                delta: prim(inputs.delta),
                a: prim(inputs.a),
                b: prim(inputs.b),
                c: prim(inputs.c),
                d: inputs.d.map(prim),
                z: inputs.z.map(prim),
                bias: inputs.delta_bias.map(prim),
            }
        }

        fn host(&self) -> HostInputs<'_> {
            HostInputs {
                dims: self.dims,
                u: slice_of(&self.u),
                delta: slice_of(&self.delta),
                a: slice_of(&self.a),
                b: slice_of(&self.b),
                c: slice_of(&self.c),
                d: self.d.as_ref().map(slice_of),
                z: self.z.as_ref().map(slice_of),
                bias: self.bias.as_ref().map(slice_of),
                softplus: self.softplus,
            }
        }
    }

    impl<E: FloatNdArrayElement, I: IntNdArrayElement, Q: QuantElement> SelectiveScanBackend
        for NdArray<E, I, Q>
    where
        NdArrayTensor: From<SharedArray<E>>,
        NdArrayTensor: From<SharedArray<I>>,
    {
        fn selective_scan(inputs: ScanInputs<Self>, return_last_state: bool) -> ScanOutput<Self> {
            let like = inputs.u.clone();
            forward_host(&Prims::new(inputs).host(), return_last_state, &like)
        }

        fn selective_scan_backward(
            inputs: ScanInputs<Self>,
            dy: Tensor<Self, 3>,
        ) -> ScanGrads<Self> {
            let like = inputs.u.clone();
            let dy = prim(dy);
            backward_host(&Prims::new(inputs).host(), &slice_of(&dy), &like)
        }

        // The causal conv runs the trait's tensor-op defaults on NdArray: a rayon host
        // implementation was faster, but two replicas training on two threads (rank-heads'
        // data-parallel test) gave run-to-run different results with it; with the tensor ops
        // the runs are identical.
    }
}
