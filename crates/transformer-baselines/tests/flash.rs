//! `flash_attention` on the CPU (NdArray: the tensor-op formulation, differentiated by Burn's
//! autodiff) against the float64 reference, its masks given as a padding mask and as lengths,
//! and its shape errors. The cubecl kernels have the same checks in `tests/flash_wgpu.rs`.

mod common;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{DType, Tensor};
use common::flash::{Case, check, inputs, reference, run};
use transformer_baselines::attention::tensor_ops;
use transformer_baselines::{FlashConfig, KeyMask, flash_attention};

/// NdArray with f64 as its default float type (that of the reference, which shares the CPU
/// device): the f32 inputs are explicit casts, so the tensor ops are also checked not to rely on
/// the device's default float type.
type N = NdArray<f64>;
type A = Autodiff<N>;

#[test]
fn tensor_ops_match_the_float64_reference() {
    for (n, case) in common::flash::cases().iter().enumerate() {
        let x = inputs(case, 100 + n as u64);
        let want = reference(case, &x, |a| a);
        let got = run::<A>(case, &x, DType::F32, &FlashConfig::default(), false);
        check(&format!("{case:?}"), &got, &want, 1e-4);
    }
}

#[test]
fn lengths_and_padding_masks_agree() {
    let case = Case {
        batch: 3,
        heads: 2,
        len_q: 9,
        len_k: 9,
        dim: 8,
        pads: vec![(0, 0), (0, 4), (0, 8)],
        causal: false,
    };
    let x = inputs(&case, 7);
    let want = reference(&case, &x, |a| a);
    let config = FlashConfig::default();
    check(
        "padding",
        &run::<A>(&case, &x, DType::F32, &config, false),
        &want,
        1e-4,
    );
    check(
        "lengths",
        &run::<A>(&case, &x, DType::F32, &config, true),
        &want,
        1e-4,
    );
}

/// The saved log-sum-exp is the row's `log sum exp(q k / sqrt(d))` over visible keys, and the
/// empty-row value for a row that sees none.
#[test]
fn log_sum_exp_of_visible_keys() {
    let dev = Default::default();
    let t = |v: Vec<f32>, s: [usize; 4]| {
        Tensor::<N, 4>::from_data(burn::tensor::TensorData::new(v, s), &dev).cast(DType::F32)
    };
    // one head, two queries, three keys, dim 1: scores q * k / 1
    let q = t(vec![1.0, 2.0], [1, 1, 2, 1]);
    let k = t(vec![0.5, -1.0, 3.0], [1, 1, 3, 1]);
    let v = t(vec![1.0, 2.0, 4.0], [1, 1, 3, 1]);
    let keep = Tensor::<N, 2>::from_data([[0.0f32, 1.0, 1.0]], &dev);
    let (o, lse) = tensor_ops::forward(q.clone(), k.clone(), v.clone(), Some(keep), true);
    let lse = lse.into_data().to_vec::<f32>().unwrap();
    // query 0 sees key 0 only, which is padding: an empty row, output zero
    assert_eq!(lse[0], transformer_baselines::attention::EMPTY_ROW_LSE);
    // query 1 sees keys 0..=1, key 0 padded: lse = score of key 1 = 2 * -1
    assert!((lse[1] - -2.0).abs() < 1e-6, "{lse:?}");
    let o = o.into_data().to_vec::<f32>().unwrap();
    assert_eq!(o[0], 0.0);
    assert!((o[1] - 2.0).abs() < 1e-6, "{o:?}");
}

#[test]
fn shape_errors_name_the_tensor() {
    let dev = Default::default();
    let z = |s: [usize; 4]| Tensor::<N, 4>::zeros(s, &dev);
    let err = |r: Result<Tensor<N, 4>, transformer_baselines::TransformerError>| {
        r.expect_err("must be refused").to_string()
    };
    let e = err(flash_attention(
        z([2, 2, 4, 8]),
        z([2, 3, 4, 8]),
        z([2, 3, 4, 8]),
        None,
        false,
    ));
    assert!(
        e.contains("k [2, 3, 4, 8]") && e.contains("q [2, 2, 4, 8]"),
        "{e}"
    );
    let e = err(flash_attention(
        z([2, 2, 4, 8]),
        z([2, 2, 5, 8]),
        z([2, 2, 4, 8]),
        None,
        false,
    ));
    assert!(e.contains("v [2, 2, 4, 8]"), "{e}");
    let e = err(flash_attention(
        z([2, 2, 0, 8]),
        z([2, 2, 4, 8]),
        z([2, 2, 4, 8]),
        None,
        false,
    ));
    assert!(e.contains("positive"), "{e}");
    let pad = Tensor::<N, 2, burn::tensor::Bool>::from_data([[false; 3]; 2], &dev);
    let e = err(flash_attention(
        z([2, 2, 4, 8]),
        z([2, 2, 4, 8]),
        z([2, 2, 4, 8]),
        Some(KeyMask::Padding(pad)),
        false,
    ));
    assert!(
        e.contains("padding mask [2, 3]") && e.contains("[2, 4]"),
        "{e}"
    );
    let lens = Tensor::<N, 1, burn::tensor::Int>::from_data([4i64, 4, 4], &dev);
    let e = err(flash_attention(
        z([2, 2, 4, 8]),
        z([2, 2, 4, 8]),
        z([2, 2, 4, 8]),
        Some(KeyMask::Lengths(lens)),
        false,
    ));
    assert!(e.contains("lengths [3]"), "{e}");
}
