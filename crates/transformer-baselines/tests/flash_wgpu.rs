//! The flash-attention kernels on wgpu (in CI: Mesa's lavapipe, a Vulkan device on the CPU)
//! against the float64 reference (Burn's autodiff of the matmul-softmax reference on
//! `NdArray<f64>`): the output and all three input gradients, through `Autodiff`, at odd lengths
//! (1, 7, 129, 513), padded rows and rows that see no key, causal and not, head dims 32 / 64 /
//! 128, f32 and (where the device has it) f16 storage, every output NaN-poisoned before the
//! kernels run. Run with `cargo test -p transformer-baselines --features wgpu --test
//! flash_wgpu`, and with `--features wgpu,fusion` for the same tests through Burn's `Fusion`.
//!
//! The tiled kernels (`FlashKernel::Tiled`, the tensor-core kernels' data flow with each tile
//! product on the plane's units, as lavapipe has no cooperative matrices) are held to the same
//! reference, in f32 and f16, with the default blocks and with two-plane cubes, at head dims 32
//! and 64 (at 128 their tiles need more shared memory than lavapipe has).
//!
//! Lavapipe compiles a kernel set with unrolled head-dimension loops in 5 s (head dim 32) to a
//! minute (128): most cases run the rolled kernels (`FlashConfig::rolled_loops`, the same code
//! with run-time loop indices), and the head-dim-32 cases run both.
#![cfg(feature = "wgpu")]

mod common;

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::DType;
use burn::tensor::backend::Backend;
use common::flash::{Case, check, inputs, reference, run};
use transformer_baselines::{FlashConfig, FlashKernel};

type A = Autodiff<Wgpu>;

/// NaN-poisoned outputs, loops rolled or not.
fn config(rolled_loops: bool) -> FlashConfig {
    FlashConfig {
        poison_outputs: true,
        rolled_loops,
        ..FlashConfig::default()
    }
}

fn timed(what: &str, case: &Case, f: impl FnOnce()) {
    let t = std::time::Instant::now();
    f();
    eprintln!("{what} {case:?}: {:.1?}", t.elapsed());
}

#[test]
fn kernels_match_the_float64_reference() {
    let dev = Default::default();
    let name = <Wgpu as Backend>::name(&dev);
    assert_eq!(name.contains("fusion"), cfg!(feature = "fusion"), "{name}");
    const { assert!(<A as transformer_baselines::FlashAttentionBackend>::FLASH_KERNELS) };
    for (n, case) in common::flash::cases().iter().enumerate() {
        let x = inputs(case, 100 + n as u64);
        let want = reference(case, &x, |a| a);
        let unrolled: &[bool] = if case.dim == 32 {
            &[true, false]
        } else {
            &[true]
        };
        for &rolled in unrolled {
            timed(if rolled { "rolled" } else { "unrolled" }, case, || {
                let got = run::<A>(case, &x, DType::F32, &config(rolled), false);
                check(&format!("f32 rolled {rolled} {case:?}"), &got, &want, 2e-5);
            });
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
    let round = |a: f32| burn::tensor::f16::from_f32(a).to_f32();
    for (n, case) in common::flash::cases().iter().enumerate() {
        let x = inputs(case, 300 + n as u64);
        let want = reference(case, &x, round);
        timed("f16", case, || {
            let got = run::<A>(case, &x, DType::F16, &config(true), false);
            // f16 outputs: 2^-11 relative rounding of each stored value
            check(&format!("f16 {case:?}"), &got, &want, 4e-3);
        });
    }
}

/// Partial tiles everywhere: blocks that divide none of the lengths, tiles smaller and larger
/// than the cube (one larger than the shared memory holds at head dim 128, which the launch
/// reduces), and the length mask.
#[test]
fn other_block_sizes_and_the_length_mask() {
    let cases = common::flash::cases();
    for (rows, tile) in [(16, 8), (32, 7), (8, 400)] {
        let config = FlashConfig {
            block_rows: Some(rows),
            block_tile: Some(tile),
            ..config(true)
        };
        for (n, case) in cases
            .iter()
            .enumerate()
            .filter(|(_, c)| c.len_q > 1 && c.len_q < 200)
        {
            let x = inputs(case, 500 + n as u64);
            let want = reference(case, &x, |a| a);
            let lengths = case.pads.iter().all(|&(l, _)| l == 0) && !case.pads.is_empty();
            timed(&format!("rows {rows} tile {tile}"), case, || {
                let got = run::<A>(case, &x, DType::F32, &config, lengths);
                check(
                    &format!("rows {rows} tile {tile} {case:?}"),
                    &got,
                    &want,
                    2e-5,
                );
            });
        }
    }
}

/// The tiled kernels, NaN-poisoned, with `rows` rows per cube and tiles of `tile` (`None`: the
/// crate's choice).
fn tiled(rows: Option<usize>, tile: Option<usize>) -> FlashConfig {
    FlashConfig {
        kernel: FlashKernel::Tiled,
        block_rows: rows,
        block_tile: tile,
        ..config(true)
    }
}

#[test]
fn tiled_kernels_match_the_float64_reference() {
    use burn::backend::wgpu::WgpuRuntime;
    use transformer_baselines::attention::tiled_plan;
    let dev = Default::default();
    let f16 = <Wgpu as Backend>::supports_dtype(&dev, DType::F16);
    // the tiled kernels do run (not the scalar fallback), with the blocks asked for; at head
    // dim 128 even one plane with tiles of 16 needs more than lavapipe's shared memory, so
    // those cases are left to the device check against PyTorch
    for dim in [32, 64] {
        let plan = tiled_plan::<WgpuRuntime>(&dev, dim, DType::F32, &tiled(Some(16), Some(16)));
        assert!(
            plan.is_some_and(|p| p.iter().all(|b| (b.planes, b.tile) == (1, 16))),
            "{dim}: {plan:?}"
        );
        let plan = tiled_plan::<WgpuRuntime>(&dev, dim, DType::F32, &tiled(None, None));
        eprintln!("head dim {dim}, default blocks: {plan:?}");
        assert!(plan.is_some(), "{dim}");
        let auto = FlashConfig::default();
        assert_eq!(
            tiled_plan::<WgpuRuntime>(&dev, dim, DType::F16, &auto),
            None,
            "no cmma here"
        );
    }
    let round = |a: f32| burn::tensor::f16::from_f32(a).to_f32();
    for (n, case) in common::flash::cases().iter().enumerate() {
        if tiled_plan::<WgpuRuntime>(&dev, case.dim, DType::F32, &tiled(Some(16), Some(16)))
            .is_none()
        {
            eprintln!("skipped (too little shared memory here): {case:?}");
            continue;
        }
        let x = inputs(case, 700 + n as u64);
        let want = reference(case, &x, |a| a);
        for (rows, tile) in [(None, None), (Some(32), Some(32))] {
            let config = tiled(rows, tile);
            timed(
                &format!("tiled f32 rows {rows:?} tile {tile:?}"),
                case,
                || {
                    let got = run::<A>(case, &x, DType::F32, &config, false);
                    check(
                        &format!("tiled f32 {rows:?} {tile:?} {case:?}"),
                        &got,
                        &want,
                        2e-5,
                    );
                },
            );
        }
        if f16 {
            let want = reference(case, &x, round);
            timed("tiled f16", case, || {
                let got = run::<A>(case, &x, DType::F16, &tiled(None, None), false);
                // f16 outputs, and probabilities and score gradients rounded to f16 before
                // their products
                check(&format!("tiled f16 {case:?}"), &got, &want, 6e-3);
            });
        }
    }
}

#[test]
fn tiled_kernels_refuse_a_head_dim_off_the_tile() {
    let dev = Default::default();
    let q = burn::tensor::Tensor::<Wgpu, 4>::zeros([1, 1, 4, 24], &dev);
    let err = transformer_baselines::attention::flash_attention_with_config(
        q.clone(),
        q.clone(),
        q,
        None,
        false,
        &tiled(None, None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("multiple of 16") && err.contains("[1, 1, 4, 24]"),
        "{err}"
    );
}
