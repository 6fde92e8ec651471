//! Criterion: BERT-base and Pythia-160m (random weights, their published configs) forward and
//! forward+backward at batch 2 x 512 tokens on NdArray (CPU). Throughput is reported in
//! tokens/s (criterion's elements/s). Figures and machine: docs/baselines.md.
//!
//! `cargo bench -p transformer-baselines --bench forward`

use std::hint::black_box;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use transformer_baselines::{BertConfig, GptNeoXConfig};

type B = NdArray<f32>;
type A = Autodiff<B>;

const BATCH: usize = 2;
const SEQ: usize = 512;

/// Random ids in `0..vocab` and an all-ones attention mask (the masked attention path runs).
fn inputs<Bk: Backend>(
    vocab: usize,
    device: &Bk::Device,
) -> (Tensor<Bk, 2, Int>, Tensor<Bk, 2, Int>) {
    let ids = Tensor::<Bk, 2>::random(
        [BATCH, SEQ],
        Distribution::Uniform(0.0, vocab as f64 - 1.0),
        device,
    )
    .int();
    (ids, Tensor::ones([BATCH, SEQ], device))
}

fn bert(c: &mut Criterion) {
    let device = Default::default();
    let config = BertConfig::bert_base();
    let mut group = c.benchmark_group("bert_base_b2_l512");
    group
        .sample_size(10)
        .throughput(Throughput::Elements((BATCH * SEQ) as u64));

    let model = config.init_with_pooler::<B>(&device).unwrap();
    let (ids, mask) = inputs::<B>(config.vocab_size, &device);
    group.bench_function("forward", |b| {
        b.iter(|| {
            let out = model
                .forward(ids.clone(), None, Some(mask.clone()))
                .unwrap();
            black_box(out.last_hidden_state.sum().into_scalar())
        })
    });

    let model = config.init_with_pooler::<A>(&device).unwrap();
    let (ids, mask) = inputs::<A>(config.vocab_size, &device);
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let out = model
                .forward(ids.clone(), None, Some(mask.clone()))
                .unwrap();
            let grads = out.last_hidden_state.mean().backward();
            black_box(grads)
        })
    });
    group.finish();
}

fn pythia(c: &mut Criterion) {
    let device = Default::default();
    let config = GptNeoXConfig::pythia_160m();
    let mut group = c.benchmark_group("pythia_160m_b2_l512");
    group
        .sample_size(10)
        .throughput(Throughput::Elements((BATCH * SEQ) as u64));

    let model = config.init::<B>(&device).unwrap();
    let (ids, mask) = inputs::<B>(config.vocab_size, &device);
    group.bench_function("forward", |b| {
        b.iter(|| {
            let h = model.forward(ids.clone(), Some(mask.clone())).unwrap();
            black_box(h.sum().into_scalar())
        })
    });

    let model = config.init::<A>(&device).unwrap();
    let (ids, mask) = inputs::<A>(config.vocab_size, &device);
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let h = model.forward(ids.clone(), Some(mask.clone())).unwrap();
            black_box(h.mean().backward())
        })
    });
    group.finish();
}

criterion_group!(benches, bert, pythia);
criterion_main!(benches);
