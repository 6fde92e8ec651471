//! The fused causal-conv kernels on a GPU backend against the CPU (NdArray) implementation,
//! which `tests/conv.rs` checks against Burn's grouped `Conv1d`: forward and the direct backward
//! (dx, dweight, dbias) on random inputs, f32 and (CUDA) bf16 activations. Prints one line per
//! case and exits with status 1 when an error exceeds its tolerance.
//!
//! `conv_check [cuda|wgpu]` (build with `--features cuda` or `--features wgpu`).

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor};
use mamba_ssm::{SelectiveScanBackend, causal_conv1d, causal_conv1d_backward};

type Cpu = NdArray;

fn to_dev<B: Backend, const D: usize>(t: &Tensor<Cpu, D>, dev: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(t.to_data(), dev)
}

fn vals<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec()
        .expect("f32 data")
}

/// Largest |a - b| over max(1, |b|).
fn err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_finite() {
                (x - y).abs() / y.abs().max(1.0)
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0, f32::max)
}

/// `big`: add the profiled training shape (201 MB per tensor: over wgpu's default binding limit).
fn run<B: SelectiveScanBackend>(dev: B::Device, bf16: bool, big: bool) -> bool {
    let cpu = Default::default();
    let cases = [
        (2, 64, 1000, 4, true, true),
        (3, 300, 17, 4, false, true),
        (1, 1536, 512, 4, true, true),
        (2, 37, 3, 4, true, false),
        (64, 1536, 512, 4, true, true),
        (2, 5, 33, 1, true, true),
        (1, 8, 40, 7, false, false),
    ];
    let mut ok = true;
    for &(b, d, l, k, with_bias, silu) in cases.iter().filter(|c| big || c.0 * c.1 * c.2 < 1 << 24)
    {
        let n = |s: Vec<usize>| {
            Tensor::<Cpu, 1>::random(
                [s.iter().product::<usize>()],
                Distribution::Normal(0.0, 1.0),
                &cpu,
            )
        };
        let x = n(vec![b, d, l]).reshape([b, d, l]);
        let w = n(vec![d, k]).reshape([d, k]).mul_scalar(0.5);
        let bias = with_bias.then(|| n(vec![d]));
        let dy = n(vec![b, d, l]).reshape([b, d, l]);
        let want_y = causal_conv1d(x.clone(), w.clone(), bias.clone(), silu).expect("shapes");
        let (want_dx, want_dw, want_db) =
            causal_conv1d_backward(x.clone(), w.clone(), bias.clone(), silu, dy.clone())
                .expect("shapes");
        let cast = |t: Tensor<B, 3>| if bf16 { t.cast(DType::BF16) } else { t };
        let (xg, dyg) = (cast(to_dev(&x, &dev)), cast(to_dev(&dy, &dev)));
        let (wg, bg) = (to_dev(&w, &dev), bias.as_ref().map(|t| to_dev(t, &dev)));
        let y = causal_conv1d(xg.clone(), wg.clone(), bg.clone(), silu).expect("shapes");
        let (dx, dw, db) = causal_conv1d_backward(xg, wg, bg, silu, dyg).expect("shapes");
        // bf16 inputs: the CPU reference sees the f32 values, the kernel their bf16 rounding
        let tol = if bf16 { 3e-2 } else { 1e-4 };
        // dweight / dbias sum over b x L products: scale the tolerance with sqrt(b L)
        let tol_sum = tol * ((b * l) as f32).sqrt().max(1.0);
        let e_y = err(&vals(y), &vals(want_y));
        let e_dx = err(&vals(dx), &vals(want_dx));
        let e_dw = err(&vals(dw), &vals(want_dw));
        let e_db = match (db, want_db) {
            (Some(g), Some(r)) => err(&vals(g), &vals(r)),
            (None, None) => 0.0,
            _ => f32::INFINITY,
        };
        let pass = e_y <= tol && e_dx <= tol && e_dw <= tol_sum && e_db <= tol_sum;
        ok &= pass;
        println!(
            "{} [{b}, {d}, {l}] k {k} bias {with_bias} silu {silu} {}: y {e_y:.1e}, dx {e_dx:.1e}, dweight {e_dw:.1e}, dbias {e_db:.1e} (tol {tol:.0e} / sums {tol_sum:.1e})",
            if pass { "ok  " } else { "FAIL" },
            if bf16 { "bf16" } else { "f32" },
        );
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ok = match args.get(1).map(String::as_str) {
        #[cfg(feature = "cuda")]
        Some("cuda") => {
            run::<burn::backend::Cuda>(Default::default(), false, true)
                & run::<burn::backend::Cuda>(Default::default(), true, true)
        }
        #[cfg(feature = "wgpu")]
        Some("wgpu") => run::<burn::backend::Wgpu>(Default::default(), false, false),
        other => {
            eprintln!(
                "usage: conv_check [cuda|wgpu] (got {other:?}; build with the matching feature)"
            );
            std::process::exit(2);
        }
    };
    if !ok {
        std::process::exit(1);
    }
}
