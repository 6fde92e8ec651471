//! A float64 reference for LayerNorm / RMSNorm written from the definition, and central
//! differences of it (independent of any backward formula).

/// Deterministic values in [-scale, scale) (a 64-bit LCG).
pub fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// `y[r, j] = (x - mean) / sqrt(var + eps) · w[j] + b[j]` (no centring and the mean square
/// for `rms`).
pub fn forward(x: &[f64], d: usize, w: &[f64], b: Option<&[f64]>, eps: f64, rms: bool) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = if rms {
            0.0
        } else {
            row.iter().sum::<f64>() / d as f64
        };
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (j, v) in row.iter().enumerate() {
            y.push((v - mean) * rstd * w[j] + b.map_or(0.0, |b| b[j]));
        }
    }
    y
}

/// Gradients of `Σ y · r` with respect to x, w and b, by central differences (an input changes
/// only its own row's outputs: its difference is taken over that row).
#[allow(clippy::type_complexity)]
pub fn numeric_grads(
    x: &[f64],
    d: usize,
    w: &[f64],
    b: Option<&[f64]>,
    eps: f64,
    rms: bool,
    r: &[f64],
) -> (Vec<f64>, Vec<f64>, Option<Vec<f64>>) {
    let loss = |x: &[f64], r: &[f64], w: &[f64], b: Option<&[f64]>| -> f64 {
        forward(x, d, w, b, eps, rms)
            .iter()
            .zip(r)
            .map(|(y, r)| y * r)
            .sum()
    };
    let h = 1e-6;
    let diff = |v: &[f64], f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
        (0..v.len())
            .map(|i| {
                let (mut up, mut down) = (v.to_vec(), v.to_vec());
                up[i] += h;
                down[i] -= h;
                (f(&up) - f(&down)) / (2.0 * h)
            })
            .collect()
    };
    let dx = x
        .chunks(d)
        .zip(r.chunks(d))
        .flat_map(|(row, rr)| diff(row, &|row| loss(row, rr, w, b)))
        .collect();
    let dw = diff(w, &|w| loss(x, r, w, b));
    let db = b.map(|b| diff(b, &|b| loss(x, r, w, Some(b))));
    (dx, dw, db)
}

/// Asserts `got` is within `tol` of `want`, relative to `want`'s largest magnitude.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold(
            (0, 0f64),
            |(bi, be), (i, e)| if e > be { (i, e) } else { (bi, be) },
        );
    assert!(
        err <= tol * scale,
        "{what}: element {i} is {} instead of {} (error {err:.3e}, {:.3e} of the scale {scale:.3e}, tolerance {tol:.1e})",
        got[i],
        want[i],
        err / scale
    );
}

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Tensor, TensorData};
use linear_kernels::{NormBackend, layer_norm, rms_norm};

/// One case: rows x d, LayerNorm (with or without bias) or RMSNorm, inputs in `dtype`.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub rows: usize,
    pub d: usize,
    pub rms: bool,
    pub bias: bool,
    pub dtype: DType,
    /// The weight's and bias's dtype.
    pub param_dtype: DType,
    /// The input is a transposed (non-contiguous) view.
    pub transposed: bool,
}

fn round(v: &[f64], dtype: DType) -> Vec<f64> {
    v.iter()
        .map(|&x| match dtype {
            DType::F16 => burn::tensor::f16::from_f64(x).to_f64(),
            DType::BF16 => burn::tensor::bf16::from_f64(x).to_f64(),
            DType::F32 => x as f32 as f64,
            _ => x,
        })
        .collect()
}

fn host<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .expect("f32 data")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Runs the case through [`layer_norm`] / [`rms_norm`] on `B` (a 3-D input), backpropagates
/// `Σ y · r` and compares the output with [`forward`] and the gradients of the input, weight
/// and bias with [`numeric_grads`], each within `tol` of its largest magnitude.
pub fn check<B: AutodiffBackend + NormBackend>(c: Case, tol: f64) {
    let device = B::Device::default();
    let (rows, d) = (c.rows, c.d);
    let eps = 1e-5;
    let seed = (rows * 131 + d) as u64;
    // an offset mean and a spread of scales across rows
    let x: Vec<f64> = values(rows * d, seed, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| 0.7 + v * (1.0 + (i / d) as f64 * 0.3))
        .collect();
    let w: Vec<f64> = values(d, seed + 1, 0.5).iter().map(|v| 1.0 + v).collect();
    let b = values(d, seed + 2, 0.5);
    let r = values(rows * d, seed + 3, 1.0);
    let (x, w, b) = (
        round(&x, c.dtype),
        round(&w, c.param_dtype),
        round(&b, c.param_dtype),
    );
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let xt = if c.transposed {
        let t: Vec<f64> = (0..d * rows)
            .map(|i| x[(i % rows) * d + i / rows])
            .collect();
        Tensor::<B, 2>::from_data(TensorData::new(f32s(&t), [d, rows]), &device)
            .cast(c.dtype)
            .transpose()
    } else {
        Tensor::<B, 2>::from_data(TensorData::new(f32s(&x), [rows, d]), &device).cast(c.dtype)
    }
    .require_grad();
    let load1 = |v: &[f64]| {
        Tensor::<B, 1>::from_data(TensorData::new(f32s(v), [d]), &device)
            .cast(c.param_dtype)
            .require_grad()
    };
    let (wt, bt) = (load1(&w), load1(&b));
    let x3 = xt.clone().reshape([1, rows, d]);
    let y = if c.rms {
        rms_norm(x3, wt.clone(), eps)
    } else {
        layer_norm(x3, wt.clone(), c.bias.then(|| bt.clone()), eps)
    };
    assert_eq!(y.dtype(), c.dtype, "{c:?}: output dtype");
    let rt = Tensor::<B, 3>::from_data(TensorData::new(f32s(&r), [1, rows, d]), &device);
    let grads = (y.clone().cast(DType::F32) * rt).sum().backward();
    let bias = (c.bias && !c.rms).then_some(b.as_slice());
    let want = forward(&x, d, &w, bias, eps, c.rms);
    assert_close(&format!("{c:?}: output"), &host(y), &want, tol);
    let (dx, dw, db) = numeric_grads(&x, d, &w, bias, eps, c.rms, &r);
    let got = |t: Option<Tensor<B::InnerBackend, 2>>| host(t.expect("a gradient"));
    assert_close(
        &format!("{c:?}: input gradient"),
        &got(xt.grad(&grads)),
        &dx,
        tol,
    );
    let got1 = |t: Option<Tensor<B::InnerBackend, 1>>| host(t.expect("a gradient"));
    assert_close(
        &format!("{c:?}: weight gradient"),
        &got1(wt.grad(&grads)),
        &dw,
        tol,
    );
    match db {
        Some(db) => assert_close(
            &format!("{c:?}: bias gradient"),
            &got1(bt.grad(&grads)),
            &db,
            tol,
        ),
        None => assert!(
            bt.grad(&grads).is_none(),
            "{c:?}: an unused bias has no gradient"
        ),
    }
}
