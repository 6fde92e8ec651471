//! `FusedAdamW` on the CPU (NdArray) against the float64 reference, and against Burn's own
//! `AdamW` on a module through Burn's optimizer adaptor.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::tensor::{Tensor, TensorData};
use common::{Hyper, close, reference, values};
use fused_optim::{AdamWBackend, AdamWStep, FusedAdamWConfig};

type B = NdArray<f32>;

#[test]
fn three_updates_match_the_float64_reference() {
    let device = Default::default();
    let n = 1000;
    let p0 = values(n, 1, 1.0);
    // gradients of very different magnitudes: the square root and ε matter
    let grads: Vec<Vec<f32>> = (0..3)
        .map(|s| values(n, 10 + s, 10f32.powi(s as i32 - 2)))
        .collect();
    let h = Hyper {
        lr: 1e-2,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: 0.1,
    };
    let optim = FusedAdamWConfig::new()
        .with_weight_decay(h.weight_decay as f32)
        .optimizer();
    let mut p = Tensor::<B, 2>::from_data(TensorData::new(p0.clone(), [40, 25]), &device);
    let mut state = None;
    for g in &grads {
        let g = Tensor::<B, 2>::from_data(TensorData::new(g.clone(), [40, 25]), &device);
        let (next, s) = optim.step(h.lr, p, g, state);
        (p, state) = (next, s);
    }
    let (want_p, want_m, want_v) = reference(&p0, &grads, h);
    let state = state.expect("state after a step");
    assert_eq!(state.time, 3);
    close("parameter", p.reshape([n]), &want_p, 1e-6);
    close("first moment", state.moment_1.reshape([n]), &want_m, 1e-6);
    close("second moment", state.moment_2.reshape([n]), &want_v, 1e-6);
}

#[test]
fn the_step_scalars_are_the_bias_corrections_and_the_decay() {
    let s = AdamWStep {
        lr: 0.5,
        beta_1: 0.9,
        beta_2: 0.99,
        epsilon: 1e-8,
        weight_decay: 0.2,
        time: 2,
    };
    assert!((s.decay() - 0.9).abs() < 1e-7);
    let (c1, c2) = s.corrections();
    assert!((c1 as f64 - 1.0 / 0.19).abs() < 1e-5, "{c1}");
    assert!((c2 as f64 - 1.0 / 0.0199).abs() < 1e-3, "{c2}");
    // the tensor-op update of one element by hand: g = 1, m = v = 0 at t = 1
    let device = Default::default();
    let t = |x: f32| Tensor::<B, 1>::from_floats([x], &device);
    let s1 = AdamWStep { time: 1, ..s };
    let u = B::adamw_step(t(2.0), t(1.0), None, t(0.0), t(0.0), &s1);
    let want_m = 0.1f64;
    let want_v = 0.01f64;
    let want_p = 2.0 * 0.9 - 0.5 * (want_m / 0.1) / ((want_v / 0.01).sqrt() + 1e-8);
    close("p", u.param, &[want_p], 1e-6);
    close("m", u.moment_1, &[want_m], 1e-6);
    close("v", u.moment_2, &[want_v], 1e-6);
    assert!(
        u.master.is_none(),
        "an f32 parameter is its own master copy"
    );
}

#[test]
fn a_module_trains_as_with_burns_adamw() {
    type A = Autodiff<NdArray<f32>>;
    let device = Default::default();
    // explicit values: a fresh Linear's parameters are initialised lazily, once per clone
    let mut model: Linear<A> = LinearConfig::new(6, 3).init(&device);
    model.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(values(18, 6, 0.5), [6, 3]),
        &device,
    ));
    model.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(values(3, 7, 0.5), [3]),
        &device,
    )));
    let x = Tensor::<A, 2>::from_data(TensorData::new(values(30, 5, 1.0), [5, 6]), &device);
    let run = |fused: bool| -> Vec<f32> {
        let mut m = model.clone();
        let mut burn = AdamWConfig::new()
            .with_weight_decay(0.05)
            .init::<A, Linear<A>>();
        let mut ours = FusedAdamWConfig::new()
            .with_weight_decay(0.05)
            .init::<A, Linear<A>>();
        for _ in 0..4 {
            let loss = m.forward(x.clone()).powi_scalar(2).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            m = if fused {
                ours.step(1e-2, m, grads)
            } else {
                burn.step(1e-2, m, grads)
            };
        }
        let w = m.weight.val().into_data().into_vec::<f32>().unwrap();
        let b = m
            .bias
            .expect("bias")
            .val()
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        w.into_iter().chain(b).collect()
    };
    let (ours, burn) = (run(true), run(false));
    assert!(
        ours.iter()
            .zip(&model.weight.val().into_data().into_vec::<f32>().unwrap())
            .any(|(a, b)| a != b),
        "the parameters moved"
    );
    let want: Vec<f64> = burn.iter().map(|&x| x as f64).collect();
    let t = Tensor::<B, 1>::from_floats(ours.as_slice(), &Default::default());
    close("parameters after 4 steps", t, &want, 1e-5);
}
