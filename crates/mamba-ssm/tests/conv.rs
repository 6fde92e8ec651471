//! The causal convolution on the CPU (`NdArray`: the tensor-op formulation;
//! `Autodiff<NdArray>`: one graph node with the hand-written backward; the trait's tensor-op
//! defaults) against Burn's own
//! grouped `Conv1d` (an independent implementation) followed by `activation::silu`: the
//! forward and the gradients of x, weight and bias.

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::nn::PaddingConfig1d;
use burn::nn::conv::Conv1dConfig;
use burn::tensor::{Distribution, Tensor, activation};
use mamba_ssm::{ScanError, SelectiveScanBackend, causal_conv1d, causal_conv1d_backward};

mod common;
use common::{conv_err as err, to_vec};

type Ad = Autodiff<NdArray>;

struct Case {
    x: Tensor<NdArray, 3>,
    w: Tensor<NdArray, 2>,
    bias: Option<Tensor<NdArray, 1>>,
    dy: Tensor<NdArray, 3>,
    silu: bool,
}

fn case(batch: usize, d: usize, len: usize, k: usize, bias: bool, silu: bool) -> Case {
    let dev = Default::default();
    let n = |s: [usize; 3]| Tensor::<NdArray, 3>::random(s, Distribution::Normal(0.0, 1.0), &dev);
    Case {
        x: n([batch, d, len]),
        w: Tensor::random([d, k], Distribution::Uniform(-1.0, 1.0), &dev),
        bias: bias.then(|| Tensor::random([d], Distribution::Uniform(-1.0, 1.0), &dev)),
        dy: n([batch, d, len]),
        silu,
    }
}

/// Burn's grouped Conv1d (+ silu): y and the gradients (x, weight, bias) of sum(y * dy).
#[allow(clippy::type_complexity)]
fn burn_conv1d(c: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let dev = Default::default();
    let [_, d, _] = c.x.dims();
    let k = c.w.dims()[1];
    let mut conv = Conv1dConfig::new(d, d, k)
        .with_groups(d)
        .with_bias(c.bias.is_some())
        .with_padding(PaddingConfig1d::Explicit(k - 1, 0))
        .init::<Ad>(&dev);
    conv.weight =
        Param::from_tensor(Tensor::from_inner(c.w.clone().reshape([d, 1, k])).require_grad());
    conv.bias = c
        .bias
        .clone()
        .map(|b| Param::from_tensor(Tensor::from_inner(b).require_grad()));
    let x = Tensor::<Ad, 3>::from_inner(c.x.clone()).require_grad();
    let mut y = conv.forward(x.clone());
    if c.silu {
        y = activation::silu(y);
    }
    let grads = (y.clone() * Tensor::from_inner(c.dy.clone()))
        .sum()
        .backward();
    (
        to_vec(y),
        to_vec(x.grad(&grads).unwrap()),
        to_vec(conv.weight.val().grad(&grads).unwrap()),
        conv.bias.map(|b| to_vec(b.val().grad(&grads).unwrap())),
    )
}

const TOL: f64 = 1e-5;

fn check(batch: usize, d: usize, len: usize, k: usize, bias: bool, silu: bool) {
    let c = case(batch, d, len, k, bias, silu);
    let label = format!("batch {batch} d {d} L {len} k {k} bias {bias} silu {silu}");
    let (y_ref, dx_ref, dw_ref, db_ref) = burn_conv1d(&c);

    // NdArray: forward and the direct backward (the trait's defaults)
    let y = causal_conv1d(c.x.clone(), c.w.clone(), c.bias.clone(), silu).unwrap();
    assert_eq!(y.dims(), [batch, d, len]);
    let e = err(&to_vec(y), &y_ref);
    assert!(e < TOL, "{label}: y err {e:e}");
    let (dx, dw, db) =
        causal_conv1d_backward(c.x.clone(), c.w.clone(), c.bias.clone(), silu, c.dy.clone())
            .unwrap();
    assert_eq!(dw.dims(), [d, k]);
    let e = err(&to_vec(dx), &dx_ref);
    assert!(e < TOL, "{label}: dx err {e:e}");
    let e = err(&to_vec(dw), &dw_ref);
    assert!(e < TOL, "{label}: dweight err {e:e}");
    assert_eq!(db.is_some(), bias, "{label}");
    if let (Some(db), Some(want)) = (db, &db_ref) {
        let e = err(&to_vec(db), want);
        assert!(e < TOL, "{label}: dbias err {e:e}");
    }

    // Autodiff<NdArray>: one node, gradients through .backward()
    let x = Tensor::<Ad, 3>::from_inner(c.x.clone()).require_grad();
    let w = Tensor::<Ad, 2>::from_inner(c.w.clone()).require_grad();
    let b = c
        .bias
        .clone()
        .map(|b| Tensor::<Ad, 1>::from_inner(b).require_grad());
    let y = causal_conv1d(x.clone(), w.clone(), b.clone(), silu).unwrap();
    let e = err(&to_vec(y.clone()), &y_ref);
    assert!(e < TOL, "{label}: autodiff y err {e:e}");
    let grads = (y * Tensor::from_inner(c.dy.clone())).sum().backward();
    let e = err(&to_vec(x.grad(&grads).unwrap()), &dx_ref);
    assert!(e < TOL, "{label}: autodiff dx err {e:e}");
    let e = err(&to_vec(w.grad(&grads).unwrap()), &dw_ref);
    assert!(e < TOL, "{label}: autodiff dweight err {e:e}");
    if let (Some(b), Some(want)) = (b, &db_ref) {
        let e = err(&to_vec(b.grad(&grads).unwrap()), want);
        assert!(e < TOL, "{label}: autodiff dbias err {e:e}");
    }
}

/// The trait's tensor-op defaults (what backends without their own implementation run)
/// against Burn's grouped Conv1d too.
#[test]
fn tensor_op_defaults_match_burn_grouped_conv1d() {
    use mamba_ssm::conv::{causal_conv1d_backward_tensor_ops, causal_conv1d_tensor_ops};
    for &(batch, d, len, k) in &[
        (1, 3, 1, 4),
        (3, 5, 2, 4),
        (2, 4, 9, 2),
        (3, 3, 40, 4),
        (1, 2, 5, 1),
    ] {
        for bias in [false, true] {
            for silu in [false, true] {
                let c = case(batch, d, len, k, bias, silu);
                let label = format!("batch {batch} d {d} L {len} k {k} bias {bias} silu {silu}");
                let (y_ref, dx_ref, dw_ref, db_ref) = burn_conv1d(&c);
                let y = causal_conv1d_tensor_ops(c.x.clone(), c.w.clone(), c.bias.clone(), silu);
                let e = err(&to_vec(y), &y_ref);
                assert!(e < TOL, "{label}: y err {e:e}");
                let (dx, dw, db) = causal_conv1d_backward_tensor_ops(
                    c.x.clone(),
                    c.w.clone(),
                    c.bias.clone(),
                    silu,
                    c.dy.clone(),
                );
                let e = err(&to_vec(dx), &dx_ref);
                assert!(e < TOL, "{label}: dx err {e:e}");
                let e = err(&to_vec(dw), &dw_ref);
                assert!(e < TOL, "{label}: dweight err {e:e}");
                assert_eq!(db.is_some(), bias);
                if let (Some(db), Some(want)) = (db, &db_ref) {
                    let e = err(&to_vec(db), want);
                    assert!(e < TOL, "{label}: dbias err {e:e}");
                }
            }
        }
    }
}

/// NdArray (the tensor-op formulation) and `Autodiff<NdArray>`.
#[test]
fn matches_burn_grouped_conv1d_forward_and_gradients() {
    for &(batch, d, len, k) in &[
        (1, 1, 1, 1),
        (1, 3, 1, 4),
        (3, 5, 2, 4),
        (2, 4, 3, 2),
        (3, 5, 11, 4),
        (1, 7, 33, 1),
        (2, 6, 64, 2),
        (3, 3, 130, 4),
    ] {
        for bias in [false, true] {
            for silu in [false, true] {
                check(batch, d, len, k, bias, silu);
            }
        }
    }
}

/// Only the node's inputs that require gradients receive them (here the weight alone).
#[test]
fn autodiff_untracked_inputs_get_no_gradient() {
    let c = case(2, 3, 9, 4, true, true);
    let x = Tensor::<Ad, 3>::from_inner(c.x);
    let w = Tensor::<Ad, 2>::from_inner(c.w).require_grad();
    let b = Tensor::<Ad, 1>::from_inner(c.bias.unwrap());
    let y = causal_conv1d(x.clone(), w.clone(), Some(b.clone()), true).unwrap();
    let grads = y.sum().backward();
    assert!(w.grad(&grads).is_some());
    assert!(x.grad(&grads).is_none());
    assert!(b.grad(&grads).is_none());
}

#[test]
fn shape_errors_name_the_tensor() {
    let dev = Default::default();
    let x = Tensor::<NdArray, 3>::zeros([2, 3, 5], &dev);
    let w = Tensor::<NdArray, 2>::zeros([3, 4], &dev);
    let shape_err = |r: Result<Tensor<NdArray, 3>, ScanError>| match r {
        Err(ScanError::ConvShape { tensor, .. }) => tensor,
        other => panic!("expected a shape error, got {other:?}"),
    };
    assert_eq!(
        shape_err(causal_conv1d(
            x.clone(),
            Tensor::zeros([4, 4], &dev),
            None,
            false
        )),
        "weight"
    );
    assert_eq!(
        shape_err(causal_conv1d(
            x.clone(),
            Tensor::zeros([3, 0], &dev),
            None,
            false
        )),
        "weight"
    );
    assert_eq!(
        shape_err(causal_conv1d(
            x.clone(),
            w.clone(),
            Some(Tensor::zeros([2], &dev)),
            false
        )),
        "bias"
    );
    assert_eq!(
        shape_err(causal_conv1d(
            Tensor::zeros([2, 3, 0], &dev),
            w.clone(),
            None,
            true
        )),
        "x"
    );
    let msg = causal_conv1d(x.clone(), Tensor::zeros([4, 4], &dev), None, false)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("causal_conv1d: weight has shape [4, 4]"),
        "{msg}"
    );
    match causal_conv1d_backward(x, w, None, false, Tensor::zeros([2, 3, 4], &dev)) {
        Err(ScanError::ConvShape { tensor: "dy", .. }) => {}
        other => panic!("expected a dy shape error, got {:?}", other.map(|_| ())),
    }
}

/// NdArray's forward by hand: a unit impulse reaches t..t+k-1 with the reversed taps.
#[test]
fn impulse_response_is_the_reversed_kernel() {
    let dev = Default::default();
    let x = Tensor::<NdArray, 3>::from_floats([[[0.0, 1.0, 0.0, 0.0, 0.0]]], &dev);
    let w = Tensor::<NdArray, 2>::from_floats([[1.0, 2.0, 3.0]], &dev);
    let y = <NdArray as SelectiveScanBackend>::causal_conv1d(x, w, None, false);
    assert_eq!(to_vec(y), vec![0.0, 3.0, 2.0, 1.0, 0.0]);
}

/// Non-contiguous x and dy (transposed views) give the results of their contiguous copies.
#[test]
fn strided_inputs_match_contiguous() {
    let c = case(2, 5, 13, 4, true, true);
    let dev = Default::default();
    let view = |t: &Tensor<NdArray, 3>| {
        Tensor::<NdArray, 3>::from_data(t.clone().swap_dims(1, 2).into_data(), &dev).swap_dims(1, 2)
    };
    let (xv, dyv) = (view(&c.x), view(&c.dy));
    let y1 = causal_conv1d(c.x.clone(), c.w.clone(), c.bias.clone(), true).unwrap();
    let y2 = causal_conv1d(xv.clone(), c.w.clone(), c.bias.clone(), true).unwrap();
    assert_eq!(to_vec(y1), to_vec(y2));
    let g1 = causal_conv1d_backward(c.x, c.w.clone(), c.bias.clone(), true, c.dy).unwrap();
    let g2 = causal_conv1d_backward(xv, c.w, c.bias, true, dyv).unwrap();
    assert_eq!(to_vec(g1.0), to_vec(g2.0));
    assert_eq!(to_vec(g1.1), to_vec(g2.1));
    assert_eq!(to_vec(g1.2.unwrap()), to_vec(g2.2.unwrap()));
}
