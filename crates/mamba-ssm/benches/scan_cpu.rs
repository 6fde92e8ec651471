//! Criterion `scan_cpu`: the selective scan on the CPU (NdArray), forward and forward+backward,
//! for the fast path, the tensor-op reference and an op-by-op implementation in the style of
//! burn-mamba / mamba-minimal (`[batch, L, d_inner, N]` tensors for exp(delta A) and
//! delta B u, then a per-timestep loop). Also the CPU's exp2 and FMA throughput, the roofline
//! the fast path is read against (see docs/kernels.md).
//!
//! Shapes (batch, d_inner, L, N): (1, 1536, 512, 16), (8, 1536, 512, 16), (2, 768, 2048, 16).
//! `SCAN_BENCH_SHAPES=1,1536,512,16;...` overrides them. The forward+backward of the two slow
//! paths takes minutes per iteration (tens of minutes at batch 8): it runs only with
//! `SCAN_BENCH_SLOW=1`; `cargo run --release -p mamba-ssm --example scan_cpu_table` times
//! every path once per shape instead.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Distribution, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mamba_ssm::{ScanInputs, reference, selective_scan};
use std::hint::black_box;
use std::time::Duration;

type Cpu = NdArray;
type Ad = Autodiff<NdArray>;

fn shapes() -> Vec<[usize; 4]> {
    match std::env::var("SCAN_BENCH_SHAPES") {
        Ok(s) => s
            .split(';')
            .map(|t| {
                let v: Vec<usize> = t
                    .split(',')
                    .map(|x| x.trim().parse().expect("SCAN_BENCH_SHAPES"))
                    .collect();
                [v[0], v[1], v[2], v[3]]
            })
            .collect(),
        Err(_) => vec![[1, 1536, 512, 16], [8, 1536, 512, 16], [2, 768, 2048, 16]],
    }
}

fn require_grad(inp: ScanInputs<Ad>) -> ScanInputs<Ad> {
    ScanInputs {
        u: inp.u.require_grad(),
        delta: inp.delta.require_grad(),
        a: inp.a.require_grad(),
        b: inp.b.require_grad(),
        c: inp.c.require_grad(),
        d: inp.d.map(|t| t.require_grad()),
        z: inp.z.map(|t| t.require_grad()),
        delta_bias: inp.delta_bias.map(|t| t.require_grad()),
        delta_softplus: inp.delta_softplus,
    }
}

fn bench_scan(c: &mut Criterion) {
    let dev = Default::default();
    for shape in shapes() {
        let [batch, dim, len, n] = shape;
        let label = format!("b{batch}_d{dim}_l{len}_n{n}");
        let mut g = c.benchmark_group(format!("scan_cpu/{label}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(5));
        g.throughput(Throughput::Elements((batch * dim * len * n) as u64)); // element x state updates
        let inp = ScanInputs::<Cpu>::random(shape, &dev);
        let inp_ad = require_grad(ScanInputs::<Ad>::random(shape, &dev));
        let w = Tensor::<Ad, 3>::random([batch, dim, len], Distribution::Normal(0.0, 1.0), &dev);

        g.bench_function(BenchmarkId::new("fast", "fwd"), |b| {
            b.iter(|| black_box(selective_scan(inp.clone(), false).unwrap().y.into_data()))
        });
        g.bench_function(BenchmarkId::new("fast", "fwd+bwd"), |b| {
            b.iter(|| {
                let y = selective_scan(inp_ad.clone(), false).unwrap().y;
                black_box((y * w.clone()).sum().backward())
            })
        });
        g.bench_function(BenchmarkId::new("reference", "fwd"), |b| {
            b.iter(|| black_box(reference::selective_scan(inp.clone(), false).y.into_data()))
        });
        let slow = std::env::var("SCAN_BENCH_SLOW").is_ok_and(|v| v == "1");
        if slow {
            g.bench_function(BenchmarkId::new("reference", "fwd+bwd"), |b| {
                b.iter(|| {
                    let y = reference::selective_scan(inp_ad.clone(), false).y;
                    black_box((y * w.clone()).sum().backward())
                })
            });
        }
        g.bench_function(BenchmarkId::new("op_by_op", "fwd"), |b| {
            b.iter(|| black_box(reference::selective_scan_op_by_op(inp.clone()).into_data()))
        });
        if slow {
            g.bench_function(BenchmarkId::new("op_by_op", "fwd+bwd"), |b| {
                b.iter(|| {
                    let y = reference::selective_scan_op_by_op(inp_ad.clone());
                    black_box((y * w.clone()).sum().backward())
                })
            });
        }
        g.finish();
    }
}

/// exp2 of each element into an L1-resident buffer (no reduction chain to serialise it).
#[inline(always)]
fn exp2_sum(c: &[f32]) -> f32 {
    let mut out = [0.0f32; 4096];
    let mut keep = 0.0f32;
    for part in c.chunks(4096) {
        for (o, &x) in out.iter_mut().zip(part) {
            *o = mamba_ssm::cpu::exp2_fast(x);
        }
        keep += out[part.len() - 1];
    }
    keep
}

/// 64 independent chains (8 x 8 lanes) of a = a * 0.999 + x, 8 steps per element: the
/// multiply-add pairs the scan's inner loop is made of (Rust does not contract them into FMA).
#[inline(always)]
fn mul_add_chains(c: &[f32]) -> f32 {
    let mut acc = [[0.0f32; 8]; 8];
    for chunk in c.chunks_exact(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            for k in 0..8 {
                let x = chunk[j * 8 + k];
                for _ in 0..8 {
                    a[k] = a[k] * 0.999 + x;
                }
            }
        }
    }
    acc.iter().flatten().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp2_sum_avx2(c: &[f32]) -> f32 {
    exp2_sum(c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mul_add_chains_avx2(c: &[f32]) -> f32 {
    mul_add_chains(c)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma");
    #[allow(unreachable_code)]
    false
}

/// The roofline, with the code generation the fast path uses (AVX2 where present), on all
/// cores: exp2_fast evaluations per second and multiply-add pairs per second.
fn bench_roofline(c: &mut Criterion) {
    use rayon::prelude::*;
    let mut g = c.benchmark_group("scan_cpu/roofline");
    let n = 1 << 22;
    let xs: Vec<f32> = (0..n).map(|i| -((i % 1000) as f32) * 0.01).collect();
    let avx2 = has_avx2();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("exp2_fast", |b| {
        b.iter(|| {
            xs.par_chunks(1 << 14)
                .map(|c| {
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        // SAFETY: checked above
                        return unsafe { exp2_sum_avx2(c) };
                    }
                    exp2_sum(c)
                })
                .sum::<f32>()
        })
    });
    g.throughput(Throughput::Elements(n as u64 * 8));
    g.bench_function("mul_add", |b| {
        b.iter(|| {
            xs.par_chunks(1 << 14)
                .map(|c| {
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        // SAFETY: checked above
                        return unsafe { mul_add_chains_avx2(c) };
                    }
                    mul_add_chains(c)
                })
                .sum::<f32>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_roofline, bench_scan);
criterion_main!(benches);
