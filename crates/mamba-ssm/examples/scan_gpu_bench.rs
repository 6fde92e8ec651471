//! Forward selective-scan kernel on a GPU backend: correctness against the CPU scan at a small
//! shape, then timings over launch configurations and the benchmark grid. Prints a table.
//!
//! `scan_gpu_bench [cuda|wgpu] [--quick] [--no-sweep] [--no-check] [--fp32-only]
//! [--no-queued] [--grid=b,d,l,n;...]`
//! (build with `--features cuda` or `--features wgpu`). The kernels' settings are the default
//! overridden by the environment (`KernelConfig::from_env`): `MAMBA_SSM_CHANS_FWD`,
//! `MAMBA_SSM_CHANS_BWD`, `MAMBA_SSM_BWD_THREADS`, `MAMBA_SSM_PLANE`, `MAMBA_SSM_BWD=plain`
//! (the backward without `fold`), `MAMBA_SSM_VEC=0` (the scalar forward), ... (each named in
//! the documentation of its `mamba_ssm::kernel::KernelConfig` field).
//! Timing: median of 20 runs after 3 warm-ups, wall clock between device syncs (includes the
//! launch, about 10 us, and the sync); the grid also prints queued timings (20 calls per
//! sync, divided by 20; see `pipelined_ms`), with and without an L2 flush before each call.

use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use mamba_ssm::kernel::{KernelConfig, LaunchCounter, ScanKernel};
use mamba_ssm::{
    ScanInputs, SelectiveScanBackend, selective_scan, selective_scan_backward,
    selective_scan_backward_with_config, selective_scan_with_config,
};
use std::time::Instant;

fn to_cpu<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Tensor<burn::backend::NdArray, D> {
    Tensor::from_data(t.to_data().convert::<f32>(), &Default::default())
}

fn host(inp: &ScanInputs<impl Backend>) -> ScanInputs<burn::backend::NdArray> {
    ScanInputs {
        u: to_cpu(&inp.u),
        delta: to_cpu(&inp.delta),
        a: to_cpu(&inp.a),
        b: to_cpu(&inp.b),
        c: to_cpu(&inp.c),
        d: inp.d.as_ref().map(to_cpu),
        z: inp.z.as_ref().map(to_cpu),
        delta_bias: inp.delta_bias.as_ref().map(to_cpu),
        delta_softplus: inp.delta_softplus,
    }
}

fn max_rel(a: TensorData, b: TensorData) -> f64 {
    let a: Vec<f32> = a.convert::<f32>().into_vec().unwrap();
    let b: Vec<f32> = b.convert::<f32>().into_vec().unwrap();
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max)
        / scale
}

fn time_ms<B: Backend>(dev: &B::Device, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    B::sync(dev).unwrap();
    let mut v: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            f();
            B::sync(dev).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Device time per call without the per-call sync: the median over 5 samples of `k` calls
/// queued back to back (one sync per sample), divided by `k`. With `flush`, every call is
/// preceded by `flush` (an L2 flush: a pass over a buffer larger than the L2), whose own
/// time, measured the same way, is subtracted: the official kernel's figures are
/// CUDA-event timings with L2 flushed.
fn pipelined_ms<B: Backend>(
    dev: &B::Device,
    k: usize,
    mut f: impl FnMut(),
    mut flush: Option<&mut dyn FnMut()>,
) -> f64 {
    let mut sample = |with_op: bool, flush: &mut Option<&mut dyn FnMut()>| {
        B::sync(dev).unwrap();
        let t = Instant::now();
        for _ in 0..k {
            if let Some(fl) = flush.as_mut() {
                fl();
            }
            if with_op {
                f();
            }
        }
        B::sync(dev).unwrap();
        t.elapsed().as_secs_f64() * 1e3 / k as f64
    };
    let _ = sample(true, &mut flush);
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let both = sample(true, &mut flush);
            let base = if flush.is_some() {
                sample(false, &mut flush)
            } else {
                0.0
            };
            both - base
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Opts {
    quick: bool,
    sweep: bool,
    check: bool,
    fp32_only: bool,
    queued: bool,
    grid: Option<Vec<[usize; 4]>>,
}

fn run<B: SelectiveScanBackend>(dev: B::Device, opts: Opts) {
    let Opts {
        quick,
        sweep,
        check,
        fp32_only,
        queued,
        grid,
    } = opts;
    println!("backend: {}", B::name(&dev));
    let env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MAMBA_SSM_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("settings: {}", env.join(" "));
    let counter = LaunchCounter::new();
    let base = KernelConfig {
        launch_counter: Some(counter.clone()),
        ..KernelConfig::from_env().unwrap_or_else(|e| panic!("kernel settings: {e}"))
    };
    let vec_forward_launches = || counter.launches(ScanKernel::VecForward);
    let with_plane = |plane| KernelConfig {
        plane: Some(plane),
        ..base.clone()
    };
    // correctness against the CPU scan, both scan paths
    for plane in [false, true] {
        if !check {
            break;
        }
        let cfg = with_plane(plane);
        for shape in [
            [3, 64, 1000, 16],
            [2, 32, 4097, 16],
            [1, 8, 7, 4],
            [3, 64, 128, 16],
            [2, 40, 40, 16],
        ] {
            let inp = ScanInputs::<B>::random(shape, &dev);
            let want = selective_scan(host(&inp), true).unwrap();
            let got = selective_scan_with_config(inp, true, &cfg).unwrap();
            println!(
                "check plane={plane} {shape:?} (vectorised forward launches so far: {}): y max rel err {:.2e}, last state {:.2e}",
                vec_forward_launches(),
                max_rel(got.y.into_data(), want.y.into_data()),
                max_rel(
                    got.last_state.unwrap().into_data(),
                    want.last_state.unwrap().into_data()
                )
            );
        }
    }
    // backward kernel against the CPU scan's backward, every gradient
    for plane in [false, true] {
        if !check {
            break;
        }
        let cfg = with_plane(plane);
        for shape in [
            [3, 64, 1000, 16],
            [2, 32, 4097, 16],
            [2, 30, 700, 16],
            [3, 64, 128, 16],
            [2, 40, 40, 16],
        ] {
            let inp = ScanInputs::<B>::random(shape, &dev);
            let dy = Tensor::<B, 3>::random(
                [shape[0], shape[1], shape[2]],
                Distribution::Normal(0.0, 1.0),
                &dev,
            );
            let want = selective_scan_backward(host(&inp), to_cpu(&dy)).unwrap();
            // with the chunk-start states saved by the training forward (when the sequence
            // spans several backward chunks), then without
            let saved = B::selective_scan_train_with_config(inp.clone(), false, &cfg).1;
            println!("check bwd: forward saved states: {}", saved.is_some());
            let got_saved =
                B::selective_scan_backward_saved_with_config(inp.clone(), dy.clone(), saved, &cfg);
            println!(
                "check bwd saved plane={plane} {shape:?}: du {:.1e}, ddelta {:.1e}, dA {:.1e}, dB {:.1e}, dC {:.1e}",
                max_rel(got_saved.du.into_data(), want.du.clone().into_data()),
                max_rel(
                    got_saved.ddelta.into_data(),
                    want.ddelta.clone().into_data()
                ),
                max_rel(got_saved.da.into_data(), want.da.clone().into_data()),
                max_rel(got_saved.db.into_data(), want.db.clone().into_data()),
                max_rel(got_saved.dc.into_data(), want.dc.clone().into_data()),
            );
            let got = selective_scan_backward_with_config(inp, dy, &cfg).unwrap();
            let errs = [
                ("du", max_rel(got.du.into_data(), want.du.into_data())),
                (
                    "ddelta",
                    max_rel(got.ddelta.into_data(), want.ddelta.into_data()),
                ),
                ("dA", max_rel(got.da.into_data(), want.da.into_data())),
                ("dB", max_rel(got.db.into_data(), want.db.into_data())),
                ("dC", max_rel(got.dc.into_data(), want.dc.into_data())),
                (
                    "dD",
                    max_rel(got.dd.unwrap().into_data(), want.dd.unwrap().into_data()),
                ),
                (
                    "dz",
                    max_rel(got.dz.unwrap().into_data(), want.dz.unwrap().into_data()),
                ),
                (
                    "dbias",
                    max_rel(
                        got.ddelta_bias.unwrap().into_data(),
                        want.ddelta_bias.unwrap().into_data(),
                    ),
                ),
            ];
            let text: Vec<String> = errs.iter().map(|(k, e)| format!("{k} {e:.1e}")).collect();
            println!("check bwd plane={plane} {shape:?}: {}", text.join(", "));
        }
    }
    // bf16 activations with f32 weights (mixed dtypes): against the CPU scan on the same
    // bf16-rounded values
    if check && B::supports_dtype(&dev, burn::tensor::DType::BF16) {
        let bf = burn::tensor::DType::BF16;
        for shape in [[2, 64, 1000, 16], [2, 48, 300, 16], [2, 48, 304, 16]] {
            let inp = ScanInputs::<B>::random(shape, &dev);
            let cast = ScanInputs {
                u: inp.u.clone().cast(bf),
                delta: inp.delta.clone().cast(bf),
                z: inp.z.clone().map(|z| z.cast(bf)),
                b: inp.b.clone().cast(bf),
                c: inp.c.clone().cast(bf),
                ..inp.clone()
            };
            // the kernels read A, D and delta_bias as f32: the reference takes them unrounded
            let want = selective_scan(host(&cast), false).unwrap();
            let got = selective_scan_with_config(cast, false, &base).unwrap();
            println!(
                "check bf16 (f32 weights) {shape:?} (vectorised launches so far: {}): y max rel err {:.2e}",
                vec_forward_launches(),
                max_rel(got.y.into_data(), want.y.into_data())
            );
        }
    }

    // launch configurations at the reranking shape (L = 512, batch 128) and L = 8192
    println!("\n| shape (b, d, L, N) | plane | items | max units | fwd ms |");
    println!("|---|---|---|---|---|");
    let sweep: Vec<[usize; 4]> = if !sweep {
        vec![]
    } else if quick {
        vec![[8, 1536, 512, 16]]
    } else {
        vec![[128, 1536, 512, 16], [8, 1536, 8192, 16]]
    };
    for shape in sweep {
        let inp = ScanInputs::<B>::random(shape, &dev);
        for plane in [true, false] {
            for items in [2usize, 4, 8, 16] {
                for units in [64usize, 128, 256] {
                    let cfg = with_plane(plane)
                        .with_items(Some(items))
                        .with_max_units(Some(units));
                    let ms = time_ms::<B>(&dev, || {
                        let _ = selective_scan_with_config(inp.clone(), false, &cfg).unwrap();
                    });
                    println!("| {shape:?} | {plane} | {items} | {units} | {ms:.3} |");
                }
            }
        }
    }

    // the benchmark grid at the default configuration, fp32 and bf16 storage; "queued":
    // `pipelined_ms` (20 calls per sync; "L2 flushed": each after a 256 MB pass, subtracted)
    println!(
        "\n| shape (b, d, L, N) | dtype | fwd ms | fwd+bwd ms | fwd queued | fwd+bwd queued | fwd queued, L2 flushed | fwd+bwd queued, L2 flushed | exp floor ms | host ms per fwd |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // the flush keeps its output (a dropped lazy result could be skipped by `Fusion`); only
    // allocated for the queued timings
    let mut flush_buf = Tensor::<B, 1>::zeros([if queued { 64 << 20 } else { 1 }], &dev);
    let mut flush = move || {
        flush_buf = flush_buf.clone().add_scalar(1.0);
    };
    let grid: Vec<[usize; 4]> = if let Some(g) = grid {
        g
    } else if quick {
        vec![[8, 1536, 512, 16]]
    } else {
        vec![
            [512, 1536, 128, 16],
            [128, 1536, 512, 16],
            [32, 1536, 2048, 16],
            [8, 1536, 8192, 16],
            [1, 1536, 512, 16],
            [8, 1536, 512, 16],
            [128, 2048, 512, 16],
        ]
    };
    for shape in grid {
        let inp = ScanInputs::<B>::random(shape, &dev);
        // exp floor on the H200: 4.0e12 exp2/s
        let floor = (shape[0] * shape[1] * shape[2] * shape[3]) as f64 / 4.0e12 * 1e3;
        for dtype in [burn::tensor::DType::F32, burn::tensor::DType::BF16] {
            if !B::supports_dtype(&dev, dtype) || (fp32_only && dtype != burn::tensor::DType::F32) {
                continue;
            }
            // activations and B, C in the storage dtype; A, D, delta_bias stay f32 (the
            // official kernel's "weights fp32"; the wrapper casts them)
            let cast = ScanInputs {
                u: inp.u.clone().cast(dtype),
                delta: inp.delta.clone().cast(dtype),
                z: inp.z.clone().map(|z| z.cast(dtype)),
                b: inp.b.clone().cast(dtype),
                c: inp.c.clone().cast(dtype),
                ..inp.clone()
            };
            let dy = Tensor::<B, 3>::random(
                [shape[0], shape[1], shape[2]],
                Distribution::Normal(0.0, 1.0),
                &dev,
            )
            .cast(dtype);
            let fwd = || {
                let _ = selective_scan_with_config(cast.clone(), false, &base).unwrap();
            };
            // a training step's pair: the forward saves the backward's chunk-start states
            // (unless MAMBA_SSM_SAVE=0), the backward reuses them
            let pair = || {
                let (_, saved) = B::selective_scan_train_with_config(cast.clone(), false, &base);
                let _ = B::selective_scan_backward_saved_with_config(
                    cast.clone(),
                    dy.clone(),
                    saved,
                    &base,
                );
            };
            let ms = time_ms::<B>(&dev, fwd);
            let fb = time_ms::<B>(&dev, pair);
            // host time per forward call: 20 calls queued, before the sync
            let host = if queued {
                B::sync(&dev).unwrap();
                let t = Instant::now();
                for _ in 0..20 {
                    fwd();
                }
                let h = t.elapsed().as_secs_f64() * 1e3 / 20.0;
                B::sync(&dev).unwrap();
                h
            } else {
                f64::NAN
            };
            let [q, qfb, qf, qffb] = if queued {
                [
                    pipelined_ms::<B>(&dev, 20, fwd, None),
                    pipelined_ms::<B>(&dev, 20, pair, None),
                    pipelined_ms::<B>(&dev, 20, fwd, Some(&mut flush)),
                    pipelined_ms::<B>(&dev, 20, pair, Some(&mut flush)),
                ]
            } else {
                [f64::NAN; 4]
            };
            println!(
                "| {shape:?} | {dtype:?} | {ms:.3} | {fb:.3} | {q:.3} | {qfb:.3} | {qf:.3} | {qffb:.3} | {floor:.3} | {host:.3} |"
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let grid = args
        .iter()
        .find_map(|a| a.strip_prefix("--grid="))
        .map(|g| {
            g.split(';')
                .map(|s| {
                    let v: Vec<usize> = s.split(',').map(|x| x.parse().expect("--grid")).collect();
                    [v[0], v[1], v[2], v[3]]
                })
                .collect()
        });
    let opts = Opts {
        quick: args.iter().any(|a| a == "--quick"),
        sweep: !args.iter().any(|a| a == "--no-sweep"),
        check: !args.iter().any(|a| a == "--no-check"),
        fp32_only: args.iter().any(|a| a == "--fp32-only"),
        queued: !args.iter().any(|a| a == "--no-queued"),
        grid,
    };
    match args.get(1).map(String::as_str) {
        #[cfg(feature = "cuda")]
        Some("cuda") => run::<burn::backend::Cuda>(Default::default(), opts),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => run::<burn::backend::Wgpu>(Default::default(), opts),
        other => eprintln!(
            "usage: scan_gpu_bench [cuda|wgpu] [--quick] (got {other:?}; build with the matching feature)"
        ),
    }
}
