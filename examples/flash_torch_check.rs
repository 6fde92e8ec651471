//! The device check of the flash-attention kernels against PyTorch, first half: random inputs
//! through the kernels (forward, then the backward of `sum(o * w)` through `Autodiff`), every
//! output NaN-poisoned before its launch, and one safetensors file per case with the inputs as
//! the kernels saw them (f32; bf16 and f16 cases hold the rounded values), the key mask, `w`,
//! and the kernels' output and gradients. `scripts/device/flash_torch_check.py DIR` recomputes
//! all of it in float64 with PyTorch and prints the errors.
//!
//! `cargo run --release --features cuda --example flash_torch_check -- cuda DIR [KERNEL]` (or
//! `wgpu` with `--features wgpu`); KERNEL is `auto` (the default: tensor-core tiles for bf16 and
//! f16 where the device has them), `scalar` or `tiled`.
//! Cases: head dims 32 / 64 / 128; lengths 1, 7, 129, 513, 2048; right, left and no padding;
//! causal and not; f32, bf16 and f16 storage; the kernels KERNEL selects (unrolled loops).

use burn::backend::Autodiff;
use burn::tensor::{Bool, DType, Tensor, TensorData, backend::Backend};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use transformer_baselines::attention::flash_attention_with_config;
use transformer_baselines::{FlashAttentionBackend, FlashConfig, FlashKernel, KeyMask};

/// (name, [batch, heads, len_q, len_k, head_dim], storage, left pad, right pad, causal)
type Case = (&'static str, [usize; 5], DType, usize, usize, bool);

const CASES: [Case; 14] = [
    ("d32_l1", [4, 3, 1, 1, 32], DType::F32, 0, 0, false),
    (
        "d64_l7_right_causal",
        [3, 2, 7, 7, 64],
        DType::F32,
        0,
        3,
        true,
    ),
    (
        "d64_l129_left_causal",
        [2, 4, 129, 129, 64],
        DType::F32,
        20,
        0,
        true,
    ),
    (
        "d128_l129_right",
        [2, 2, 129, 129, 128],
        DType::F32,
        0,
        40,
        false,
    ),
    (
        "d64_l513_right",
        [2, 12, 513, 513, 64],
        DType::F32,
        0,
        150,
        false,
    ),
    (
        "d32_l513_causal",
        [2, 6, 513, 513, 32],
        DType::F32,
        0,
        0,
        true,
    ),
    (
        "d128_l2048_causal",
        [1, 2, 2048, 2048, 128],
        DType::F32,
        0,
        0,
        true,
    ),
    ("d64_cross_7_33", [2, 2, 7, 33, 64], DType::F32, 0, 5, false),
    (
        "bf16_d64_l513_right",
        [2, 12, 513, 513, 64],
        DType::BF16,
        0,
        150,
        false,
    ),
    (
        "bf16_d128_l129_left_causal",
        [2, 2, 129, 129, 128],
        DType::BF16,
        9,
        0,
        true,
    ),
    (
        "bf16_d32_l2048",
        [1, 4, 2048, 2048, 32],
        DType::BF16,
        0,
        0,
        false,
    ),
    (
        "f16_d64_l513_causal",
        [2, 4, 513, 513, 64],
        DType::F16,
        0,
        100,
        true,
    ),
    ("f16_d128_l7", [3, 2, 7, 7, 128], DType::F16, 0, 2, false),
    ("bf16_d64_l1", [2, 2, 1, 1, 64], DType::BF16, 0, 0, true),
];

/// N(0, 1) draws (SplitMix64 + Box-Muller).
fn normal(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut uniform = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (a, b) = (uniform().max(1e-300), uniform());
            scale * ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
        })
        .collect()
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .expect("f32 data")
}

#[allow(dead_code)] // without a GPU feature only the usage line is compiled in
fn run<B: Backend + FlashAttentionBackend>(device: B::Device, dir: &str, kernel: FlashKernel) {
    type A<B> = Autodiff<B>;
    std::fs::create_dir_all(dir).expect("output folder");
    let config = FlashConfig {
        poison_outputs: true,
        kernel,
        ..FlashConfig::default()
    };
    for (n, &(name, [batch, heads, len_q, len_k, dim], dtype, left, right, causal)) in
        CASES.iter().enumerate()
    {
        let (qs, ks) = ([batch, heads, len_q, dim], [batch, heads, len_k, dim]);
        let seed = 1000 * n as u64;
        let upload = |v: Vec<f32>, shape: [usize; 4]| {
            Tensor::<A<B>, 4>::from_data(TensorData::new(v, shape), &device)
                .cast(dtype)
                .require_grad()
        };
        let q = upload(normal(qs.iter().product(), seed, 1.5), qs);
        let k = upload(normal(ks.iter().product(), seed + 1, 1.5), ks);
        let v = upload(normal(ks.iter().product(), seed + 2, 1.0), ks);
        let w = normal(qs.iter().product(), seed + 3, 1.0);
        // left padding on even rows, right padding on odd rows
        let pad: Vec<bool> = (0..batch)
            .flat_map(|b| {
                (0..len_k).map(move |j| {
                    if b % 2 == 0 {
                        j < left
                    } else {
                        j >= len_k - right.min(len_k - 1)
                    }
                })
            })
            .collect();
        let masked = left > 0 || right > 0;
        let mask = masked.then(|| {
            KeyMask::Padding(Tensor::<A<B>, 2, Bool>::from_data(
                TensorData::new(pad.clone(), [batch, len_k]),
                &device,
            ))
        });
        let t0 = std::time::Instant::now();
        let o = flash_attention_with_config(q.clone(), k.clone(), v.clone(), mask, causal, &config)
            .expect("valid shapes");
        let wt = Tensor::<A<B>, 4>::from_data(TensorData::new(w.clone(), qs), &device);
        let grads = (o.clone().cast(DType::F32) * wt).sum().backward();
        let out = [
            ("q", host(q.clone().inner()), qs),
            ("k", host(k.clone().inner()), ks),
            ("v", host(v.clone().inner()), ks),
            ("w", w, qs),
            ("o", host(o.inner()), qs),
            ("dq", host(q.grad(&grads).expect("dq")), qs),
            ("dk", host(k.grad(&grads).expect("dk")), ks),
            ("dv", host(v.grad(&grads).expect("dv")), ks),
        ];
        eprintln!("{name}: {:.1?}", t0.elapsed());
        let keep: Vec<f32> = pad.iter().map(|&p| if p { 0.0 } else { 1.0 }).collect();
        let mut bytes: Vec<(String, Vec<u8>, Vec<usize>)> = out
            .into_iter()
            .map(|(n, v, s)| {
                let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (n.to_string(), b, s.to_vec())
            })
            .collect();
        bytes.push((
            "keep".into(),
            keep.iter().flat_map(|x| x.to_le_bytes()).collect(),
            vec![batch, len_k],
        ));
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(n, b, s)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).expect("tensor view"),
                )
            })
            .collect();
        let meta = HashMap::from([
            ("causal".to_string(), causal.to_string()),
            ("dtype".to_string(), format!("{dtype:?}")),
            ("masked".to_string(), masked.to_string()),
        ]);
        let file = format!("{dir}/{name}.safetensors");
        std::fs::write(
            &file,
            safetensors::serialize(views, Some(meta)).expect("serialize"),
        )
        .expect("write");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("flash_torch_check");
    let kernel = match args.get(3).map(String::as_str) {
        None | Some("auto") => Some(FlashKernel::Auto),
        Some("scalar") => Some(FlashKernel::Scalar),
        Some("tiled") => Some(FlashKernel::Tiled),
        Some(_) => None,
    };
    match (args.get(1).map(String::as_str), kernel) {
        #[cfg(feature = "cuda")]
        (Some("cuda"), Some(kernel)) => run::<burn::backend::Cuda>(Default::default(), dir, kernel),
        #[cfg(feature = "wgpu")]
        (Some("wgpu"), Some(kernel)) => run::<burn::backend::Wgpu>(Default::default(), dir, kernel),
        _ => {
            eprintln!(
                "usage: flash_torch_check [cuda|wgpu] DIR [auto|scalar|tiled] (got {:?}, folder \
                 {dir:?}, kernels {kernel:?}; build with the matching feature)",
                &args[1..]
            );
            std::process::exit(2);
        }
    }
}
