//! Property tests: the fast CPU path equals the tensor-op reference on random shapes and
//! options (forward, and the hand-written backward against Burn's autodiff through the
//! reference); central finite differences on tiny shapes; shape errors name the tensor.

mod common;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Distribution, Tensor, TensorData};
use common::{rel_err, to_vec};
use mamba_ssm::{ScanError, ScanInputs, reference, selective_scan, selective_scan_backward};
use proptest::prelude::*;

type Cpu = NdArray;
type Ad = Autodiff<NdArray>;

#[derive(Debug, Clone)]
struct Spec {
    batch: usize,
    groups: usize,
    per_group: usize,
    len: usize,
    state: usize,
    d: bool,
    z: bool,
    bias: bool,
    softplus: bool,
    seed: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1usize..4,
        1usize..4,
        1usize..4,
        1usize..70,
        1usize..20,
        any::<[bool; 4]>(),
        any::<u64>(),
    )
        .prop_map(
            |(batch, groups, per_group, len, state, [d, z, bias, softplus], seed)| Spec {
                batch,
                groups,
                per_group,
                len,
                state,
                d,
                z,
                bias,
                softplus,
                seed,
            },
        )
}

fn inputs<B: burn::tensor::backend::Backend>(s: &Spec, dev: &B::Device) -> ScanInputs<B> {
    B::seed(dev, s.seed);
    let dim = s.groups * s.per_group;
    let n = |shape: [usize; 3]| Tensor::<B, 3>::random(shape, Distribution::Normal(0.0, 1.0), dev);
    let delta = if s.softplus {
        n([s.batch, dim, s.len]) * 0.5 - 1.0
    } else {
        Tensor::random([s.batch, dim, s.len], Distribution::Uniform(0.0, 0.2), dev)
    };
    let a = -Tensor::<B, 2>::random([dim, s.state], Distribution::Uniform(0.3, 2.0), dev);
    let bc = || {
        Tensor::<B, 4>::random(
            [s.batch, s.groups, s.state, s.len],
            Distribution::Normal(0.0, 1.0),
            dev,
        )
    };
    let mut inp =
        ScanInputs::new(n([s.batch, dim, s.len]), delta, a, bc(), bc()).with_softplus(s.softplus);
    if s.d {
        inp = inp.with_d(Tensor::random([dim], Distribution::Normal(0.0, 1.0), dev));
    }
    if s.z {
        inp = inp.with_z(n([s.batch, dim, s.len]));
    }
    if s.bias {
        // Without softplus the step size is delta + bias itself: keep it non-negative (Mamba's
        // domain; a negative step makes exp(dt A) grow and the state overflow on long L).
        let dist = if s.softplus {
            Distribution::Normal(0.0, 0.3)
        } else {
            Distribution::Uniform(0.0, 0.3)
        };
        inp = inp.with_delta_bias(Tensor::random([dim], dist, dev));
    }
    inp
}

/// Copy inputs between backends (same values).
fn to_ad(inp: &ScanInputs<Cpu>, dev: &burn::backend::ndarray::NdArrayDevice) -> ScanInputs<Ad> {
    fn c<const D: usize>(
        t: &Tensor<Cpu, D>,
        dev: &burn::backend::ndarray::NdArrayDevice,
    ) -> Tensor<Ad, D> {
        Tensor::from_data(t.to_data(), dev).require_grad()
    }
    ScanInputs {
        u: c(&inp.u, dev),
        delta: c(&inp.delta, dev),
        a: c(&inp.a, dev),
        b: c(&inp.b, dev),
        c: c(&inp.c, dev),
        d: inp.d.as_ref().map(|t| c(t, dev)),
        z: inp.z.as_ref().map(|t| c(t, dev)),
        delta_bias: inp.delta_bias.as_ref().map(|t| c(t, dev)),
        delta_softplus: inp.delta_softplus,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fast_path_equals_reference(s in spec()) {
        let dev = Default::default();
        let inp = inputs::<Cpu>(&s, &dev);
        let fast = selective_scan(inp.clone(), true).unwrap();
        let slow = reference::selective_scan(inp.clone(), true);
        prop_assert!(rel_err(&to_vec(fast.y), &to_vec(slow.y.clone())) < 1e-5);
        prop_assert!(rel_err(&to_vec(fast.last_state.unwrap()), &to_vec(slow.last_state.unwrap())) < 1e-5);

        // hand-written backward vs Burn's autodiff through the reference
        let dy = Tensor::<Cpu, 3>::random(slow.y.dims(), Distribution::Normal(0.0, 1.0), &dev);
        let g = selective_scan_backward(inp.clone(), dy.clone()).unwrap();
        let ad = to_ad(&inp, &dev);
        let y = reference::selective_scan(ad.clone(), false).y;
        let grads = (y * Tensor::<Ad, 3>::from_data(dy.to_data(), &dev)).sum().backward();
        let pairs: Vec<(&str, Vec<f32>, Vec<f32>)> = vec![
            ("u", to_vec(g.du), to_vec(ad.u.grad(&grads).unwrap())),
            ("delta", to_vec(g.ddelta), to_vec(ad.delta.grad(&grads).unwrap())),
            ("A", to_vec(g.da), to_vec(ad.a.grad(&grads).unwrap())),
            ("B", to_vec(g.db), to_vec(ad.b.grad(&grads).unwrap())),
            ("C", to_vec(g.dc), to_vec(ad.c.grad(&grads).unwrap())),
        ];
        for (k, got, want) in pairs {
            let e = rel_err(&got, &want);
            prop_assert!(e < 2e-5, "grad {} rel err {:e} for {:?}", k, e, s);
        }
        if let (Some(gd), Some(d)) = (g.dd, ad.d.as_ref()) {
            prop_assert!(rel_err(&to_vec(gd), &to_vec(d.grad(&grads).unwrap())) < 2e-5);
        }
        if let (Some(gz), Some(z)) = (g.dz, ad.z.as_ref()) {
            prop_assert!(rel_err(&to_vec(gz), &to_vec(z.grad(&grads).unwrap())) < 2e-5);
        }
        if let (Some(gb), Some(b)) = (g.ddelta_bias, ad.delta_bias.as_ref()) {
            // d bias = sum over batch and L of d delta: the sum can cancel to far below its
            // terms, so its error is measured against the terms' scale, not the sum's.
            let terms = to_vec(ad.delta.grad(&grads).unwrap());
            let scale = terms.iter().fold(0f32, |m, x| m.max(x.abs()));
            let (got, want) = (to_vec(gb), to_vec(b.grad(&grads).unwrap()));
            let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let rel = err / scale.max(want.iter().fold(0f32, |m, x| m.max(x.abs()))).max(1e-30);
            prop_assert!(rel < 2e-5, "grad delta_bias rel err {:e} for {:?}", rel, s);
        }
    }
}

/// Central finite differences of loss = sum(y * w) computed by the fast path itself (f32),
/// against the hand-written backward, at every entry of tiny inputs.
#[test]
fn finite_differences_agree_with_backward() {
    let dev = Default::default();
    let s = Spec {
        batch: 2,
        groups: 2,
        per_group: 1,
        len: 5,
        state: 3,
        d: true,
        z: true,
        bias: true,
        softplus: true,
        seed: 3,
    };
    let inp = inputs::<Cpu>(&s, &dev);
    let w = Tensor::<Cpu, 3>::random([2, 2, 5], Distribution::Normal(0.0, 1.0), &dev);
    let loss = |inp: ScanInputs<Cpu>| -> f64 {
        let y = selective_scan(inp, false).unwrap().y;
        to_vec(y)
            .iter()
            .zip(to_vec(w.clone()))
            .map(|(a, b)| *a as f64 * b as f64)
            .sum()
    };
    let g = selective_scan_backward(inp.clone(), w.clone()).unwrap();
    let eps = 1e-2f32;
    let mut worst = 0.0f64;
    // perturb each entry of each input in turn
    macro_rules! probe {
        ($field:ident, $grad:expr, $d:literal) => {{
            let base: Tensor<Cpu, $d> = inp.$field.clone().into();
            let shape = base.dims();
            let vals = to_vec(base);
            let grad = to_vec($grad);
            for i in 0..vals.len() {
                let mut plus = vals.clone();
                plus[i] += eps;
                let mut minus = vals.clone();
                minus[i] -= eps;
                let mut ip = inp.clone();
                ip.$field = Tensor::from_data(TensorData::new(plus, shape), &dev).into();
                let mut im = inp.clone();
                im.$field = Tensor::from_data(TensorData::new(minus, shape), &dev).into();
                let fd = (loss(ip) - loss(im)) / (2.0 * eps as f64);
                let err = (fd - grad[i] as f64).abs() / (1.0 + fd.abs());
                worst = worst.max(err);
                assert!(
                    err < 5e-3,
                    "{} [{i}]: finite difference {fd} vs backward {}",
                    stringify!($field),
                    grad[i]
                );
            }
        }};
    }
    probe!(u, g.du.clone(), 3);
    probe!(delta, g.ddelta.clone(), 3);
    probe!(a, g.da.clone(), 2);
    probe!(b, g.db.clone(), 4);
    probe!(c, g.dc.clone(), 4);
    eprintln!("worst finite-difference error {worst:e}");
}

#[test]
fn bad_shapes_are_errors_naming_the_tensor() {
    let dev = Default::default();
    let s = Spec {
        batch: 2,
        groups: 2,
        per_group: 2,
        len: 6,
        state: 3,
        d: false,
        z: false,
        bias: false,
        softplus: false,
        seed: 1,
    };
    let good = inputs::<Cpu>(&s, &dev);
    let mut bad = good.clone();
    bad.a = Tensor::zeros([4, 5], &dev);
    assert!(matches!(
        selective_scan(bad, false),
        Err(ScanError::Shape { tensor: "A", .. })
    ));
    let mut bad = good.clone();
    bad.c = Tensor::zeros([2, 2, 3, 7], &dev);
    let e = selective_scan(bad, false).unwrap_err();
    assert!(e.to_string().contains("C has shape [2, 2, 3, 7]"), "{e}");
    let mut bad = good.clone();
    bad.b = Tensor::zeros([2, 3, 3, 6], &dev);
    bad.c = Tensor::zeros([2, 3, 3, 6], &dev);
    assert!(matches!(
        selective_scan(bad, false),
        Err(ScanError::Groups { groups: 3, dim: 4 })
    ));
    let bad = good.clone().with_d(Tensor::zeros([3], &dev));
    assert!(matches!(
        selective_scan(bad, false),
        Err(ScanError::Shape { tensor: "D", .. })
    ));
    let bad = good.clone().with_z(Tensor::zeros([2, 4, 5], &dev));
    assert!(matches!(
        selective_scan(bad, false),
        Err(ScanError::Shape { tensor: "z", .. })
    ));
    let dy = Tensor::zeros([2, 4, 5], &dev);
    assert!(matches!(
        selective_scan_backward(good, dy),
        Err(ScanError::Shape { tensor: "dy", .. })
    ));
}

/// Non-contiguous views (a transposed u) and an f64 NdArray take the copying path and give
/// the same result as the reference.
#[test]
fn strided_and_f64_inputs() {
    let dev = Default::default();
    let s = Spec {
        batch: 2,
        groups: 1,
        per_group: 5,
        len: 9,
        state: 4,
        d: true,
        z: true,
        bias: true,
        softplus: true,
        seed: 9,
    };
    let mut inp = inputs::<Cpu>(&s, &dev);
    let u_t = Tensor::<Cpu, 3>::random([2, 9, 5], Distribution::Normal(0.0, 1.0), &dev);
    inp.u = u_t.swap_dims(1, 2); // [2, 5, 9], strided
    let fast = selective_scan(inp.clone(), true).unwrap();
    let slow = reference::selective_scan(inp.clone(), true);
    assert!(rel_err(&to_vec(fast.y.clone()), &to_vec(slow.y)) < 1e-5);

    type F64 = NdArray<f64>;
    fn c<const D: usize>(t: &Tensor<Cpu, D>) -> Tensor<F64, D> {
        let dev = Default::default();
        Tensor::from_data(
            t.to_data().convert::<f64>(),
            (&dev, burn::tensor::DType::F64),
        )
    }
    let inp64 = ScanInputs::<F64> {
        u: c(&inp.u),
        delta: c(&inp.delta),
        a: c(&inp.a),
        b: c(&inp.b),
        c: c(&inp.c),
        d: inp.d.as_ref().map(c),
        z: inp.z.as_ref().map(c),
        delta_bias: inp.delta_bias.as_ref().map(c),
        delta_softplus: true,
    };
    assert_eq!(inp64.u.dtype(), burn::tensor::DType::F64);
    let y64 = selective_scan(inp64, false).unwrap().y;
    assert_eq!(y64.dtype(), burn::tensor::DType::F64);
    assert!(rel_err(&to_vec(y64), &to_vec(fast.y)) < 1e-6);
}
