//! Criterion: selective scan vs attention core, Mamba block vs BERT layer, at the same token
//! count, forward and forward + backward, on each compiled backend (cpu by default; wgpu / cuda
//! with those features). Shapes: see `rankmamba::bench::scan` (d_model 768, d_inner 1536,
//! N 16, 12 heads x 64); L in {128, 512, 2048, 8192}; tokens per call
//! `RANKMAMBA_BENCH_TOKENS` (default 8,192 on the CPU: batch 64 / 16 / 4 / 1; 65,536 on GPUs,
//! as on the H200 grid). `RANKMAMBA_BENCH_LENS=128,512` restricts the lengths.
//!
//! `cargo bench --bench scan_vs_attention` (cpu); `--features cuda,autotune,fusion` adds cuda.
//! Each iteration is one call plus a device sync (the library's timed region; criterion sees
//! the median of a sample's calls times its count), comparable with `rankmamba bench scan`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rankmamba::backend::BackendKind;
use rankmamba::bench::scan::{Part, Pass, ScanGrid, measure_cell};
use rankmamba::bench::{Precision, guarded};

fn grid(kind: BackendKind) -> ScanGrid {
    let mut g = ScanGrid::gpu_default();
    g.tokens = std::env::var("RANKMAMBA_BENCH_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if kind == BackendKind::Cpu {
            8192
        } else {
            65_536
        });
    if let Ok(s) = std::env::var("RANKMAMBA_BENCH_LENS") {
        g.lens = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    }
    g
}

fn bench_backend(c: &mut Criterion, kind: BackendKind) {
    let g = grid(kind);
    for pass in [Pass::Fwd, Pass::FwdBwd] {
        let mut group =
            c.benchmark_group(format!("scan_vs_attention/{}/{}", kind.name(), pass.name()));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if kind == BackendKind::Cpu {
            4
        } else {
            2
        }));
        for &len in &g.lens {
            group.throughput(Throughput::Elements((g.batch(len) * len) as u64));
            for part in Part::all() {
                let id = BenchmarkId::new(part.name(), format!("L{len}xB{}", g.batch(len)));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        // inputs built once per sample, one untimed call, then `iters` timed calls
                        let mut gi = g.clone();
                        gi.warmup = 1;
                        gi.reps = iters.max(1) as usize;
                        let r = guarded(|| {
                            rankmamba::with_bench_backend!(kind, Precision::F32, |B, dev| {
                                measure_cell::<B>(&gi, part, pass, len, &dev)
                            })?
                        });
                        match r {
                            Ok(t) => Duration::from_secs_f64(t.median_ms * 1e-3 * iters as f64),
                            Err(e) => {
                                eprintln!("{} {} L={len}: {e:#}", part.name(), pass.name());
                                Duration::from_nanos(1)
                            }
                        }
                    })
                });
            }
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    for kind in [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda] {
        if rankmamba::backend::available().contains(&kind.name()) {
            bench_backend(c, kind);
        }
    }
}

criterion_group!(scan_vs_attention, benches);
criterion_main!(scan_vs_attention);
