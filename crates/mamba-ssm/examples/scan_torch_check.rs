//! The device check against PyTorch, first half: fresh random inputs through the GPU scan kernels (the
//! forward with its last state, then a training step: the training forward and the backward
//! from its saved chunk-start states), every output NaN-poisoned before its launch
//! (`KernelConfig::scan_poison`), and one safetensors file per case with the inputs as the
//! kernels saw them (f32; bf16 cases hold the bf16-rounded values), dy, and the kernels' y,
//! last state and gradients. `scripts/device/scan_torch_check.py DIR` then recomputes all of
//! it in float64 with PyTorch and prints the errors.
//!
//! `scan_torch_check [cuda|wgpu] DIR` (build with `--features cuda` or `--features wgpu`).
//! The cases cover the kernels' paths at their default settings: the vectorised kernels with
//! several backward chunks (saved states), one chunk on a plane segment (L 128: 16 lanes on
//! CUDA; L 40: 8 lanes), the scalar fallback (L not a multiple of the vector width), G > 1,
//! without D / z / bias / softplus, and bf16 storage with f32 weights. The `MAMBA_SSM_*`
//! environment variables override the default settings (`KernelConfig::from_env`).

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use mamba_ssm::kernel::{KernelConfig, LaunchCounter, ScanKernel};
use mamba_ssm::{ScanInputs, SelectiveScanBackend, selective_scan_with_config};
use rand::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;

/// (name, [batch, d_inner, L, N, G], storage, [D, z, delta_bias, softplus])
type Case = (&'static str, [usize; 5], DType, [bool; 4]);

const CASES: [Case; 8] = [
    ("vec_chunks", [2, 64, 1000, 16, 1], DType::F32, [true; 4]),
    ("vec_long_g2", [2, 32, 2048, 16, 2], DType::F32, [true; 4]),
    ("seg16_l128", [3, 48, 128, 16, 1], DType::F32, [true; 4]),
    (
        "seg8_l40_g2",
        [2, 40, 40, 4, 2],
        DType::F32,
        [true, false, true, true],
    ),
    ("scalar_odd_l", [2, 30, 4097, 16, 1], DType::F32, [true; 4]),
    ("plain_l7_n1", [1, 24, 7, 1, 1], DType::F32, [false; 4]),
    ("bf16_chunks", [2, 64, 1000, 16, 1], DType::BF16, [true; 4]),
    (
        "bf16_l512_g2",
        [2, 96, 512, 16, 2],
        DType::BF16,
        [true, false, true, true],
    ),
];

/// Values drawn on the host, rounded to the storage type when it is bf16 (so that the file
/// holds exactly what the kernels read).
fn values(rng: &mut rand_chacha::ChaCha8Rng, n: usize, lo: f32, hi: f32, bf16: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.random_range(lo..hi);
            if bf16 {
                burn::tensor::bf16::from_f32(v).to_f32()
            } else {
                v
            }
        })
        .collect()
}

/// `v` on the device with `shape`, in storage type `dt`.
fn upload<B: Backend, const D: usize>(
    v: &[f32],
    shape: [usize; D],
    dt: DType,
    dev: &B::Device,
) -> Tensor<B, D> {
    Tensor::<B, D>::from_data(TensorData::new(v.to_vec(), shape), dev).cast(dt)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let data = t.into_data().convert::<f32>();
    (data.shape.to_vec(), data.into_vec().unwrap())
}

fn run<B: SelectiveScanBackend>(dev: B::Device, dir: &str) {
    std::fs::create_dir_all(dir).expect("output directory");
    let counter = LaunchCounter::new();
    let cfg = KernelConfig {
        scan_poison: true,
        launch_counter: Some(counter.clone()),
        ..KernelConfig::from_env().unwrap_or_else(|e| panic!("kernel settings: {e}"))
    };
    println!("{cfg:?}");
    for (i, (name, [b, d, l, n, g], storage, [has_d, has_z, has_bias, softplus])) in
        CASES.into_iter().enumerate()
    {
        if !B::supports_dtype(&dev, storage) {
            println!("{name}: no {storage:?} on this device, skipped");
            continue;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1000 + i as u64);
        let half = storage == DType::BF16;
        let mut files: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut make = |key: &str, shape: Vec<usize>, lo: f32, hi: f32, round: bool| {
            let v = values(&mut rng, shape.iter().product(), lo, hi, round && half);
            files.push((key.to_string(), shape.clone(), v.clone()));
            v
        };
        // per-step inputs in the storage type; A, D, delta_bias f32 (as the kernels read them)
        let u = make("u", vec![b, d, l], -1.5, 1.5, true);
        let (lo, hi) = if softplus { (-2.5, 0.5) } else { (0.01, 0.2) };
        let delta = make("delta", vec![b, d, l], lo, hi, true);
        let a = make("A", vec![d, n], -4.0, -0.25, false);
        let bm = make("B", vec![b, g, n, l], -1.5, 1.5, true);
        let cm = make("C", vec![b, g, n, l], -1.5, 1.5, true);
        let dv = has_d.then(|| make("D", vec![d], -1.0, 1.0, false));
        let z = has_z.then(|| make("z", vec![b, d, l], -2.0, 2.0, true));
        let bias = has_bias.then(|| make("delta_bias", vec![d], -0.3, 0.3, false));
        let dy = make("dy", vec![b, d, l], -1.0, 1.0, true);
        let inputs = || {
            let mut inp = ScanInputs::<B>::new(
                upload(&u, [b, d, l], storage, &dev),
                upload(&delta, [b, d, l], storage, &dev),
                upload(&a, [d, n], DType::F32, &dev),
                upload(&bm, [b, g, n, l], storage, &dev),
                upload(&cm, [b, g, n, l], storage, &dev),
            )
            .with_softplus(softplus);
            if let Some(v) = &dv {
                inp = inp.with_d(upload(v, [d], DType::F32, &dev));
            }
            if let Some(v) = &z {
                inp = inp.with_z(upload(v, [b, d, l], storage, &dev));
            }
            if let Some(v) = &bias {
                inp = inp.with_delta_bias(upload(v, [d], DType::F32, &dev));
            }
            inp
        };
        let out = selective_scan_with_config(inputs(), true, &cfg).expect("forward");
        let mut results = vec![
            ("y", host(out.y)),
            ("last_state", host(out.last_state.expect("last state"))),
        ];
        let (_, saved) = B::selective_scan_train_with_config(inputs(), false, &cfg);
        let grads = B::selective_scan_backward_saved_with_config(
            inputs(),
            upload(&dy, [b, d, l], storage, &dev),
            saved,
            &cfg,
        );
        results.push(("grad_u", host(grads.du)));
        results.push(("grad_delta", host(grads.ddelta)));
        results.push(("grad_A", host(grads.da)));
        results.push(("grad_B", host(grads.db)));
        results.push(("grad_C", host(grads.dc)));
        if let Some(t) = grads.dd {
            results.push(("grad_D", host(t)));
        }
        if let Some(t) = grads.dz {
            results.push(("grad_z", host(t)));
        }
        if let Some(t) = grads.ddelta_bias {
            results.push(("grad_delta_bias", host(t)));
        }
        for (k, (shape, v)) in results {
            files.push((k.to_string(), shape, v));
        }
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = files
            .into_iter()
            .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(k, s, v)| {
                (
                    k.clone(),
                    TensorView::new(Dtype::F32, s.clone(), v).unwrap(),
                )
            })
            .collect();
        let meta = HashMap::from([
            (
                "softplus".to_string(),
                (if softplus { "True" } else { "False" }).to_string(),
            ),
            ("storage".to_string(), format!("{storage:?}")),
        ]);
        let file = format!("{dir}/{name}.safetensors");
        std::fs::write(&file, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
        println!(
            "{name}: [b {b}, d {d}, L {l}, N {n}, G {g}] {storage:?} -> {file} (vectorised launches so far: fwd {}, bwd {})",
            counter.launches(ScanKernel::VecForward),
            counter.launches(ScanKernel::VecBackward)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("scan_torch_check");
    match args.get(1).map(String::as_str) {
        #[cfg(feature = "cuda")]
        Some("cuda") => run::<burn::backend::Cuda>(Default::default(), dir),
        #[cfg(feature = "wgpu")]
        Some("wgpu") => run::<burn::backend::Wgpu>(Default::default(), dir),
        other => eprintln!(
            "usage: scan_torch_check [cuda|wgpu] DIR (got {other:?}; build with the matching feature)"
        ),
    }
}
