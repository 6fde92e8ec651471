//! The AdamW kernel on wgpu (in CI: Mesa's lavapipe, a Vulkan device on the CPU) against the
//! float64 reference: several updates in f32 and f16, a transposed (non-contiguous) gradient,
//! sizes that do not fill the last cube, and a module trained through Burn's optimizer adaptor
//! against Burn's own `AdamW` on the CPU. Run with `cargo test -p fused-optim --features wgpu
//! --test wgpu`, and with `--features wgpu,fusion` for the same tests through Burn's `Fusion`.
#![cfg(feature = "wgpu")]

mod common;

use burn::backend::{Autodiff, NdArray, Wgpu};
use burn::module::{AutodiffModule, Module, Param};
use burn::nn::{Linear, LinearConfig, LinearRecord};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use common::{Hyper, close, reference, values};
use fused_optim::FusedAdamWConfig;

fn updates<B: fused_optim::AdamWBackend>(dtype: DType, n: usize, tol: f64) {
    let device = B::Device::default();
    let p0 = values(n, 3, 1.0);
    let grads: Vec<Vec<f32>> = (0..3)
        .map(|s| values(n, 20 + s, 10f32.powi(s as i32 - 2)))
        .collect();
    // what the device stores: the reference starts from the rounded values
    let round = |v: &[f32]| -> Vec<f32> {
        match dtype {
            DType::F16 => v
                .iter()
                .map(|&x| burn::tensor::f16::from_f32(x).to_f32())
                .collect(),
            _ => v.to_vec(),
        }
    };
    let (p0, grads): (Vec<f32>, Vec<Vec<f32>>) =
        (round(&p0), grads.iter().map(|g| round(g)).collect());
    let h = Hyper {
        lr: 1e-2,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: 0.1,
    };
    let optim = FusedAdamWConfig::new().with_weight_decay(0.1).optimizer();
    let load = |v: &[f32]| {
        Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [n]), &device).cast(dtype)
    };
    let mut p = load(&p0);
    let mut state = None;
    for g in &grads {
        let (next, s) = optim.step(h.lr, p, load(g), state);
        assert_eq!(next.dtype(), dtype);
        (p, state) = (next, s);
    }
    let state = state.unwrap();
    // the state is f32 whatever the parameter's dtype: only the parameter itself is rounded
    let (want_p, want_m, want_v) = reference(&p0, &grads, h);
    close(&format!("{dtype:?} n {n}: parameter"), p, &want_p, tol);
    assert_eq!(state.moment_1.dtype(), DType::F32);
    close(
        &format!("{dtype:?} n {n}: first moment"),
        state.moment_1,
        &want_m,
        2e-6,
    );
    close(
        &format!("{dtype:?} n {n}: second moment"),
        state.moment_2,
        &want_v,
        2e-6,
    );
    match state.master {
        Some(master) => {
            assert_ne!(dtype, DType::F32);
            close(
                &format!("{dtype:?} n {n}: master copy"),
                master,
                &want_p,
                2e-6,
            );
        }
        None => assert_eq!(
            dtype,
            DType::F32,
            "a narrow parameter keeps an f32 master copy"
        ),
    }
}

#[test]
fn f32_updates_match_the_float64_reference() {
    // one element, part of a cube, several cubes
    for n in [1, 255, 70_001] {
        updates::<Wgpu>(DType::F32, n, 2e-6);
    }
}

#[test]
fn f16_updates_match_the_float64_reference() {
    let device = Default::default();
    if !<Wgpu as Backend>::supports_dtype(&device, DType::F16) {
        eprintln!("skipped: this wgpu device has no f16");
        return;
    }
    // f16's rounding step is 2^-11 relative: half of it
    updates::<Wgpu>(DType::F16, 4097, 5e-4);
}

#[test]
fn f16_updates_below_the_rounding_step_accumulate_in_the_master_copy() {
    let device = Default::default();
    if !<Wgpu as Backend>::supports_dtype(&device, DType::F16) {
        eprintln!("skipped: this wgpu device has no f16");
        return;
    }
    // p = 1, a constant gradient: Adam moves p by lr = 1e-4 per step, less than half of f16's
    // rounding step below 1 (2^-12 = 2.4e-4), so an update of the f16 value alone is lost
    let optim = FusedAdamWConfig::new().with_weight_decay(0.0).optimizer();
    let one = || Tensor::<Wgpu, 1>::ones([3], &device).cast(DType::F16);
    let (mut p, mut state) = (one(), None);
    for _ in 0..20 {
        (p, state) = optim.step(1e-4, p, one(), state);
    }
    let (want, _, _) = reference(
        &[1.0; 3],
        &vec![vec![1.0; 3]; 20],
        Hyper {
            lr: 1e-4,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 0.0,
        },
    );
    assert!((want[0] - 0.998).abs() < 1e-6, "{}", want[0]);
    close("f16 parameter after 20 steps", p, &want, 2.5e-4);
}

#[test]
fn a_transposed_gradient_is_read_by_its_layout() {
    let device = Default::default();
    let (rows, cols) = (33, 17);
    let p0 = values(rows * cols, 8, 1.0);
    let gt = values(rows * cols, 9, 0.1); // [cols, rows], transposed below
    let mut g = vec![0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            g[i * cols + j] = gt[j * rows + i];
        }
    }
    let h = Hyper {
        lr: 3e-3,
        beta_1: 0.8,
        beta_2: 0.99,
        epsilon: 1e-6,
        weight_decay: 0.0,
    };
    let optim = FusedAdamWConfig::new()
        .with_beta_1(0.8)
        .with_beta_2(0.99)
        .with_epsilon(1e-6)
        .with_weight_decay(0.0)
        .optimizer();
    let p = Tensor::<Wgpu, 2>::from_data(TensorData::new(p0.clone(), [rows, cols]), &device);
    let grad = Tensor::<Wgpu, 2>::from_data(TensorData::new(gt, [cols, rows]), &device).transpose();
    let (p, _) = optim.step(h.lr, p, grad, None);
    let (want, _, _) = reference(&p0, &[g], h);
    close("parameter", p.reshape([rows * cols]), &want, 2e-6);
}

#[test]
fn a_module_trains_on_the_gpu_as_with_burns_adamw_on_the_cpu() {
    type G = Autodiff<Wgpu>;
    type C = Autodiff<NdArray>;
    let cpu: Linear<C> = LinearConfig::new(24, 5).init(&Default::default());
    let record: LinearRecord<NdArray> = cpu.valid().into_record();
    let gpu_device = Default::default();
    let to_gpu =
        |p: &Param<Tensor<NdArray, 2>>| Tensor::<G, 2>::from_data(p.val().into_data(), &gpu_device);
    let mut gpu: Linear<G> = LinearConfig::new(24, 5).init(&gpu_device);
    gpu.weight = Param::from_tensor(to_gpu(&record.weight));
    let bias = record.bias.expect("bias").val().into_data();
    gpu.bias = Some(Param::from_tensor(Tensor::from_data(bias, &gpu_device)));
    let xs = values(8 * 24, 4, 1.0);
    let mut gpu_optim = FusedAdamWConfig::new()
        .with_weight_decay(0.05)
        .init::<G, Linear<G>>();
    let mut cpu_optim = AdamWConfig::new()
        .with_weight_decay(0.05)
        .init::<C, Linear<C>>();
    let (mut gpu, mut cpu) = (gpu, cpu);
    for _ in 0..3 {
        let x = Tensor::<G, 2>::from_data(TensorData::new(xs.clone(), [8, 24]), &gpu_device);
        let loss = gpu.forward(x).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &gpu);
        gpu = gpu_optim.step(1e-2, gpu, grads);
        let x =
            Tensor::<C, 2>::from_data(TensorData::new(xs.clone(), [8, 24]), &Default::default());
        let loss = cpu.forward(x).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &cpu);
        cpu = cpu_optim.step(1e-2, cpu, grads);
    }
    let want: Vec<f64> = cpu
        .weight
        .val()
        .into_data()
        .into_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    close(
        "weight after 3 steps",
        gpu.weight.val().reshape([24 * 5]),
        &want,
        1e-5,
    );
    let moved = record.weight.val().into_data().into_vec::<f32>().unwrap();
    assert!(
        moved
            .iter()
            .zip(&want)
            .any(|(a, b)| (*a as f64 - b).abs() > 1e-4),
        "the weights moved"
    );
}
