//! The named kernels on wgpu (in CI: Mesa's lavapipe, a Vulkan device on the CPU) against a
//! float64 product computed here on the host: the product, both operand gradients through
//! `Autodiff` (the crate's own graph node), transposed operands, and `linear` with its bias,
//! in f32 and (where the device has it) f16. Lavapipe has neither tensor cores nor TMA, so
//! `Unit` is the cubek kernel that runs here; `Auto` falls back to Burn's product, and the TMA
//! kernels must say they cannot run. Run with `cargo test -p linear-kernels --features wgpu
//! --test wgpu`, and with `--features wgpu,fusion` for the same tests through Burn's `Fusion`.
#![cfg(feature = "wgpu")]

use burn::backend::{Autodiff, Wgpu};
use burn::nn::LinearConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use linear_kernels::{MatmulBackend, MatmulKernel, linear_with, matmul};

type A = Autodiff<Wgpu>;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `a` `[m, k]` · `b` `[k, n]` in float64, both row-major.
fn product(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p] as f64;
            for j in 0..n {
                out[i * n + j] += x * b[p * n + j] as f64;
            }
        }
    }
    out
}

fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = a[i * cols + j];
        }
    }
    t
}

/// Asserts `got` is within `tol` of `want`, relative to the largest magnitude of `want`.
fn close<B: Backend, const D: usize>(what: &str, got: Tensor<B, D>, want: &[f64], tol: f64) {
    let got: Vec<f32> = got
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    assert_eq!(got.len(), want.len(), "{what}: size");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite values"
    );
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= tol * scale,
        "{what}: worst error {worst:e} > {tol:e} x {scale}"
    );
}

fn tensor<B: Backend>(v: &[f32], shape: [usize; 2], dtype: DType, dev: &B::Device) -> Tensor<B, 2> {
    Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), shape), dev).cast(dtype)
}

/// The product and both gradients (loss = sum(out ⊙ g)) of `kernel`, with the right operand
/// given transposed in memory when `rhs_transposed`.
fn check_product(
    kernel: MatmulKernel,
    (m, k, n): (usize, usize, usize),
    dtype: DType,
    rhs_transposed: bool,
    tol: f64,
) {
    let dev = Default::default();
    let (a, b, g) = (
        values(m * k, 1 + m as u64),
        values(k * n, 2 + n as u64),
        values(m * n, 3 + k as u64),
    );
    let lhs = tensor::<A>(&a, [m, k], dtype, &dev).require_grad();
    let rhs_leaf = if rhs_transposed {
        tensor::<A>(&transpose(&b, k, n), [n, k], dtype, &dev).require_grad()
    } else {
        tensor::<A>(&b, [k, n], dtype, &dev).require_grad()
    };
    let rhs = if rhs_transposed {
        rhs_leaf.clone().transpose()
    } else {
        rhs_leaf.clone()
    };
    let out = A::try_matmul(lhs.clone(), rhs, kernel)
        .unwrap_or_else(|e| panic!("{kernel} on {}: {e}", <Wgpu as Backend>::name(&dev)));
    assert_eq!(out.dtype(), dtype);
    let what = format!("{kernel} {m}x{k}x{n} {dtype:?} rhs transposed {rhs_transposed}");
    close(
        &format!("{what}: product"),
        out.clone(),
        &product(&a, &b, m, k, n),
        tol,
    );
    let grads = (out * tensor::<A>(&g, [m, n], dtype, &dev))
        .sum()
        .backward();
    // d_lhs = g · bᵀ, d_rhs = aᵀ · g
    let d_lhs = product(&g, &transpose(&b, k, n), m, n, k);
    let d_rhs = product(&transpose(&a, m, k), &g, k, m, n);
    close(
        &format!("{what}: d_lhs"),
        lhs.grad(&grads).unwrap(),
        &d_lhs,
        tol,
    );
    let got_rhs = rhs_leaf.grad(&grads).unwrap();
    if rhs_transposed {
        close(&format!("{what}: d_rhs"), got_rhs.transpose(), &d_rhs, tol);
    } else {
        close(&format!("{what}: d_rhs"), got_rhs, &d_rhs, tol);
    }
}

const SHAPES: [(usize, usize, usize); 3] = [(1, 1, 1), (37, 19, 23), (130, 64, 96)];

#[test]
fn products_and_gradients_match_the_float64_reference() {
    let dev = Default::default();
    let name = <Wgpu as Backend>::name(&dev);
    assert_eq!(name.contains("fusion"), cfg!(feature = "fusion"), "{name}");
    const { assert!(<A as MatmulBackend>::MATMUL_KERNELS) };
    for kernel in [MatmulKernel::Unit, MatmulKernel::Auto, MatmulKernel::Burn] {
        for shape in SHAPES {
            for rhs_transposed in [false, true] {
                check_product(kernel, shape, DType::F32, rhs_transposed, 1e-5);
            }
        }
    }
}

#[test]
fn half_precision_storage() {
    let dev = Default::default();
    if !<Wgpu as Backend>::supports_dtype(&dev, DType::F16) {
        eprintln!("skipped: this wgpu device has no f16");
        return;
    }
    for shape in SHAPES {
        check_product(MatmulKernel::Unit, shape, DType::F16, false, 4e-3);
    }
}

#[test]
fn linear_matches_the_float64_reference_with_its_gradients() {
    let dev = Default::default();
    let (batch, len, d_in, d_out) = (2, 5, 12, 7);
    let layer = LinearConfig::new(d_in, d_out).init::<A>(&dev);
    let w: Vec<f32> = layer
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    let bias: Vec<f32> = layer
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    let rows = batch * len;
    let xv = values(rows * d_in, 9);
    let gv = values(rows * d_out, 10);
    let x = Tensor::<A, 3>::from_data(TensorData::new(xv.clone(), [batch, len, d_in]), &dev)
        .require_grad();
    let y = linear_with(&layer, x.clone(), MatmulKernel::Unit);
    assert_eq!(y.dims(), [batch, len, d_out]);
    let mut want = product(&xv, &w, rows, d_in, d_out);
    for (i, v) in want.iter_mut().enumerate() {
        *v += bias[i % d_out] as f64;
    }
    close("linear: output", y.clone(), &want, 1e-5);
    let g = Tensor::<A, 3>::from_data(TensorData::new(gv.clone(), [batch, len, d_out]), &dev);
    let grads = (y * g).sum().backward();
    let d_x = product(&gv, &transpose(&w, d_in, d_out), rows, d_out, d_in);
    let d_w = product(&transpose(&xv, rows, d_in), &gv, d_in, rows, d_out);
    let d_b: Vec<f64> = (0..d_out)
        .map(|j| (0..rows).map(|i| gv[i * d_out + j] as f64).sum())
        .collect();
    close("linear: d_x", x.grad(&grads).unwrap(), &d_x, 1e-5);
    close(
        "linear: d_weight",
        layer.weight.val().grad(&grads).unwrap(),
        &d_w,
        1e-5,
    );
    close(
        "linear: d_bias",
        layer.bias.as_ref().unwrap().val().grad(&grads).unwrap(),
        &d_b,
        1e-5,
    );
}

#[test]
fn a_kernel_the_device_lacks_is_an_error_and_matmul_falls_back() {
    let dev = Default::default();
    let name = <Wgpu as Backend>::name(&dev);
    let a = values(8 * 16, 4);
    let b = values(16 * 8, 5);
    let lhs = tensor::<Wgpu>(&a, [8, 16], DType::F32, &dev);
    let rhs = tensor::<Wgpu>(&b, [16, 8], DType::F32, &dev);
    // every path still computes the product
    for kernel in MatmulKernel::ALL {
        close(
            &format!("matmul {kernel}"),
            matmul(lhs.clone(), rhs.clone(), kernel),
            &product(&a, &b, 8, 16, 8),
            1e-5,
        );
    }
    // lavapipe has no TMA: the TMA kernels refuse (through Fusion they fall back when run)
    if !cfg!(feature = "fusion") {
        let err = <Wgpu as MatmulBackend>::try_matmul(lhs, rhs, MatmulKernel::TmaMma)
            .err()
            .unwrap_or_else(|| panic!("TMA ran on {name}"));
        let msg = err.to_string();
        assert!(
            msg.contains("tma-mma") && msg.contains("[8, 16] x [16, 8]"),
            "{msg}"
        );
    }
}

/// A weight gradient's product, `Xᵀ · dY` with `X` given as a transposed view over many rows,
/// which the kernels split along the contraction into f32 partial sums (16 slices of 1,024 here).
#[test]
fn weight_gradients_over_many_rows_split_along_k_match_the_float64_reference() {
    let dev = Default::default();
    let (rows, d_in, d_out) = (16_384, 8, 5);
    let x = values(rows * d_in, 21);
    let dy = values(rows * d_out, 22);
    let want = product(&transpose(&x, rows, d_in), &dy, d_in, rows, d_out);
    let mut dtypes = vec![(DType::F32, 1e-5)];
    if <Wgpu as Backend>::supports_dtype(&dev, DType::F16) {
        // f16 inputs, f32 partial sums: the error of the inputs' rounding only
        dtypes.push((DType::F16, 4e-3));
    }
    for (dtype, tol) in dtypes {
        for kernel in [MatmulKernel::Unit, MatmulKernel::Auto] {
            let lhs = tensor::<Wgpu>(&x, [rows, d_in], dtype, &dev).transpose();
            let rhs = tensor::<Wgpu>(&dy, [rows, d_out], dtype, &dev);
            let out = <Wgpu as MatmulBackend>::try_matmul(lhs, rhs, kernel)
                .unwrap_or_else(|e| panic!("{kernel}: {e}"));
            assert_eq!(out.dtype(), dtype);
            close(
                &format!("{kernel} {dtype:?} split weight gradient"),
                out,
                &want,
                tol,
            );
        }
    }
}
