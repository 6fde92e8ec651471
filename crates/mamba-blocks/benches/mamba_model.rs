//! Criterion `mamba_model`: a Mamba-130M-config model (24 layers, hidden 768, state 16, vocab
//! 50,280; random weights) on the CPU (NdArray), forward and forward+backward, at batch 2 and
//! L = 512 (1,024 tokens per iteration). Criterion reports the throughput in elements/s =
//! tokens/s. `MAMBA_BENCH_PRESET=370m` and `MAMBA_BENCH_SHAPE=batch,len` override the defaults.
//!
//! The forward+backward is the loss `sum(hidden)` differentiated with respect to every
//! parameter; the optimizer step is not included.

use std::hint::black_box;
use std::time::Duration;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Distribution, Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mamba_blocks::{MambaConfig, MambaModel};

type Cpu = NdArray;
type Ad = Autodiff<NdArray>;

fn setup() -> (MambaConfig, usize, usize) {
    let preset = std::env::var("MAMBA_BENCH_PRESET").unwrap_or_else(|_| "130m".into());
    let config = MambaConfig::preset(&preset).expect("MAMBA_BENCH_PRESET");
    let (batch, len) = match std::env::var("MAMBA_BENCH_SHAPE") {
        Ok(s) => {
            let v: Vec<usize> = s
                .split(',')
                .map(|x| x.trim().parse().expect("MAMBA_BENCH_SHAPE=batch,len"))
                .collect();
            (v[0], v[1])
        }
        Err(_) => (2, 512),
    };
    (config, batch, len)
}

fn ids<B: burn::tensor::backend::Backend>(
    vocab: usize,
    batch: usize,
    len: usize,
    dev: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::<B, 2>::random(
        [batch, len],
        Distribution::Uniform(0.0, vocab as f64 - 1.0),
        dev,
    )
    .int()
}

fn bench(c: &mut Criterion) {
    let (config, batch, len) = setup();
    let dev = Default::default();
    let mut group = c.benchmark_group(format!("mamba_model/{}x{}", batch, len));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements((batch * len) as u64));

    let model = MambaModel::<Cpu>::new(&config, &dev);
    let x = ids::<Cpu>(config.vocab_size, batch, len, &dev);
    group.bench_function("forward", |b| {
        b.iter(|| {
            let h = model.forward(black_box(x.clone()), None).unwrap();
            black_box(h.into_data())
        })
    });

    let model = MambaModel::<Ad>::new(&config, &dev);
    let x = ids::<Ad>(config.vocab_size, batch, len, &dev);
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let loss = model.forward(black_box(x.clone()), None).unwrap().sum();
            black_box(loss.backward())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
