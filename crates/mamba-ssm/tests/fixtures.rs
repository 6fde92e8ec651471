//! Forward and every gradient against PyTorch float64 (`scripts/gen_scan_fixtures.py`), on the
//! fast CPU path with the custom backward (`Autodiff<NdArray>`) and on the tensor-op
//! reference (Burn's autodiff through the loop).

mod common;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use common::*;
use mamba_ssm::{ScanInputs, reference, selective_scan};

type B = Autodiff<NdArray>;
const TOL: f64 = 1e-5;

fn check(
    case: &Case,
    run: impl Fn(ScanInputs<B>) -> (Tensor<B, 3>, Option<Tensor<B, 3>>),
    label: &str,
) {
    let dev = Default::default();
    // u, delta and z are leaves that require grad; A, B, C, D, bias too (below)
    let inp = case.tracked_inputs::<B>(&dev);
    let (y, last) = run(inp.clone());
    let e = rel_err(&to_vec(y.clone()), case.vec("y"));
    assert!(e < TOL, "{label} {}: y rel err {e:e}", case.name);
    if let Some(last) = last {
        let e = rel_err(&to_vec(last), case.vec("last_state"));
        assert!(e < TOL, "{label} {}: last_state rel err {e:e}", case.name);
    }
    let dy: Tensor<B, 3> = tensor(case, "dy", &dev);
    let grads = (y * dy).sum().backward();
    // B and C `[b, 1, n, l]` flatten like the ungrouped fixtures' `[b, n, l]`
    let checks = input_grads(&inp, &grads);
    for (k, got) in checks {
        let e = rel_err(&got, case.vec(&format!("grad_{k}")));
        assert!(e < TOL, "{label} {}: grad {k} rel err {e:e}", case.name);
    }
}

#[test]
fn fast_cpu_path_and_custom_backward_match_pytorch_float64() {
    for name in CASES {
        check(
            &load(name),
            |inp| {
                let o = selective_scan(inp, true).unwrap();
                (o.y, o.last_state)
            },
            "cpu",
        );
    }
}

#[test]
fn tensor_op_reference_matches_pytorch_float64() {
    for name in CASES {
        check(
            &load(name),
            |inp| {
                let o = reference::selective_scan(inp, true);
                (o.y, o.last_state)
            },
            "reference",
        );
    }
}

#[test]
fn op_by_op_baseline_matches_pytorch_float64() {
    for name in CASES {
        check(
            &load(name),
            |inp| (reference::selective_scan_op_by_op(inp), None),
            "op_by_op",
        );
    }
}
