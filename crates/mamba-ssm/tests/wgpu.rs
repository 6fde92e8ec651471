//! The cubecl kernel on wgpu (in CI: Mesa's lavapipe, a Vulkan device on the CPU, plane width
//! 8), both cube-scan paths (plane shuffles and shared memory only), against the PyTorch
//! float64 fixtures. Run with `cargo test -p mamba-ssm --features wgpu --test wgpu`, and with
//! `--features wgpu,fusion` for the same tests through Burn's `Fusion` wrapper.
#![cfg(feature = "wgpu")]

mod common;
use burn::backend::{Autodiff, Wgpu};
use burn::tensor::Tensor;
use common::*;
use mamba_ssm::kernel::{KernelConfig, LaunchCounter, ScanKernel};
use mamba_ssm::{selective_scan, selective_scan_with_config};

/// (plane shuffles, launch (steps per unit, largest units per channel): `None` is the default,
/// (2, 16) small cubes so that long cases span many chunks, 8 units = one plane of lavapipe per
/// channel (the shuffle-only scans), channels per cube: `None` is the default, 3 leaves a
/// partial last cube when d_inner / G is not a multiple of 3 and puts several channels of a
/// group in one cube).
type Launch = Option<(usize, usize)>;
const SMALL: Launch = Some((2, 16));
const CONFIGS: [(bool, Launch, Option<usize>); 11] = [
    (false, None, None),
    (true, None, None),
    (false, SMALL, None),
    (true, SMALL, None),
    (false, None, Some(1)),
    (true, SMALL, Some(1)),
    (false, SMALL, Some(3)),
    (true, SMALL, Some(3)),
    (true, Some((4, 8)), None),
    (true, Some((16, 8)), Some(3)),
    (true, Some((8, 8)), Some(1)),
];

/// `base` with one entry of [`CONFIGS`]: the cube scans, the launch shape of every kernel and
/// the channels per cube of both directions.
fn with_launch(
    base: &KernelConfig,
    (plane, small, chans): (bool, Launch, Option<usize>),
) -> KernelConfig {
    KernelConfig {
        plane: Some(plane),
        ..base.clone()
    }
    .with_items(small.map(|l| l.0))
    .with_max_units(small.map(|l| l.1))
    .with_channels_per_cube(chans, chans)
}

#[test]
fn forward_kernel_matches_pytorch_float64_on_both_scan_paths() {
    let dev = Default::default();
    // with the `fusion` feature, Burn's Wgpu is Fusion<CubeBackend>: the Fusion impl is tested
    let name = <Wgpu as burn::tensor::backend::Backend>::name(&dev);
    assert_eq!(name.contains("fusion"), cfg!(feature = "fusion"), "{name}");
    eprintln!("backend: {name}");
    // one state per pass, then two (where the launch is one plane per channel)
    let pairs = CONFIGS.iter().map(|&c| (c, false));
    for ((mode, small, chans), pair) in pairs.chain(CONFIGS.iter().map(|&c| (c, true))) {
        // the scalar forward kernel (the vectorised one has its own test below)
        let base = KernelConfig {
            vec_forward: false,
            pair_states: Some(pair),
            ..KernelConfig::default()
        };
        let cfg = with_launch(&base, (mode, small, chans));
        for name in CASES {
            let case = load(name);
            let inp = case.inputs::<Wgpu>(&dev, |t| t);
            let out = selective_scan_with_config(inp, true, &cfg).unwrap();
            let e = rel_err(&to_vec(out.y), case.vec("y"));
            assert!(
                e < 1e-5,
                "plane={mode} small={small:?} chans={chans:?} pair={pair} {name}: y rel err {e:e}"
            );
            let e = rel_err(&to_vec(out.last_state.unwrap()), case.vec("last_state"));
            assert!(
                e < 1e-5,
                "plane={mode} small={small:?} chans={chans:?} pair={pair} {name}: last state \
                 rel err {e:e}"
            );
        }
    }
}

/// The backward kernel through `Autodiff<Wgpu>`: every gradient against the fixtures, with
/// the chunk-start states saved by the training forward (the default) and, for the
/// multi-chunk launches, recomputed by the backward's first pass.
#[test]
fn backward_kernel_matches_pytorch_float64_on_both_scan_paths() {
    check_backward(false);
}

/// The same for the backward's `fold` gradient loop (the default; the test above runs the
/// plain loop).
#[test]
fn backward_fold_kernel_matches_pytorch_float64_on_both_scan_paths() {
    check_backward(true);
}

/// Every config of [`CONFIGS`] (saved states, then the multi-chunk ones recomputed) with the
/// default backward loop or `fold`.
fn check_backward(fold: bool) {
    type Ad = Autodiff<Wgpu>;
    let dev = Default::default();
    let unsaved = CONFIGS
        .iter()
        .filter(|c| c.1.is_some())
        .map(|&c| (c, false));
    for ((mode, small, chans), save) in CONFIGS.iter().map(|&c| (c, true)).chain(unsaved) {
        let base = KernelConfig {
            backward_fold: fold,
            // the scalar kernels here (the vectorised ones have their own tests)
            vec_forward: false,
            vec_backward: false,
            save_states: save,
            // the saved states then come from the two-states-per-pass forward where it applies
            pair_states: Some(save),
            ..KernelConfig::default()
        };
        let cfg = with_launch(&base, (mode, small, chans));
        for name in CASES {
            let case = load(name);
            let inp = case.tracked_inputs::<Ad>(&dev);
            // through `Autodiff`, the backward runs with the forward's config
            let y = selective_scan_with_config(inp.clone(), false, &cfg)
                .unwrap()
                .y;
            let dy: Tensor<Ad, 3> = tensor(&case, "dy", &dev);
            let grads = (y * dy).sum().backward();
            let checks = input_grads(&inp, &grads);
            for (k, got) in checks {
                let e = rel_err(&got, case.vec(&format!("grad_{k}")));
                assert!(
                    e < 1e-5,
                    "plane={mode} small={small:?} chans={chans:?} save={save} fold={fold} {name}: \
                     grad {k} rel err {e:e}"
                );
            }
        }
    }
}

/// f16 activations (u, delta, z) with f32 weights (A, B, C, D, delta_bias): the kernels read
/// the per-step inputs (delta, z, B, C) in u's storage type, so the wrapper casts B and C,
/// and A, D and delta_bias as f32; the output is f16 and each gradient comes back in its
/// input's dtype. Skipped where the device has no f16.
#[test]
fn mixed_dtypes_follow_the_activations_with_f32_weights() {
    use burn::tensor::DType;
    type Ad = Autodiff<Wgpu>;
    let dev = Default::default();
    if !<Wgpu as burn::tensor::backend::Backend>::supports_dtype(&dev, DType::F16) {
        eprintln!("no f16 on this device: skipped");
        return;
    }
    let h = DType::F16;
    let case = load("g2_n16_all");
    let mut inp = case.inputs::<Ad>(&dev, |t| t.cast(h).require_grad());
    inp.a = inp.a.require_grad();
    inp.b = inp.b.require_grad();
    let y = selective_scan(inp.clone(), false).unwrap().y;
    assert_eq!(y.dtype(), h);
    let e = rel_err(&to_vec(y.clone()), case.vec("y"));
    assert!(e < 1e-2, "y rel err {e:e}");
    let dy: Tensor<Ad, 3> = tensor(&case, "dy", &dev);
    let grads = (y.cast(DType::F32) * dy).sum().backward();
    let checks = [
        ("u", inp.u.grad(&grads).unwrap(), h),
        (
            "A",
            inp.a.grad(&grads).unwrap().reshape([0, 0, 1]),
            DType::F32,
        ),
    ];
    for (k, g, dtype) in checks {
        assert_eq!(g.dtype(), dtype, "grad {k}");
        let e = rel_err(&to_vec(g), case.vec(&format!("grad_{k}")));
        assert!(e < 2e-2, "grad {k} rel err {e:e}");
    }
    let gb = inp.b.grad(&grads).unwrap();
    assert_eq!(gb.dtype(), DType::F32);
    let e = rel_err(&to_vec(gb), case.vec("grad_B"));
    assert!(e < 2e-2, "grad B rel err {e:e}");
}

/// The training forward saves the chunk-start states when the sequence spans several backward
/// chunks, with the length announced by `selective_scan_saved_len` (what `Fusion` declares),
/// and nothing when it fits one chunk or saving is off.
#[test]
fn training_forward_saves_chunk_start_states() {
    use mamba_ssm::{Dims, ScanInputs, SelectiveScanBackend};
    let dev = Default::default();
    for (len, save) in [(300, true), (20, true), (300, false)] {
        let cfg = KernelConfig {
            plane: Some(true),
            save_states: save,
            ..KernelConfig::default()
        }
        .with_items(Some(2))
        .with_max_units(Some(16));
        let (batch, dim, state) = (2, 6, 4);
        let inp = ScanInputs::<Wgpu>::random([batch, dim, len, state], &dev);
        let dims = Dims {
            batch,
            dim,
            len,
            state,
            groups: 1,
        };
        let want = <Wgpu as SelectiveScanBackend>::selective_scan_saved_len_with_config(
            &dev,
            dims,
            inp.u.dtype(),
            &cfg,
        );
        let (out, saved) =
            <Wgpu as SelectiveScanBackend>::selective_scan_train_with_config(inp, false, &cfg);
        assert_eq!(want.is_some(), save && len == 300, "len {len} save {save}");
        assert_eq!(
            saved.as_ref().map(|t| t.dims()[0]),
            want,
            "len {len} save {save}"
        );
        // read the outputs (through `Fusion`, the forward runs now: with the states declared)
        let _ = (to_vec(out.y), saved.map(to_vec));
    }
}

/// Random inputs `[batch, d_inner, L]`, N states, G groups (seeded), on NdArray and on Wgpu.
/// The seed also picks the optional parts: D when even, z unless a multiple of 3, delta_bias
/// unless 1 mod 4, softplus unless a multiple of 5.
fn random_pair(
    [batch, dim, len, n, groups]: [usize; 5],
    seed: u64,
) -> (
    mamba_ssm::ScanInputs<burn::backend::NdArray>,
    mamba_ssm::ScanInputs<Wgpu>,
) {
    use burn::backend::NdArray;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut data = |shape: Vec<usize>, lo: f32, hi: f32| {
        let len: usize = shape.iter().product();
        let v: Vec<f32> = (0..len).map(|_| rng.random_range(lo..hi)).collect();
        TensorData::new(v, shape)
    };
    let u = data(vec![batch, dim, len], -1.0, 1.0);
    let delta = data(vec![batch, dim, len], -3.0, 0.5);
    let a = data(vec![dim, n], -6.0, -0.5);
    let b = data(vec![batch, groups, n, len], -1.0, 1.0);
    let c = data(vec![batch, groups, n, len], -1.0, 1.0);
    let d = data(vec![dim], -1.0, 1.0);
    let z = data(vec![batch, dim, len], -2.0, 2.0);
    let bias = data(vec![dim], -0.2, 0.2);
    let opts = [
        seed.is_multiple_of(2),
        !seed.is_multiple_of(3),
        seed % 4 != 1,
        !seed.is_multiple_of(5),
    ];
    // without softplus delta is the step itself: positive and small (mapped from the same
    // draws to [0.01, 0.29]); a negative step grows the state by exp(|dt A|) per step, and
    // the CPU and GPU outputs then overflow alike (which `rel_err`, counting NaN as infinite,
    // rejects: such cases were vacuous before it did)
    let delta = if opts[3] {
        delta
    } else {
        let v: Vec<f32> = delta.to_vec::<f32>().unwrap();
        let v: Vec<f32> = v.iter().map(|x| 0.01 + (x + 3.0) * 0.08).collect();
        TensorData::new(v, delta.shape.clone())
    };
    fn build<B: burn::tensor::backend::Backend>(
        t: [&TensorData; 8],
        [with_d, with_z, with_bias, softplus]: [bool; 4],
        dev: &B::Device,
    ) -> mamba_ssm::ScanInputs<B> {
        let mut inp = mamba_ssm::ScanInputs::new(
            Tensor::from_data(t[0].clone(), dev),
            Tensor::from_data(t[1].clone(), dev),
            Tensor::from_data(t[2].clone(), dev),
            Tensor::from_data(t[3].clone(), dev),
            Tensor::from_data(t[4].clone(), dev),
        )
        .with_softplus(softplus);
        if with_d {
            inp = inp.with_d(Tensor::from_data(t[5].clone(), dev));
        }
        if with_z {
            inp = inp.with_z(Tensor::from_data(t[6].clone(), dev));
        }
        if with_bias {
            inp = inp.with_delta_bias(Tensor::from_data(t[7].clone(), dev));
        }
        inp
    }
    let all = [&u, &delta, &a, &b, &c, &d, &z, &bias];
    (
        build::<NdArray>(all, opts, &Default::default()),
        build::<Wgpu>(all, opts, &Default::default()),
    )
}

/// The vectorised forward (one plane per channel, vector loads, no barrier): against the
/// fixtures whose L is a multiple of the vector width (4 on wgpu; the others run the scalar
/// kernel), then against the CPU scan on random inputs whose shapes exercise a partial last
/// vector run (L not a multiple of a unit's steps), 3+ chunks, N 1 to 64, G 2, d_inner not a
/// multiple of the channels per cube, one and several steps per vector run, with and without
/// the B prefetch; then the gradients of `Autodiff` from its saved chunk-start states.
#[test]
fn vectorised_forward_matches_fixtures_and_the_cpu_scan() {
    let dev = Default::default();
    let counter = LaunchCounter::new();
    let vec_forward_launches = || counter.launches(ScanKernel::VecForward);
    let base = KernelConfig {
        // unwritten output elements show as NaN (and fail `rel_err`)
        scan_poison: true,
        plane: Some(true),
        vec_forward: true,
        launch_counter: Some(counter.clone()),
        ..KernelConfig::default()
    };
    let before = vec_forward_launches();
    for name in ["l1000_n16", "ungrouped_n4"] {
        let case = load(name);
        let out =
            selective_scan_with_config(case.inputs::<Wgpu>(&dev, |t| t), true, &base).unwrap();
        let e = rel_err(&to_vec(out.y), case.vec("y"));
        assert!(e < 1e-5, "{name}: y rel err {e:e}");
        let e = rel_err(&to_vec(out.last_state.unwrap()), case.vec("last_state"));
        assert!(e < 1e-5, "{name}: last state rel err {e:e}");
    }
    assert_eq!(
        vec_forward_launches(),
        before + 2,
        "the fixtures ran the scalar kernel"
    );
    let shapes = [
        [2, 6, 4, 4, 1],
        [1, 5, 100, 16, 1],
        [2, 8, 200, 1, 2],
        [1, 3, 264, 64, 1],
        [3, 7, 36, 4, 1],
        [1, 6, 12, 4, 3],
    ];
    let mut seed = 0;
    // (steps per unit, planes per cube, B prefetch, largest segment): by default short L
    // gets segments shorter than the plane (8 lanes on lavapipe: L 4 and 12 one or two
    // units per channel; with 16 steps per unit L 36 gets four); the caps also split long L
    // into many short chunks
    for (items, chans, prefetch, seg) in [
        (None, None, false, None),
        (Some(4), Some(3), true, None),
        (Some(8), Some(1), false, None),
        (Some(16), Some(4), true, None),
        (None, None, true, Some(1)),
        (Some(4), Some(2), false, Some(2)),
        (None, Some(3), true, Some(4)),
    ] {
        let cfg = KernelConfig {
            vec_prefetch: Some(prefetch),
            ..base.clone()
        }
        .with_items(items)
        .with_channels_per_cube(chans, chans)
        .with_vec_segment(seg, seg);
        for shape in shapes {
            seed += 1;
            let (cpu, gpu) = random_pair(shape, seed);
            let want = selective_scan(cpu, true).unwrap();
            let before = vec_forward_launches();
            let got = selective_scan_with_config(gpu, true, &cfg).unwrap();
            let ctx = format!(
                "{shape:?} items {items:?} chans {chans:?} prefetch {prefetch} seg {seg:?}"
            );
            // the fp32 bound of the device check against PyTorch (the no-softplus cases, real
            // since their steps are positive, reach 1.3e-5 at N 64, L 264: sums of 64 states
            // of 264 steps in f32 on both sides)
            let e = rel_err(&to_vec(got.y), &to_vec(want.y));
            assert!(e < 1e-4, "{ctx}: y rel err {e:e}");
            let e = rel_err(
                &to_vec(got.last_state.unwrap()),
                &to_vec(want.last_state.unwrap()),
            );
            assert!(e < 1e-4, "{ctx}: last state rel err {e:e}");
            // counted once the outputs are read (through `Fusion` the launch is lazy)
            assert_eq!(
                vec_forward_launches(),
                before + 1,
                "{ctx}: scalar kernel ran"
            );
        }
    }
    // the B prefetch of the last launch above stays on below
    let base = KernelConfig {
        vec_prefetch: Some(true),
        ..base
    };
    // f16 activations and B, C (f32 weights) against the CPU scan on the same rounded values
    use burn::tensor::DType;
    if <Wgpu as burn::tensor::backend::Backend>::supports_dtype(&dev, DType::F16) {
        let (cpu, gpu) = random_pair([2, 6, 200, 16, 2], 99);
        let h = DType::F16;
        // NdArray has no f16: round on the host
        fn rounded<const D: usize>(
            t: Tensor<burn::backend::NdArray, D>,
        ) -> Tensor<burn::backend::NdArray, D> {
            let data = t.into_data().convert::<burn::tensor::f16>();
            Tensor::from_data(data.convert::<f32>(), &Default::default())
        }
        let round = rounded::<3>;
        let round4 = rounded::<4>;
        let cpu = mamba_ssm::ScanInputs {
            u: round(cpu.u),
            delta: round(cpu.delta),
            z: cpu.z.map(round),
            b: round4(cpu.b),
            c: round4(cpu.c),
            ..cpu
        };
        let gpu = mamba_ssm::ScanInputs {
            u: gpu.u.cast(h),
            delta: gpu.delta.cast(h),
            z: gpu.z.map(|t| t.cast(h)),
            b: gpu.b.cast(h),
            c: gpu.c.cast(h),
            ..gpu
        };
        let want = selective_scan(cpu, false).unwrap();
        let before = vec_forward_launches();
        let got = selective_scan_with_config(gpu, false, &base).unwrap();
        assert_eq!(got.y.dtype(), h);
        let e = rel_err(&to_vec(got.y.cast(DType::F32)), &to_vec(want.y));
        assert!(e < 1e-2, "f16: y rel err {e:e}");
        assert_eq!(vec_forward_launches(), before + 1, "f16: scalar kernel ran");
    }
    // training: the saved chunk-start states come from the vectorised forward (the backward
    // is the vectorised one too here; its own test covers it in detail)
    let cfg = KernelConfig {
        save_states: true,
        vec_backward: true,
        ..base
    }
    .with_items(Some(4))
    .with_max_units(Some(16));
    type Ad = Autodiff<Wgpu>;
    let case = load("l1000_n16");
    let inp = case.tracked_inputs::<Ad>(&dev);
    let before = vec_forward_launches();
    let y = selective_scan_with_config(inp.clone(), false, &cfg)
        .unwrap()
        .y;
    let dy: Tensor<Ad, 3> = tensor(&case, "dy", &dev);
    let grads = (y * dy).sum().backward();
    for (k, g) in input_grads(&inp, &grads) {
        let e = rel_err(&g, case.vec(&format!("grad_{k}")));
        assert!(e < 1e-4, "grad {k} rel err {e:e}");
    }
    // counted once the gradients are read (through `Fusion` the launch is lazy)
    assert_eq!(
        vec_forward_launches(),
        before + 1,
        "training: scalar kernel ran"
    );
}

/// The vectorised backward ([`KernelConfig::vec_backward`]): every gradient against the CPU scan's
/// backward on random inputs (shapes as for the vectorised forward, several chunks; by
/// default up to L 512 two planes per cube with their dB / dC terms summed in shared memory
/// before the atomics, segments of 1-2 lanes at L 4 and 12, batch-order cubes at L 520 with
/// batch 2; the caps cover segments of 1-4 lanes on long L), with the
/// chunk-start states saved by the training forward and recomputed by its first pass; then
/// through `Autodiff` against the PyTorch fixtures whose L fits the vector width.
#[test]
fn vectorised_backward_matches_the_cpu_backward_and_fixtures() {
    use mamba_ssm::{
        ScanGrads, SelectiveScanBackend, selective_scan_backward,
        selective_scan_backward_with_config,
    };
    let dev = Default::default();
    let counter = LaunchCounter::new();
    let vec_backward_launches = || counter.launches(ScanKernel::VecBackward);
    let base = KernelConfig {
        scan_poison: true,
        plane: Some(true),
        vec_forward: true,
        vec_backward: true,
        save_states: true,
        launch_counter: Some(counter.clone()),
        ..KernelConfig::default()
    };
    fn grads_of<B: burn::tensor::backend::Backend>(
        g: ScanGrads<B>,
    ) -> Vec<(&'static str, Vec<f32>)> {
        let mut v = vec![
            ("du", to_vec(g.du)),
            ("ddelta", to_vec(g.ddelta)),
            ("dA", to_vec(g.da)),
            ("dB", to_vec(g.db)),
            ("dC", to_vec(g.dc)),
        ];
        v.extend(g.dd.map(|t| ("dD", to_vec(t))));
        v.extend(g.dz.map(|t| ("dz", to_vec(t))));
        v.extend(g.ddelta_bias.map(|t| ("dbias", to_vec(t))));
        v
    }
    let shapes = [
        [2, 6, 4, 4, 1],
        [1, 5, 100, 16, 1],
        [2, 8, 200, 1, 2],
        [1, 3, 264, 64, 1],
        [2, 6, 36, 4, 3],
        // above L 512: one plane per cube in batch order (batch 2, so the order matters)
        [2, 5, 520, 4, 1],
    ];
    let mut seed = 100;
    // (steps per unit, planes per cube, largest segment), as in the forward's test
    for (items, chans, seg) in [
        (None, None, None),
        (Some(4), Some(3), None),
        (Some(16), Some(2), None),
        (None, None, Some(1)),
        (Some(4), Some(2), Some(2)),
        (None, Some(3), Some(4)),
    ] {
        let cfg = base
            .clone()
            .with_items(items)
            .with_channels_per_cube(chans, chans)
            .with_vec_segment(seg, seg);
        for shape in shapes {
            seed += 1;
            let (cpu, gpu) = random_pair(shape, seed);
            let [b, d, l, _, _] = shape;
            let dy_data = {
                use rand::{Rng, SeedableRng};
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1000);
                let v: Vec<f32> = (0..b * d * l)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                burn::tensor::TensorData::new(v, [b, d, l])
            };
            let want = grads_of(
                selective_scan_backward(
                    cpu,
                    Tensor::from_data(dy_data.clone(), &Default::default()),
                )
                .unwrap(),
            );
            let dy = Tensor::<Wgpu, 3>::from_data(dy_data, &dev);
            for save in [true, false] {
                let before = vec_backward_launches();
                let got = if save {
                    let (_, saved) =
                        <Wgpu as SelectiveScanBackend>::selective_scan_train_with_config(
                            gpu.clone(),
                            false,
                            &cfg,
                        );
                    // these lengths span several backward chunks (at most 8 x 16 steps here;
                    // chunks under 16 steps, as with the segment caps, save nothing)
                    if l >= 200 && seg.is_none() {
                        assert!(saved.is_some(), "{shape:?}: the forward saved no states");
                    }
                    <Wgpu as SelectiveScanBackend>::selective_scan_backward_saved_with_config(
                        gpu.clone(),
                        dy.clone(),
                        saved,
                        &cfg,
                    )
                } else {
                    selective_scan_backward_with_config(gpu.clone(), dy.clone(), &cfg).unwrap()
                };
                let ctx =
                    format!("{shape:?} items {items:?} chans {chans:?} seg {seg:?} saved {save}");
                let got = grads_of(got);
                assert_eq!(got.len(), want.len(), "{ctx}: gradient set");
                for ((k, g), (_, w)) in got.iter().zip(&want) {
                    let e = rel_err(g, w);
                    assert!(e < 1e-4, "{ctx}: {k} rel err {e:e}");
                }
                assert_eq!(
                    vec_backward_launches(),
                    before + 1,
                    "{ctx}: scalar backward ran"
                );
            }
        }
    }
    // f16 activations and B, C (f32 weights): du and dB against the CPU backward on the same
    // rounded values
    use burn::tensor::DType;
    if <Wgpu as burn::tensor::backend::Backend>::supports_dtype(&dev, DType::F16) {
        let h = DType::F16;
        let (cpu, gpu) = random_pair([2, 6, 200, 16, 2], 77);
        fn rounded<const D: usize>(
            t: Tensor<burn::backend::NdArray, D>,
        ) -> Tensor<burn::backend::NdArray, D> {
            let data = t.into_data().convert::<burn::tensor::f16>();
            Tensor::from_data(data.convert::<f32>(), &Default::default())
        }
        let cpu = mamba_ssm::ScanInputs {
            u: rounded(cpu.u),
            delta: rounded(cpu.delta),
            z: cpu.z.map(rounded),
            b: rounded(cpu.b),
            c: rounded(cpu.c),
            ..cpu
        };
        let gpu = mamba_ssm::ScanInputs {
            u: gpu.u.cast(h),
            delta: gpu.delta.cast(h),
            z: gpu.z.map(|t| t.cast(h)),
            b: gpu.b.cast(h),
            c: gpu.c.cast(h),
            ..gpu
        };
        let dy = {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(78);
            let v: Vec<f32> = (0..2 * 6 * 200)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            Tensor::<burn::backend::NdArray, 3>::from_data(
                burn::tensor::TensorData::new(v, [2, 6, 200]),
                &Default::default(),
            )
        };
        let dy = rounded(dy);
        let want = selective_scan_backward(cpu, dy.clone()).unwrap();
        let before = vec_backward_launches();
        let got = selective_scan_backward_with_config(
            gpu,
            Tensor::<Wgpu, 3>::from_data(dy.into_data(), &dev).cast(h),
            &base,
        )
        .unwrap();
        assert_eq!(got.du.dtype(), h);
        let e = rel_err(&to_vec(got.du.cast(DType::F32)), &to_vec(want.du));
        assert!(e < 2e-2, "f16: du rel err {e:e}");
        let e = rel_err(&to_vec(got.db), &to_vec(want.db));
        assert!(e < 2e-2, "f16: dB rel err {e:e}");
        // the gradients of the f32 weights (f32, unlike dB / dC, which come back in f16) see
        // the same inputs as the CPU backward and, with A, D and delta_bias read as f32 (not
        // rounded to f16), agree at the f32 tolerance (A rounded to f16 moves dA by about
        // 1e-3)
        let mut exact = vec![("dA", to_vec(got.da), to_vec(want.da))];
        if let (Some(g), Some(w)) = (got.dd, want.dd) {
            exact.push(("dD", to_vec(g), to_vec(w)));
        }
        if let (Some(g), Some(w)) = (got.ddelta_bias, want.ddelta_bias) {
            exact.push(("d delta_bias", to_vec(g), to_vec(w)));
        }
        for (k, g, w) in exact {
            let e = rel_err(&g, &w);
            assert!(e < 1e-4, "f16: {k} rel err {e:e}");
        }
        assert_eq!(
            vec_backward_launches(),
            before + 1,
            "f16: scalar backward ran"
        );
    }
    type Ad = Autodiff<Wgpu>;
    for name in ["l1000_n16", "ungrouped_n4"] {
        let case = load(name);
        let inp = case.tracked_inputs::<Ad>(&dev);
        let before = vec_backward_launches();
        let y = selective_scan_with_config(inp.clone(), false, &base)
            .unwrap()
            .y;
        let dy: Tensor<Ad, 3> = tensor(&case, "dy", &dev);
        let grads = (y * dy).sum().backward();
        let checks = input_grads(&inp, &grads);
        for (k, got) in checks {
            let e = rel_err(&got, case.vec(&format!("grad_{k}")));
            assert!(e < 1e-5, "{name}: grad {k} rel err {e:e}");
        }
        assert_eq!(
            vec_backward_launches(),
            before + 1,
            "{name}: scalar backward ran"
        );
    }
}
