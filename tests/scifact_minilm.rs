//! End to end on real data and real weights: fine-tune all-MiniLM-L6-v2 as a cross-encoder on
//! SciFact train (BM25 hard negatives), rerank the BM25 candidates of SciFact test queries, and
//! check with trec_eval-exact nDCG@10 that training beats the untrained head. The CI-sized
//! settings (steps, queries, depth, length) are printed with the figures; `RANKMAMBA_E2E_*`
//! environment variables enlarge them (see `docs/results.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use ir_metrics::{EvalOptions, Measure, Qrels, Run, evaluate};
use rank_data::{Bm25Index, Dataset, GroupConfig, GroupSampler, Position};
use rank_heads::{
    CrossEncoder, PaddingSide, PairEncoder, Pooling, RankError, RankLoss, Reranker, TemplateStyle,
    TokenBatch, TrainConfig, Trainer, Warmup,
};
use transformer_baselines::BertModel;

type B = NdArray;
type AD = Autodiff<NdArray>;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// all-MiniLM-L6-v2, provisioned once by `scripts/provision_minilm.sh` (see the data README).
fn minilm_dir() -> PathBuf {
    let dir = match std::env::var_os("RANKMAMBA_MINILM") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/rankmamba/models/all-MiniLM-L6-v2"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/provision_minilm.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("RANKMAMBA_MINILM", &dir)
        .output()
        .expect("run scripts/provision_minilm.sh");
    assert!(
        out.status.success(),
        "provisioning all-MiniLM-L6-v2 into {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn ndcg10(run: &Run, qrels: &Qrels) -> f64 {
    let m: Measure = "nDCG@10".parse().unwrap();
    let e = evaluate(
        qrels,
        run,
        std::slice::from_ref(&m),
        &EvalOptions::default(),
    )
    .unwrap();
    e.mean(&m).unwrap()
}

#[test]
fn fine_tuned_minilm_beats_its_untrained_head_on_scifact() {
    let steps = env_usize("RANKMAMBA_E2E_STEPS", 80);
    let n_test = env_usize("RANKMAMBA_E2E_QUERIES", 50);
    let depth = env_usize("RANKMAMBA_E2E_DEPTH", 20);
    let max_len = env_usize("RANKMAMBA_E2E_MAXLEN", 96);
    let groups_per_batch = 2;
    let group_size = 4;

    let t0 = Instant::now();
    let data = Dataset::open("scifact").expect("SciFact under RANKMAMBA_DATA");
    let queries = data.queries().unwrap();
    let corpus = data.corpus(|_| true).unwrap();
    let train_qrels = data.qrels("train").unwrap();
    let test_qrels = data.qrels("test").unwrap();
    let index = Bm25Index::build(data.documents().unwrap()).unwrap();
    let all_queries = queries.to_vec();
    let train_q: Vec<_> = all_queries
        .iter()
        .filter(|q| train_qrels.get(&q.id).is_some())
        .cloned()
        .collect();
    let mut test_q: Vec<_> = all_queries
        .iter()
        .filter(|q| test_qrels.get(&q.id).is_some())
        .cloned()
        .collect();
    test_q.truncate(n_test);
    let train_run = index.run(&train_q, 20, "bm25").unwrap();
    let test_run = index.run(&test_q, depth, "bm25").unwrap();
    let test_ids: Vec<&str> = test_q.iter().map(|q| q.id.as_str()).collect();
    let sub_qrels = Qrels::from_triples(
        test_qrels
            .iter()
            .filter(|(q, _)| test_ids.contains(q))
            .flat_map(|(q, qq)| qq.iter().map(move |(d, g)| (q, d, g))),
    )
    .unwrap();
    let bm25 = ndcg10(&test_run, &sub_qrels);

    let sampler = GroupSampler::from_run(
        train_q.iter().map(|q| q.id.as_str()),
        &train_qrels,
        &train_run,
        GroupConfig {
            group_size,
            top_k: 20,
            seed: 7,
            ..GroupConfig::default()
        },
    )
    .unwrap();
    assert!(sampler.len() > 500, "{} training queries", sampler.len());

    let dir = minilm_dir();
    let encoder = PairEncoder::from_file(
        &dir.join("tokenizer.json"),
        TemplateStyle::Encoder,
        max_len,
        PaddingSide::Right,
    )
    .unwrap();
    let dev = NdArrayDevice::default();
    let bert =
        BertModel::<AD>::from_pretrained(dir.to_str().unwrap(), &Default::default(), &dev).unwrap();
    AD::seed(&dev, 11);
    let model = CrossEncoder::new(bert, Pooling::Cls, 0.1, &dev);

    // The untrained head, for the comparison.
    let doc_text = |id: &str| corpus.get(id).map(|d| d.contents().into_owned());
    let qtext: HashMap<String, String> = test_q
        .iter()
        .map(|q| (q.id.clone(), q.text.clone()))
        .collect();
    let rerank = |m: &CrossEncoder<B, BertModel<B>>, name: &str| -> Run {
        let r = Reranker {
            model: m,
            encoder: &encoder,
            batch_size: 32,
            device: dev,
        };
        r.rerank_run(&test_run, &qtext, &doc_text, depth, name, |_, _| {})
            .unwrap()
    };
    let t_untrained = Instant::now();
    let untrained = ndcg10(&rerank(&model.valid(), "untrained"), &sub_qrels);
    let rerank_s = t_untrained.elapsed().as_secs_f64();

    // Fine-tune: micro-batch i = groups 2i, 2i+1 of the sampler's stream.
    let groups: Vec<_> = sampler
        .iter_from(Position::default())
        .take(steps * groups_per_batch)
        .collect();
    let mut batches = |i: usize| -> Result<TokenBatch<AD>, RankError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (_, g) in &groups[i * groups_per_batch..(i + 1) * groups_per_batch] {
            let t = g.texts(&queries, &corpus).unwrap();
            for d in &t.docs {
                pairs.push((t.query.to_string(), d.to_string()));
            }
        }
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(q, d)| (q.as_str(), d.as_str()))
            .collect();
        Ok(encoder.encode_batch(&refs)?.to_tensors(&dev))
    };
    let config = TrainConfig {
        lr: 5e-5,
        weight_decay: 0.01,
        warmup: Warmup::Ratio(0.1),
        total_steps: steps,
        grad_clip_norm: Some(1.0),
        accumulation: 1,
        seed: 3,
        group_size,
        loss: RankLoss::Lce,
        progress: false,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, config, dev).unwrap();
    let t_train = Instant::now();
    let report = trainer.train(None, &mut batches, None).unwrap();
    let train_s = t_train.elapsed().as_secs_f64();
    let trained = ndcg10(&rerank(&trainer.model.valid(), "trained"), &sub_qrels);

    eprintln!(
        "SciFact test ({} queries, BM25 top-{depth}, max length {max_len}): nDCG@10 BM25 {bm25:.4}, \
         MiniLM untrained head {untrained:.4}, fine-tuned {trained:.4} ({steps} steps of {} groups x {group_size}, \
         LCE; train {train_s:.0} s at {:.0} tokens/s, one rerank pass {rerank_s:.0} s, total {:.0} s)",
        test_q.len(),
        groups_per_batch,
        report.tokens_per_s,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        trained > untrained + 0.05,
        "fine-tuning did not help: untrained {untrained:.4}, trained {trained:.4}"
    );
}
