//! The cubecl kernel on wgpu (in CI: Mesa's lavapipe, a Vulkan device on the CPU, plane width
//! 8), both cube-scan paths (plane shuffles and shared memory only), against the PyTorch
//! float64 fixtures. Run with `cargo test -p mamba-ssm --features wgpu --test wgpu`.
#![cfg(feature = "wgpu")]

mod common;
use burn::backend::{Autodiff, Wgpu};
use burn::tensor::Tensor;
use common::*;
use mamba_ssm::kernel::set_plane_mode;
use mamba_ssm::selective_scan;

#[test]
fn forward_kernel_matches_pytorch_float64_on_both_scan_paths() {
    let dev = Default::default();
    for mode in [false, true] {
        set_plane_mode(Some(mode));
        for name in CASES {
            let case = load(name);
            let inp = case.inputs::<Wgpu>(&dev, |t| t);
            let out = selective_scan(inp, true).unwrap();
            let e = rel_err(&to_vec(out.y), case.vec("y"));
            assert!(e < 1e-5, "plane={mode} {name}: y rel err {e:e}");
            let e = rel_err(&to_vec(out.last_state.unwrap()), case.vec("last_state"));
            assert!(e < 1e-5, "plane={mode} {name}: last state rel err {e:e}");
        }
    }
    set_plane_mode(None);
}

#[test]
fn autodiff_on_wgpu_gives_the_fixture_gradients() {
    let dev = Default::default();
    for name in ["g2_n16_all", "odd_n4_d_only"] {
        let case = load(name);
        let inp = case.inputs::<Autodiff<Wgpu>>(&dev, |t| t.require_grad());
        let y = selective_scan(inp.clone(), false).unwrap().y;
        let dy: Tensor<Autodiff<Wgpu>, 3> = tensor(&case, "dy", &dev);
        let grads = (y * dy).sum().backward();
        let e = rel_err(&to_vec(inp.u.grad(&grads).unwrap()), case.vec("grad_u"));
        assert!(e < 1e-5, "{name}: du rel err {e:e}");
        let e = rel_err(
            &to_vec(inp.delta.grad(&grads).unwrap()),
            case.vec("grad_delta"),
        );
        assert!(e < 1e-5, "{name}: ddelta rel err {e:e}");
    }
}
