//! Criterion: parsing and evaluating a synthetic run (1,000 queries x 1,000 documents).
//! The 10,000 x 1,000 end-to-end comparison with pytrec_eval and ranx is `scripts/bench_eval.py`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ir_metrics::{EvalOptions, Measure, Qrels, Run, evaluate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

const QUERIES: usize = 1_000;
const DOCS: usize = 1_000;

fn synthetic() -> (String, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut run, mut qrels) = (String::new(), String::new());
    for q in 0..QUERIES {
        let base = rng.random_range(0..9_000_000u64);
        for i in 0..DOCS {
            let score = 20.0 - i as f64 * 0.01 + rng.random::<f64>() * 1e-3;
            let _ = writeln!(
                run,
                "q{q} Q0 D{} {} {score:.6} synth",
                base + i as u64 * 7,
                i + 1
            );
        }
        for j in 0..100u64 {
            let doc = if j < 60 {
                base + rng.random_range(0..DOCS as u64) * 7
            } else {
                10_000_000 + j
            };
            let _ = writeln!(qrels, "q{q} 0 D{doc} {}", rng.random_range(0..4));
        }
    }
    // a docid drawn twice into the qrels would be a duplicate: keep the first
    let mut seen = std::collections::HashSet::new();
    let qrels = qrels
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            seen.insert((f[0].to_string(), f[2].to_string()))
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        });
    (run, qrels)
}

fn bench(c: &mut Criterion) {
    let (run_text, qrels_text) = synthetic();
    let qrels = Qrels::from_str_named(&qrels_text, "qrels").unwrap();
    let run = Run::from_reader(run_text.as_bytes(), Path::new("run")).unwrap();
    let measures: Vec<Measure> = ["ndcg_cut.10", "map", "P.10", "recall.100", "recip_rank"]
        .iter()
        .map(|m| Measure::parse(m).unwrap())
        .collect();
    let mut g = c.benchmark_group("ir_metrics_1000x1000");
    g.sample_size(10);
    g.throughput(Throughput::Elements((QUERIES * DOCS) as u64));
    g.bench_function("parse_run", |b| {
        b.iter(|| Run::from_reader(black_box(run_text.as_bytes()), Path::new("run")).unwrap())
    });
    g.bench_function("evaluate_5_measures", |b| {
        b.iter(|| evaluate(&qrels, black_box(&run), &measures, &EvalOptions::default()).unwrap())
    });
    g.bench_function("parse_and_evaluate", |b| {
        b.iter(|| {
            let run = Run::from_reader(black_box(run_text.as_bytes()), Path::new("run")).unwrap();
            evaluate(&qrels, &run, &measures, &EvalOptions::default()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
