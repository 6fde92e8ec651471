//! `FusedAdamW` on `NdArray<f64>` against the float64 reference. A test binary of its own:
//! Burn's NdArray backends share one device, whose default float dtype is set by the first
//! backend to use it.

mod common;

use burn::backend::NdArray;
use burn::optim::SimpleOptimizer;
use burn::tensor::{Tensor, TensorData};
use common::{Hyper, reference, values};
use fused_optim::FusedAdamWConfig;

#[test]
fn f64_parameters_keep_f64_state_and_no_master_copy() {
    type D = NdArray<f64>;
    let device = Default::default();
    let n = 50;
    let p0 = values(n, 2, 1.0);
    let grads: Vec<Vec<f32>> = (0..2).map(|s| values(n, 30 + s, 0.1)).collect();
    let h = Hyper {
        lr: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: 0.0,
    };
    let optim = FusedAdamWConfig::new().with_weight_decay(0.0).optimizer();
    let load = |v: &[f32]| {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        Tensor::<D, 1>::from_data(TensorData::new(v, [n]), &device)
    };
    let (mut p, mut state) = (load(&p0), None);
    for g in &grads {
        (p, state) = optim.step(h.lr, p, load(g), state);
    }
    let state = state.unwrap();
    assert!(state.master.is_none());
    assert_eq!(state.moment_2.dtype(), burn::tensor::DType::F64);
    let (want, _, _) = reference(&p0, &grads, h);
    let got = p.into_data().into_vec::<f64>().unwrap();
    let e = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f64, f64::max);
    // the step's scalars (lr, β, ε) are f32: about 1e-7 of an update of about 1e-3
    assert!(e < 1e-9, "f64 update error {e:e}");
}
