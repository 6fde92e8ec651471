//! Times every CPU scan path once per shape (the slow ones take minutes) and prints a
//! markdown table: forward and forward+backward of the fast path (median of 5 runs), the
//! tensor-op reference and the op-by-op baseline (one run each), on NdArray.
//!
//! `cargo run --release -p mamba-ssm --example scan_cpu_table [-- b,d,l,n ...]`

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use mamba_ssm::{ScanInputs, reference, selective_scan};
use std::time::Instant;

type Cpu = NdArray;
type Ad = Autodiff<NdArray>;

fn inputs<B: Backend>(shape: [usize; 4], dev: &B::Device, grad: bool) -> ScanInputs<B> {
    let inp = ScanInputs::random(shape, dev);
    if !grad {
        return inp;
    }
    ScanInputs {
        u: inp.u.require_grad(),
        delta: inp.delta.require_grad(),
        z: inp.z.map(|z| z.require_grad()),
        ..inp
    }
}

/// Median of `runs` timed runs, after one warm-up run when `runs > 1`.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    if runs > 1 {
        f();
    }
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let shapes: Vec<[usize; 4]> = {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.is_empty() {
            vec![[1, 1536, 512, 16], [8, 1536, 512, 16], [2, 768, 2048, 16]]
        } else {
            args.iter()
                .map(|a| {
                    let v: Vec<usize> = a.split(',').map(|x| x.parse().expect("b,d,l,n")).collect();
                    [v[0], v[1], v[2], v[3]]
                })
                .collect()
        }
    };
    let dev = Default::default();
    println!("threads: {}", rayon::current_num_threads());
    println!(
        "| shape (b, d, L, N) | path | fwd ms | fwd+bwd ms | fast speed-up fwd | fast speed-up fwd+bwd |"
    );
    println!("|---|---|---|---|---|---|");
    for shape in shapes {
        let inp = inputs::<Cpu>(shape, &dev, false);
        let ad = inputs::<Ad>(shape, &dev, true);
        let w = Tensor::<Ad, 3>::random(
            [shape[0], shape[1], shape[2]],
            Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let fwd_bwd = |y: Tensor<Ad, 3>| {
            let _ = (y * w.clone()).sum().backward();
        };
        let fast = (
            time(5, || {
                selective_scan(inp.clone(), false).unwrap().y.into_data();
            }),
            time(5, || fwd_bwd(selective_scan(ad.clone(), false).unwrap().y)),
        );
        let elems = (shape[0] * shape[1] * shape[2] * shape[3]) as f64;
        let mut rows = vec![("fast (this crate)", fast)];
        rows.push((
            "reference (tensor ops)",
            (
                time(1, || {
                    reference::selective_scan(inp.clone(), false).y.into_data();
                }),
                time(1, || {
                    fwd_bwd(reference::selective_scan(ad.clone(), false).y)
                }),
            ),
        ));
        rows.push((
            "op-by-op (burn-mamba style)",
            (
                time(1, || {
                    reference::selective_scan_op_by_op(inp.clone()).into_data();
                }),
                time(1, || {
                    fwd_bwd(reference::selective_scan_op_by_op(ad.clone()))
                }),
            ),
        ));
        for (name, (f, fb)) in &rows {
            println!(
                "| {shape:?} | {name} | {f:.1} | {fb:.1} | {:.1}x | {:.1}x |",
                f / fast.0,
                fb / fast.1
            );
        }
        println!(
            "| {shape:?} | fast: element x state updates / s | {:.2} G | {:.2} G | | |",
            elems / fast.0 / 1e6,
            elems / fast.1 / 1e6
        );
    }
}
