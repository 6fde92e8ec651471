//! The LayerNorm / RMSNorm kernels on wgpu (in CI: Mesa's lavapipe, a Vulkan device on the CPU)
//! through `Autodiff` (the crate's graph node), against a float64 reference written from the
//! definition and central differences of it: rows narrower and wider than a cube, widths that
//! are not powers of two, many blocks of rows for the weight's gradient, a transposed input,
//! f32 and f16. Run with `cargo test -p linear-kernels --features wgpu --test norm_wgpu`, and
//! with `--features wgpu,fusion` for the same tests through Burn's `Fusion`.
#![cfg(feature = "wgpu")]

#[path = "common/norm.rs"]
mod norm;

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::DType;
use linear_kernels::NormBackend;
use norm::{Case, check};

type A = Autodiff<Wgpu>;

// otherwise the tests below would test Burn's operations
const _: () = assert!(<Wgpu as NormBackend>::NORM_KERNELS && <A as NormBackend>::NORM_KERNELS);

fn case(rows: usize, d: usize, rms: bool, bias: bool) -> Case {
    Case {
        rows,
        d,
        rms,
        bias,
        dtype: DType::F32,
        param_dtype: DType::F32,
        transposed: false,
    }
}

#[test]
fn layer_norm_f32_matches_the_reference() {
    // one row per cube up to 1,100 columns; 1,000 rows: 32 blocks of rows for the weight's
    // gradient; 70,000 rows: more cubes than a grid row holds, 512 blocks of 137 rows
    for (rows, d) in [
        (5, 32),
        (7, 100),
        (3, 768),
        (2, 1100),
        (70, 48),
        (1000, 8),
        (70_000, 4),
    ] {
        check::<A>(case(rows, d, false, true), 2e-4);
    }
    check::<A>(case(9, 130, false, false), 2e-4);
}

#[test]
fn rms_norm_f32_matches_the_reference() {
    for (rows, d) in [(5, 32), (7, 100), (3, 768), (70, 48)] {
        check::<A>(case(rows, d, true, false), 2e-4);
    }
}

#[test]
fn a_transposed_input_is_read_as_its_values() {
    for rms in [false, true] {
        let c = Case {
            transposed: true,
            ..case(6, 40, rms, !rms)
        };
        check::<A>(c, 2e-4);
    }
}

#[test]
fn f16_matches_the_reference_of_the_rounded_inputs() {
    for rms in [false, true] {
        for param_dtype in [DType::F16, DType::F32] {
            // f16 activations with f16 or f32 weights (the kernels read the weights in f32)
            let c = Case {
                dtype: DType::F16,
                param_dtype,
                ..case(4, 96, rms, !rms)
            };
            check::<A>(c, 1e-2);
        }
    }
}
