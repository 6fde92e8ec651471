//! Training steps of the tiny HF checkpoints on wgpu (in CI: Mesa's lavapipe, a Vulkan device
//! on the CPU) against the same steps on the CPU: every parameter's gradient of a masked
//! weighted sum of the last hidden states, then the loss after two AdamW updates. The models
//! run their defaults (flash attention, `linear-kernels` products). Run with `cargo test -p
//! transformer-baselines --features wgpu --test train_wgpu`, and with `--features wgpu,fusion`
//! for the same steps through Burn's `Fusion` (what `burn::backend::Wgpu` / `Cuda` are with
//! Burn's default features).
#![cfg(feature = "wgpu")]

mod common;

use burn::backend::{Autodiff, NdArray, Wgpu};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use common::{Fixture, fixtures};
use model_io::HubOptions;
use transformer_baselines::{BertModel, GptNeoXModel};

type G = Autodiff<Wgpu>;
type C = Autodiff<NdArray>;

fn ids<B: Backend>(f: &Fixture, name: &str) -> Tensor<B, 2, Int> {
    let (data, shape) = f.i64(name);
    Tensor::from_data(
        TensorData::new(data, [shape[0], shape[1]]),
        &Default::default(),
    )
}

/// `sum(hidden * w * mask)` with fixed weights `w` (so every output element matters
/// differently) and the padding mask (padded positions' outputs are not compared).
fn loss<B: Backend>(hidden: Tensor<B, 3>, mask: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, l, h] = hidden.dims();
    let w: Vec<f32> = (0..b * l * h)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let w = Tensor::<B, 3>::from_data(TensorData::new(w, [b, l, h]), &hidden.device());
    let mask = mask.float().reshape([b, l, 1]);
    (hidden * w * mask).sum()
}

/// Every float parameter's gradient, in visiting order (empty where a parameter has none).
struct Grads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Grads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let g = param.val().grad(self.grads);
        self.out.push(g.map_or_else(Vec::new, |g| {
            g.into_data().convert::<f32>().into_vec().unwrap()
        }));
    }
}

fn grads<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, loss: Tensor<B, 1>) -> Vec<Vec<f32>> {
    let grads = loss.backward();
    let mut v = Grads::<B> {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

fn compare(what: &str, gpu: &[Vec<f32>], cpu: &[Vec<f32>]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: parameter count");
    let with_grad = cpu.iter().filter(|g| !g.is_empty()).count();
    assert!(
        with_grad > 10,
        "{what}: only {with_grad} parameters have gradients"
    );
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert_eq!(g.len(), c.len(), "{what}: parameter {i}'s gradient size");
        let scale = c.iter().fold(1e-3f32, |a, b| a.max(b.abs()));
        let e = g
            .iter()
            .zip(c)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            e.is_finite() && e <= 2e-3 * scale,
            "{what}: parameter {i}: error {e:.3e}, scale {scale:.3e}"
        );
    }
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f32 {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()[0]
}

/// The loss before and after two AdamW updates on the gradients of `step`.
fn two_updates<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut model: M,
    step: impl Fn(&M) -> Tensor<B, 1>,
) -> (f32, f32) {
    let before = scalar(step(&model));
    let mut optim = AdamWConfig::new().init::<B, M>();
    for _ in 0..2 {
        let grads = GradientsParams::from_grads(step(&model).backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    (before, scalar(step(&model)))
}

/// The losses before and after the updates agree, and the updates moved the loss far more
/// than that.
fn same_updates(what: &str, (g0, g): (f32, f32), (c0, c): (f32, f32)) {
    let tol = 1e-4 * c.abs().max(1.0);
    assert!(
        (g0 - c0).abs() <= tol,
        "{what} before the updates: {g0} vs {c0}"
    );
    assert!((g - c).abs() <= tol, "{what} after two updates: {g} vs {c}");
    assert!(
        (c - c0).abs() > 100.0 * tol,
        "{what}: the updates did not move the loss ({c0} -> {c})"
    );
}

#[test]
fn tiny_bert_trains_on_wgpu_as_on_the_cpu() {
    let f = Fixture::open("tiny_encoders.safetensors");
    let dir = fixtures().join("tiny_bert");
    let dir = dir.to_str().unwrap();
    let gpu = BertModel::<G>::from_pretrained(dir, &HubOptions::default(), &Default::default())
        .unwrap()
        .0;
    let cpu = BertModel::<C>::from_pretrained(dir, &HubOptions::default(), &Default::default())
        .unwrap()
        .0;
    fn step<B: AutodiffBackend + transformer_baselines::FlashAttentionBackend>(
        f: &Fixture,
        m: &BertModel<B>,
    ) -> Tensor<B, 1> {
        let out = m
            .forward(
                ids(f, "bert.input_ids"),
                Some(ids(f, "bert.token_type_ids")),
                Some(ids(f, "bert.attention_mask")),
            )
            .unwrap();
        loss(out.last_hidden_state, ids(f, "bert.attention_mask"))
    }
    compare(
        "tiny BERT",
        &grads(&gpu, step(&f, &gpu)),
        &grads(&cpu, step(&f, &cpu)),
    );
    let (g, c) = (
        two_updates(gpu, |m| step(&f, m)),
        two_updates(cpu, |m| step(&f, m)),
    );
    same_updates("tiny BERT", g, c);
}

#[test]
fn tiny_gpt_neox_trains_on_wgpu_as_on_the_cpu() {
    let f = Fixture::open("tiny_gpt_neox.safetensors");
    let dir = fixtures().join("tiny_gpt_neox");
    let dir = dir.to_str().unwrap();
    let gpu = GptNeoXModel::<G>::from_pretrained(dir, &HubOptions::default(), &Default::default())
        .unwrap()
        .0;
    let cpu = GptNeoXModel::<C>::from_pretrained(dir, &HubOptions::default(), &Default::default())
        .unwrap()
        .0;
    fn step<B: AutodiffBackend + transformer_baselines::FlashAttentionBackend>(
        f: &Fixture,
        m: &GptNeoXModel<B>,
    ) -> Tensor<B, 1> {
        // left padding: the causal model's padded positions come first
        let h = m
            .forward(
                ids(f, "left.input_ids"),
                Some(ids(f, "left.attention_mask")),
            )
            .unwrap();
        loss(h, ids(f, "left.attention_mask"))
    }
    compare(
        "tiny GPT-NeoX",
        &grads(&gpu, step(&f, &gpu)),
        &grads(&cpu, step(&f, &cpu)),
    );
    let (g, c) = (
        two_updates(gpu, |m| step(&f, m)),
        two_updates(cpu, |m| step(&f, m)),
    );
    same_updates("tiny GPT-NeoX", g, c);
}
