//! The causal-convolution kernels on wgpu (in CI: Mesa's lavapipe) against the `NdArray`
//! results (the tensor-op formulation, itself checked against Burn's grouped `Conv1d` in
//! `tests/conv.rs`): forward, the direct backward (dx, dweight, dbias), and the gradients
//! through `Autodiff<Wgpu>`. Output buffers are NaN-poisoned before each launch, so an
//! element a kernel does not write shows. Run with
//! `cargo test -p mamba-ssm --features wgpu --test conv_wgpu`, and with
//! `--features wgpu,fusion` for the same tests through Burn's `Fusion` wrapper.
#![cfg(feature = "wgpu")]

use burn::backend::{Autodiff, NdArray, Wgpu};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor, TensorData};
use mamba_ssm::kernel::KernelConfig;
use mamba_ssm::{
    SelectiveScanBackend, causal_conv1d, causal_conv1d_backward,
    causal_conv1d_backward_with_config, causal_conv1d_with_config,
};

mod common;
use common::{conv_err as err, to_vec};

type Ad = Autodiff<Wgpu>;

fn on<B: Backend, const D: usize>(t: &Tensor<NdArray, D>, dev: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(t.to_data(), dev)
}

/// `[batch, d, L]` on `B`: layout 0 contiguous, 1 a transposed view of a `[batch, L, d]`
/// tensor (strided L: copied by the wrapper), 2 the last d channels of a `[batch, d + 3, L]`
/// tensor (the kernels' own batch and channel strides).
fn on3<B: Backend>(t: &Tensor<NdArray, 3>, dev: &B::Device, layout: usize) -> Tensor<B, 3> {
    match layout {
        1 => {
            let tr: Tensor<B, 3> = Tensor::from_data(t.clone().swap_dims(1, 2).into_data(), dev);
            tr.swap_dims(1, 2)
        }
        2 => {
            let [batch, d, len] = t.dims();
            let pad = Tensor::<NdArray, 3>::full([batch, 3, len], 7.0, &t.device());
            let wide: Tensor<B, 3> = on(&Tensor::cat(vec![pad, t.clone()], 1), dev);
            wide.slice([0..batch, 3..d + 3, 0..len])
        }
        _ => on(t, dev),
    }
}

struct Case {
    x: Tensor<NdArray, 3>,
    w: Tensor<NdArray, 2>,
    bias: Option<Tensor<NdArray, 1>>,
    dy: Tensor<NdArray, 3>,
}

fn case(batch: usize, d: usize, len: usize, k: usize, bias: bool) -> Case {
    let dev = Default::default();
    let n = |s: [usize; 3]| Tensor::<NdArray, 3>::random(s, Distribution::Normal(0.0, 1.0), &dev);
    Case {
        x: n([batch, d, len]),
        w: Tensor::random([d, k], Distribution::Uniform(-1.0, 1.0), &dev),
        bias: bias.then(|| Tensor::random([d], Distribution::Uniform(-1.0, 1.0), &dev)),
        dy: n([batch, d, len]),
    }
}

/// (batch, d, L, k): L = 1, L < k, odd L, L over several forward cubes (256 units) and
/// beyond the backward's cube (batch x L = 8200: two backward cubes per channel by default), batch 1 and 3, d not a multiple of anything, k 1, 2, 4 and 7 (unrolled tap
/// loops), 20 and 300 (loops; 300: fewer backward units to fit shared memory).
const SHAPES: [(usize, usize, usize, usize); 13] = [
    (1, 3, 1, 4),
    (2, 5, 4100, 4),
    (2, 3, 20, 7),
    (2, 3, 30, 20),
    (1, 2, 40, 300),
    (3, 5, 1, 1),
    (3, 5, 2, 4),
    (1, 4, 3, 2),
    (3, 7, 7, 2),
    (3, 6, 33, 4),
    (1, 37, 1000, 4),
    (3, 5, 1031, 2),
    (2, 300, 19, 1),
];

const TOL: f64 = 1e-4;

/// The kernels' settings of these tests: output buffers NaN-poisoned before each launch.
fn poisoned() -> KernelConfig {
    KernelConfig {
        conv_poison: true,
        ..KernelConfig::default()
    }
}

#[allow(clippy::type_complexity)]
fn reference(c: &Case, silu: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let y = causal_conv1d(c.x.clone(), c.w.clone(), c.bias.clone(), silu).unwrap();
    let (dx, dw, db) =
        causal_conv1d_backward(c.x.clone(), c.w.clone(), c.bias.clone(), silu, c.dy.clone())
            .unwrap();
    (to_vec(y), to_vec(dx), to_vec(dw), db.map(to_vec))
}

#[test]
fn kernels_match_ndarray_forward_and_backward() {
    let cfg = poisoned();
    let dev = Default::default();
    let name = <Wgpu as Backend>::name(&dev);
    assert_eq!(name.contains("fusion"), cfg!(feature = "fusion"), "{name}");
    for (i, &(batch, d, len, k)) in SHAPES.iter().enumerate() {
        for bias in [false, true] {
            let c = case(batch, d, len, k, bias);
            for silu in [false, true] {
                // the three layouts of x and dy in turn
                let layout = (i + 2 * bias as usize + silu as usize) % 3;
                let label = format!(
                    "batch {batch} d {d} L {len} k {k} bias {bias} silu {silu} layout {layout}"
                );
                let (y_ref, dx_ref, dw_ref, db_ref) = reference(&c, silu);
                let x = on3::<Wgpu>(&c.x, &dev, layout);
                let w = on::<Wgpu, 2>(&c.w, &dev);
                let b = c.bias.as_ref().map(|b| on::<Wgpu, 1>(b, &dev));
                let dy = on3::<Wgpu>(&c.dy, &dev, layout);
                let y =
                    causal_conv1d_with_config(x.clone(), w.clone(), b.clone(), silu, &cfg).unwrap();
                assert_eq!(y.dims(), [batch, d, len]);
                let e = err(&to_vec(y), &y_ref);
                assert!(e < TOL, "{label}: y err {e:e}");
                let (dx, dw, db) =
                    causal_conv1d_backward_with_config(x, w, b, silu, dy, &cfg).unwrap();
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

#[test]
fn autodiff_gradients_match_ndarray() {
    let cfg = poisoned();
    let dev = Default::default();
    for &(batch, d, len, k) in &[(3, 5, 2, 4), (1, 37, 1000, 4), (3, 7, 7, 2), (2, 9, 40, 1)] {
        for (bias, silu) in [(true, true), (false, false), (true, false), (false, true)] {
            let c = case(batch, d, len, k, bias);
            let label = format!("batch {batch} d {d} L {len} k {k} bias {bias} silu {silu}");
            let (y_ref, dx_ref, dw_ref, db_ref) = reference(&c, silu);
            let x = on::<Ad, 3>(&c.x, &dev).require_grad();
            // the weight as Mamba holds it, [d, 1, k], reshaped: the gradient flows through
            let w3 = Tensor::<Ad, 3>::from_data(c.w.clone().reshape([d, 1, k]).into_data(), &dev)
                .require_grad();
            let b = c.bias.as_ref().map(|b| on::<Ad, 1>(b, &dev).require_grad());
            let y = causal_conv1d_with_config(
                x.clone(),
                w3.clone().reshape([d, k]),
                b.clone(),
                silu,
                &cfg,
            )
            .unwrap();
            let e = err(&to_vec(y.clone()), &y_ref);
            assert!(e < TOL, "{label}: y err {e:e}");
            let grads = (y * on::<Ad, 3>(&c.dy, &dev)).sum().backward();
            let e = err(&to_vec(x.grad(&grads).unwrap()), &dx_ref);
            assert!(e < TOL, "{label}: dx err {e:e}");
            let gw = w3.grad(&grads).unwrap();
            assert_eq!(gw.dims(), [d, 1, k]);
            let e = err(&to_vec(gw), &dw_ref);
            assert!(e < TOL, "{label}: dweight err {e:e}");
            if let (Some(b), Some(want)) = (b, &db_ref) {
                let e = err(&to_vec(b.grad(&grads).unwrap()), want);
                assert!(e < TOL, "{label}: dbias err {e:e}");
            }
        }
    }
}

/// f16 activations with f32 weight and bias: y and dx in f16, dweight and dbias in f32, against
/// NdArray on the f16-rounded inputs. Skipped where the device has no f16.
#[test]
fn half_precision_activations() {
    let cfg = poisoned();
    let dev = Default::default();
    if !<Wgpu as Backend>::supports_dtype(&dev, DType::F16) {
        eprintln!("no f16 on this device: skipped");
        return;
    }
    let h = DType::F16;
    for &(batch, d, len, k, silu) in &[(3, 6, 300, 4, true), (1, 5, 3, 4, false)] {
        let c = case(batch, d, len, k, true);
        let x = on::<Wgpu, 3>(&c.x, &dev).cast(h);
        let dy = on::<Wgpu, 3>(&c.dy, &dev).cast(h);
        // the reference on the rounded values
        let rounded = |t: &Tensor<Wgpu, 3>| {
            Tensor::<NdArray, 3>::from_data(
                TensorData::new(to_vec(t.clone()), t.dims()),
                &Default::default(),
            )
        };
        let rc = Case {
            x: rounded(&x),
            w: c.w.clone(),
            bias: c.bias.clone(),
            dy: rounded(&dy),
        };
        let (y_ref, dx_ref, dw_ref, db_ref) = reference(&rc, silu);
        let w = on::<Wgpu, 2>(&c.w, &dev);
        let b = c.bias.as_ref().map(|b| on::<Wgpu, 1>(b, &dev));
        let y = causal_conv1d_with_config(x.clone(), w.clone(), b.clone(), silu, &cfg).unwrap();
        assert_eq!(y.dtype(), h);
        let e = err(&to_vec(y), &y_ref);
        assert!(e < 2e-3, "f16 L {len}: y err {e:e}");
        let (dx, dw, db) = <Wgpu as SelectiveScanBackend>::causal_conv1d_backward_with_config(
            x, w, b, silu, dy, &cfg,
        );
        assert_eq!(dx.dtype(), h);
        assert_eq!(dw.dtype(), DType::F32);
        let db = db.unwrap();
        assert_eq!(db.dtype(), DType::F32);
        let e = err(&to_vec(dx), &dx_ref);
        assert!(e < 2e-3, "f16 L {len}: dx err {e:e}");
        // accumulated in f32 from f16-rounded inputs: close to the f32 reference on them
        let e = err(&to_vec(dw), &dw_ref);
        assert!(e < 1e-4, "f16 L {len}: dweight err {e:e}");
        let e = err(&to_vec(db), db_ref.as_ref().unwrap());
        assert!(e < 1e-4, "f16 L {len}: dbias err {e:e}");
    }
}

/// The backward with a channel's positions split between several cubes (their sums added
/// afterwards): forced 1, 3 and 64 cubes per channel (more cubes than runs of positions
/// leaves some with nothing to sum).
#[test]
fn backward_split_between_cubes() {
    let cfg = poisoned();
    let dev = Default::default();
    for splits in [1, 3, 64] {
        let cfg = KernelConfig {
            conv_backward_splits: Some(splits),
            ..cfg.clone()
        };
        for &(batch, d, len, k) in &[(1, 3, 1, 4), (3, 7, 7, 2), (1, 37, 1000, 4), (2, 3, 30, 20)] {
            for (bias, silu) in [(true, true), (false, false)] {
                let c = case(batch, d, len, k, bias);
                let label = format!(
                    "splits {splits} batch {batch} d {d} L {len} k {k} bias {bias} silu {silu}"
                );
                let (_, dx_ref, dw_ref, db_ref) = reference(&c, silu);
                let (dx, dw, db) = causal_conv1d_backward_with_config(
                    on::<Wgpu, 3>(&c.x, &dev),
                    on::<Wgpu, 2>(&c.w, &dev),
                    c.bias.as_ref().map(|b| on::<Wgpu, 1>(b, &dev)),
                    silu,
                    on::<Wgpu, 3>(&c.dy, &dev),
                    &cfg,
                )
                .unwrap();
                let e = err(&to_vec(dx), &dx_ref);
                assert!(e < TOL, "{label}: dx err {e:e}");
                assert_eq!(dw.dims(), [d, k]);
                let e = err(&to_vec(dw), &dw_ref);
                assert!(e < TOL, "{label}: dweight err {e:e}");
                if let (Some(db), Some(want)) = (db, &db_ref) {
                    assert_eq!(db.dims(), [d]);
                    let e = err(&to_vec(db), want);
                    assert!(e < TOL, "{label}: dbias err {e:e}");
                }
            }
        }
    }
}
