//! The norms on the CPU (Burn's operations, differentiated by Burn) against the float64
//! reference and its central differences: the path every backend without kernels takes.

#[path = "common/norm.rs"]
mod norm;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::DType;
use norm::{Case, check};

#[test]
fn layer_norm_and_rms_norm_on_the_cpu_match_the_reference() {
    for (rms, bias) in [(false, true), (false, false), (true, false)] {
        for (rows, d) in [(3, 16), (5, 37)] {
            let c = Case {
                rows,
                d,
                rms,
                bias,
                dtype: DType::F32,
                param_dtype: DType::F32,
                transposed: rms,
            };
            check::<Autodiff<NdArray>>(c, 1e-4);
        }
    }
}

/// `norm_forward_ops` / `norm_backward_ops` (what f64 inputs and second derivatives run on
/// every backend) against the reference, in f32 and f64.
#[test]
fn the_tensor_op_forward_and_backward_match_the_reference() {
    use burn::tensor::{Tensor, TensorData};
    use linear_kernels::{NormKind, norm_backward_ops, norm_forward_ops};
    let device = Default::default();
    let (rows, d, eps) = (4, 23, 1e-5);
    for dtype in [DType::F32, DType::F64] {
        for (kind, bias) in [
            (NormKind::Layer, true),
            (NormKind::Rms, false),
            (NormKind::Rms, true),
        ] {
            // values that f32 holds exactly: both dtypes start from the same inputs
            let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32 as f64).collect::<Vec<_>>();
            let x = f32s(
                norm::values(rows * d, 5, 2.0)
                    .iter()
                    .map(|v| v + 0.3)
                    .collect(),
            );
            let w = f32s(norm::values(d, 6, 0.5).iter().map(|v| 1.0 + v).collect());
            let b = f32s(norm::values(d, 7, 0.5));
            let r = f32s(norm::values(rows * d, 8, 1.0));
            let rms = kind == NormKind::Rms;
            let t2 = |v: &[f64]| {
                Tensor::<NdArray, 2>::from_data(TensorData::new(v.to_vec(), [rows, d]), &device)
                    .cast(dtype)
            };
            let t1 = |v: &[f64]| {
                Tensor::<NdArray, 1>::from_data(TensorData::new(v.to_vec(), [d]), &device)
                    .cast(dtype)
            };
            let f = norm_forward_ops(t2(&x), t1(&w), bias.then(|| t1(&b)), eps, kind);
            let host = |t: Tensor<NdArray, 2>| -> Vec<f64> {
                t.cast(DType::F64).into_data().to_vec::<f64>().unwrap()
            };
            let host1 = |t: Tensor<NdArray, 1>| -> Vec<f64> {
                t.cast(DType::F64).into_data().to_vec::<f64>().unwrap()
            };
            let tol = if dtype == DType::F64 { 1e-8 } else { 1e-5 };
            let bias_ref = bias.then_some(b.as_slice());
            let what = format!("{dtype:?} {kind:?} bias {bias}");
            norm::assert_close(
                &what,
                &host(f.output),
                &norm::forward(&x, d, &w, bias_ref, eps, rms),
                tol,
            );
            let g = norm_backward_ops(t2(&r), t2(&x), t1(&w), f.mean, f.rstd, kind, bias);
            let (dx, dw, db) = norm::numeric_grads(&x, d, &w, bias_ref, eps, rms, &r);
            norm::assert_close(&format!("{what}: dx"), &host(g.input), &dx, tol.max(1e-6));
            norm::assert_close(&format!("{what}: dw"), &host1(g.weight), &dw, tol.max(1e-6));
            match (g.bias, db) {
                (Some(g), Some(want)) => {
                    norm::assert_close(&format!("{what}: db"), &host1(g), &want, tol.max(1e-6))
                }
                (None, None) => {}
                _ => panic!("{what}: a bias gradient exactly when there is a bias"),
            }
        }
    }
}
