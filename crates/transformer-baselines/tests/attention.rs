//! The fused attention path (Burn's `attention`) against the matmul-softmax reference on random
//! inputs and random padding masks, with and without the causal mask; the reference against a
//! scalar loop; gradients of the two paths under `Autodiff`.

mod common;

use burn::backend::Autodiff;
use burn::tensor::{Bool, Tensor, TensorData};
use proptest::prelude::*;
use transformer_baselines::attention::{fused_attention, reference_attention};

use common::B;

/// `[batch, seq]` padding mask from per-row (left, right) padding counts.
fn padding(batch_pads: &[(usize, usize)], seq: usize) -> (Vec<bool>, Tensor<B, 2, Bool>) {
    let mut v = Vec::new();
    for &(left, right) in batch_pads {
        for j in 0..seq {
            v.push(j < left || j >= seq - right);
        }
    }
    let t = Tensor::from_data(
        TensorData::new(v.clone(), [batch_pads.len(), seq]),
        &Default::default(),
    );
    (v, t)
}

/// N(0, 1.5²) values from a local SplitMix64 + Box-Muller stream: independent of the backend's
/// process-global RNG, which the tests running in parallel threads would otherwise race on
/// (two "identical" inputs drawn between another test's reseed and draw differ).
fn random(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
    let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(1e-300), next());
            (1.5 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// softmax(q kᵀ/√d) v with masked keys skipped, one query row at a time, in f64.
fn scalar_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    [b, h, l, d]: [usize; 4],
    pad: &[bool],
    causal: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; b * h * l * d];
    for bi in 0..b {
        for hi in 0..h {
            let base = (bi * h + hi) * l * d;
            for i in 0..l {
                let visible: Vec<usize> = (0..l)
                    .filter(|&j| !(pad[bi * l + j] || (causal && j > i)))
                    .collect();
                if visible.is_empty() {
                    continue; // zero row
                }
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        (0..d)
                            .map(|c| q[base + i * d + c] as f64 * k[base + j * d + c] as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = w.iter().sum();
                for c in 0..d {
                    let acc: f64 = visible
                        .iter()
                        .zip(&w)
                        .map(|(&j, wj)| wj / z * v[base + j * d + c] as f64)
                        .sum();
                    out[base + i * d + c] = acc as f32;
                }
            }
        }
    }
    out
}

fn max_diff(a: Tensor<B, 4>, b: &[f32]) -> f32 {
    let a = a.into_data().to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert!(x.is_finite(), "non-finite output");
            (x - y).abs()
        })
        .fold(0.0, f32::max)
}

fn check_case(
    pads: &[(usize, usize)],
    heads: usize,
    seq: usize,
    dim: usize,
    causal: bool,
    seed: u64,
) {
    let shape = [pads.len(), heads, seq, dim];
    let (q, k, v) = (
        random(shape, seed),
        random(shape, seed + 1),
        random(shape, seed + 2),
    );
    let (pad_vec, pad) = padding(pads, seq);
    let data = |t: &Tensor<B, 4>| t.to_data().to_vec::<f32>().unwrap();
    let expected = scalar_attention(&data(&q), &data(&k), &data(&v), shape, &pad_vec, causal);
    let fused = fused_attention(q.clone(), k.clone(), v.clone(), Some(pad.clone()), causal);
    let reference = reference_attention(q, k, v, Some(pad), causal);
    let e_ref = max_diff(reference.clone(), &expected);
    let e_fused = max_diff(fused, &reference.into_data().to_vec::<f32>().unwrap());
    assert!(
        e_ref < 1e-5,
        "reference vs scalar loop: {e_ref} ({pads:?}, causal {causal})"
    );
    assert!(
        e_fused < 1e-5,
        "fused vs reference: {e_fused} ({pads:?}, causal {causal})"
    );
}

#[test]
fn fused_equals_reference_on_fixed_masks() {
    // Right padding, left padding, none; causal left padding gives rows with no visible key.
    let pads = [(0, 3), (4, 0), (0, 0), (2, 5)];
    check_case(&pads, 3, 9, 8, false, 10);
    check_case(&pads, 3, 9, 8, true, 20);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn fused_equals_reference_on_random_masks(
        seq in 1usize..12,
        heads in 1usize..4,
        dim in prop::sample::select(vec![1usize, 4, 8, 16]),
        raw_pads in prop::collection::vec((0usize..12, 0usize..12), 1..4),
        causal in any::<bool>(),
        seed in 0u64..1000,
    ) {
        // At least one real token per row (left + right < seq).
        let pads: Vec<(usize, usize)> = raw_pads
            .into_iter()
            .map(|(l, r)| { let l = l % seq; (l, r % (seq - l)) })
            .collect();
        check_case(&pads, heads, seq, dim, causal, seed);
    }
}

#[test]
fn gradients_of_fused_and_reference_agree() {
    type A = Autodiff<B>;
    let shape = [2, 2, 7, 4];
    let dev = Default::default();
    let (pad_vec, _) = padding(&[(0, 2), (3, 0)], 7);
    for causal in [false, true] {
        let mut grads_by_path = Vec::new();
        for fused in [true, false] {
            let q = Tensor::<A, 4>::from_inner(random(shape, 1)).require_grad();
            let k = Tensor::<A, 4>::from_inner(random(shape, 2)).require_grad();
            let v = Tensor::<A, 4>::from_inner(random(shape, 3)).require_grad();
            let pad: Tensor<A, 2, Bool> =
                Tensor::from_data(TensorData::new(pad_vec.clone(), [2, 7]), &dev);
            let out = if fused {
                fused_attention(q.clone(), k.clone(), v.clone(), Some(pad), causal)
            } else {
                reference_attention(q.clone(), k.clone(), v.clone(), Some(pad), causal)
            };
            let weights = Tensor::<A, 4>::from_inner(random(shape, 4));
            let grads = (out * weights).sum().backward();
            let g = |t: &Tensor<A, 4>| t.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            grads_by_path.push([g(&q), g(&k), g(&v)]);
        }
        for (name, (a, b)) in ["q", "k", "v"]
            .iter()
            .zip(grads_by_path[0].iter().zip(&grads_by_path[1]))
        {
            let e = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(e < 1e-5, "d{name} (causal {causal}): {e}");
            assert!(a.iter().any(|x| *x != 0.0), "d{name} is zero");
        }
    }
}
