//! Flash-attention checks: random cases, and the float64 reference they are held to, Burn's
//! autodiff of the matmul-softmax reference (`reference_attention`) on `NdArray<f64>`.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Bool, Tensor, TensorData};
use transformer_baselines::attention::reference_attention;

type R = Autodiff<NdArray<f64>>;

/// One attention problem: sizes, per-row (left, right) key padding (empty: no mask), causal.
#[derive(Debug, Clone)]
pub struct Case {
    pub batch: usize,
    pub heads: usize,
    pub len_q: usize,
    pub len_k: usize,
    pub dim: usize,
    pub pads: Vec<(usize, usize)>,
    pub causal: bool,
}

impl Case {
    pub fn q_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.len_q, self.dim]
    }
    pub fn k_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.len_k, self.dim]
    }
    /// The `[batch, len_k]` padding mask (`true` = padding), when the case has one.
    pub fn padding(&self) -> Option<(Vec<bool>, [usize; 2])> {
        (!self.pads.is_empty()).then(|| {
            let v = self
                .pads
                .iter()
                .flat_map(|&(l, r)| (0..self.len_k).map(move |j| j < l || j >= self.len_k - r))
                .collect();
            (v, [self.batch, self.len_k])
        })
    }
}

/// The cases of the kernel tests: odd lengths (1, 7, 129, 257, 513), head dims 32 / 64 / 128,
/// right, left and no padding, rows that see no key (left padding under the causal mask), and a
/// cross-attention shape (`len_q != len_k`); each causal and not. (Lavapipe returns wrong
/// results for the rolled-loop kernels when a unit runs more than about 34,000 inner
/// iterations, e.g. length 513 at head dim 64, while the unrolled kernels are right there:
/// the long cases keep below that; docs/lab/flash-attention-notes.md.)
pub fn cases() -> Vec<Case> {
    let base = [
        (2, 2, 1, 1, 32, vec![]),
        (2, 3, 7, 7, 64, vec![(0, 3), (2, 0)]),
        (1, 2, 129, 129, 32, vec![(0, 40)]),
        (2, 1, 129, 129, 128, vec![(5, 0), (0, 0)]),
        (1, 1, 257, 257, 64, vec![(0, 100)]),
        (1, 2, 513, 513, 32, vec![(0, 100)]),
        (2, 2, 7, 33, 32, vec![(0, 4), (9, 0)]),
    ];
    base.into_iter()
        .flat_map(|(batch, heads, len_q, len_k, dim, pads)| {
            [false, true].map(|causal| Case {
                batch,
                heads,
                len_q,
                len_k,
                dim,
                pads: pads.clone(),
                causal,
            })
        })
        .collect()
}

/// N(0, 1) values from a SplitMix64 + Box-Muller stream (independent of any backend RNG).
pub fn normal(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut uniform = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform().max(1e-300), uniform());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

/// A case's inputs: q, k, v, and the weights `w` of the loss `sum(o * w)` (so dLoss/do = w).
pub struct Inputs {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub w: Vec<f32>,
}

pub fn inputs(case: &Case, seed: u64) -> Inputs {
    let nq: usize = case.q_shape().iter().product();
    let nk: usize = case.k_shape().iter().product();
    // scores of a few units: softmax rows neither uniform nor one-hot
    let scaled = |v: Vec<f32>| v.into_iter().map(|x| 1.5 * x).collect();
    Inputs {
        q: scaled(normal(nq, seed)),
        k: scaled(normal(nk, seed + 1)),
        v: normal(nk, seed + 2),
        w: normal(nq, seed + 3),
    }
}

/// The output and the gradients of `sum(o * w)` with respect to q, k, v, in float64.
pub struct Expected {
    pub o: Vec<f64>,
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
}

/// The float64 reference of `case` on inputs passed through `round` (the storage type's
/// rounding, so that a half-precision kernel is held to the inputs it actually saw).
pub fn reference(case: &Case, x: &Inputs, round: fn(f32) -> f32) -> Expected {
    let dev = Default::default();
    let t = |v: &[f32], shape: [usize; 4]| {
        let v: Vec<f64> = v.iter().map(|&a| round(a) as f64).collect();
        Tensor::<R, 4>::from_data(TensorData::new(v, shape), &dev).require_grad()
    };
    let (q, k, v) = (
        t(&x.q, case.q_shape()),
        t(&x.k, case.k_shape()),
        t(&x.v, case.k_shape()),
    );
    let w = Tensor::<R, 4>::from_data(
        TensorData::new(
            x.w.iter().map(|&a| a as f64).collect::<Vec<_>>(),
            case.q_shape(),
        ),
        &dev,
    );
    let pad = case
        .padding()
        .map(|(v, s)| Tensor::<R, 2, Bool>::from_data(TensorData::new(v, s), &dev));
    let o = reference_attention(q.clone(), k.clone(), v.clone(), pad, case.causal);
    let grads = (o.clone() * w).sum().backward();
    let host = |t: Tensor<NdArray<f64>, 4>| t.into_data().to_vec::<f64>().unwrap();
    Expected {
        o: host(o.inner()),
        dq: host(q.grad(&grads).unwrap()),
        dk: host(k.grad(&grads).unwrap()),
        dv: host(v.grad(&grads).unwrap()),
    }
}

/// `max |got - want| / scale`, the scale being the largest `|want|` but at least 0.1 (the
/// inputs are of order 1; a gradient that is exactly zero, as `dq` with one key, is held to
/// float rounding of that order), after checking that every value was written (finite: the
/// kernels' outputs start as NaN under `poison_outputs`).
pub fn rel_err(what: &str, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().position(|x| !x.is_finite()) {
        panic!("{what}: element {i} is {} (never written?)", got[i]);
    }
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(0.1);
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
    diff / scale
}

/// What a run returned: o, dq, dk, dv as f32.
pub struct Got {
    pub o: Vec<f32>,
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
}

/// `case` through [`flash_attention_with_config`] on the autodiff backend `B`, inputs stored
/// in `dtype`; the mask as a padding mask, or as lengths (`lengths`, right padding only); the
/// gradients of `sum(o * w)`.
pub fn run<B>(
    case: &Case,
    x: &Inputs,
    dtype: burn::tensor::DType,
    config: &transformer_baselines::FlashConfig,
    lengths: bool,
) -> Got
where
    B: burn::tensor::backend::AutodiffBackend + transformer_baselines::FlashAttentionBackend,
{
    use burn::tensor::{DType, Int};
    use transformer_baselines::KeyMask;
    use transformer_baselines::attention::flash_attention_with_config;
    let dev = Default::default();
    let t = |v: &[f32], shape: [usize; 4]| {
        Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), shape), &dev)
            .cast(dtype)
            .require_grad()
    };
    let (q, k, v) = (
        t(&x.q, case.q_shape()),
        t(&x.k, case.k_shape()),
        t(&x.v, case.k_shape()),
    );
    let mask = case.padding().map(|(pad, shape)| {
        if lengths {
            let lens: Vec<i64> = case
                .pads
                .iter()
                .map(|&(l, r)| {
                    assert_eq!(l, 0, "lengths describe right padding only");
                    (case.len_k - r) as i64
                })
                .collect();
            KeyMask::Lengths(Tensor::<B, 1, Int>::from_data(
                TensorData::new(lens, [case.batch]),
                &dev,
            ))
        } else {
            KeyMask::Padding(Tensor::from_data(TensorData::new(pad, shape), &dev))
        }
    });
    let o = flash_attention_with_config(q.clone(), k.clone(), v.clone(), mask, case.causal, config)
        .expect("valid shapes");
    assert_eq!(o.dtype(), dtype, "the output keeps the inputs' dtype");
    let w = Tensor::<B, 4>::from_data(TensorData::new(x.w.clone(), case.q_shape()), &dev)
        .cast(DType::F32);
    let grads = (o.clone().cast(DType::F32) * w).sum().backward();
    let host = |t: Tensor<B::InnerBackend, 4>| {
        assert_eq!(t.dtype(), dtype, "gradients keep the inputs' dtype");
        t.cast(DType::F32).into_data().to_vec::<f32>().unwrap()
    };
    Got {
        o: host(o.inner()),
        dq: host(q.grad(&grads).expect("dq")),
        dk: host(k.grad(&grads).expect("dk")),
        dv: host(v.grad(&grads).expect("dv")),
    }
}

/// Checks a run against the reference: every tensor within `tol` of the values' scale.
pub fn check(what: &str, got: &Got, want: &Expected, tol: f64) {
    for (name, g, w) in [
        ("o", &got.o, &want.o),
        ("dq", &got.dq, &want.dq),
        ("dk", &got.dk, &want.dk),
        ("dv", &got.dv, &want.dv),
    ] {
        let e = rel_err(&format!("{what} {name}"), g, w);
        assert!(
            e < tol,
            "{what}: {name} off by {e:.2e} of its scale (tolerance {tol:.0e})"
        );
    }
}
