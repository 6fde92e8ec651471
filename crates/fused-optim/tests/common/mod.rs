//! The float64 reference of AdamW (the update as PyTorch's `torch.optim.AdamW` documents it),
//! and deterministic inputs.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// Deterministic values in [-scale, scale).
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// AdamW's hyperparameters, as the reference takes them.
#[derive(Clone, Copy)]
pub struct Hyper {
    pub lr: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

/// `steps` AdamW updates of `p` in float64, one gradient per step; returns the parameter and
/// both moments after the last one.
pub fn reference(p: &[f32], grads: &[Vec<f32>], h: Hyper) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut p: Vec<f64> = p.iter().map(|&x| x as f64).collect();
    let mut m = vec![0f64; p.len()];
    let mut v = vec![0f64; p.len()];
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        for i in 0..p.len() {
            let g = g[i] as f64;
            p[i] *= 1.0 - h.lr * h.weight_decay;
            m[i] = h.beta_1 * m[i] + (1.0 - h.beta_1) * g;
            v[i] = h.beta_2 * v[i] + (1.0 - h.beta_2) * g * g;
            let m_hat = m[i] / (1.0 - h.beta_1.powi(t));
            let v_hat = v[i] / (1.0 - h.beta_2.powi(t));
            p[i] -= h.lr * m_hat / (v_hat.sqrt() + h.epsilon);
        }
    }
    (p, m, v)
}

/// Asserts `got` is within `tol` of `want` relative to the largest magnitude of `want`
/// (absolute where that is below 1).
pub fn close<B: Backend, const D: usize>(what: &str, got: Tensor<B, D>, want: &[f64], tol: f64) {
    let got: Vec<f32> = got
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 data");
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f64, |a, &b| a.max(b.abs()));
    let mut worst = (0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        assert!(e.is_finite(), "{what}: element {i} is {g}, want {w}");
        if e > worst.0 {
            worst = (e, i);
        }
    }
    assert!(
        worst.0 <= tol * scale,
        "{what}: element {} is {} against {}, error {:.3e} > {tol:.1e} x {scale:.3}",
        worst.1,
        got[worst.1],
        want[worst.1],
        worst.0
    );
}
