//! End-to-end recipes built from the workspace's crates; the test suite, the examples and the
//! CLI call these rather than repeating the glue.
//!
//! [`minilm_scifact`]: BM25 over SciFact, all-MiniLM-L6-v2 fine-tuned as a cross-encoder on
//! SciFact train with BM25 hard negatives, the BM25 candidates of test queries reranked before
//! and after training, nDCG@10 of each.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
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

/// Settings of [`minilm_scifact`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MiniLmScifact {
    /// Optimizer steps.
    pub steps: usize,
    /// Test queries reranked (the first ones by id; 300 = all).
    pub test_queries: usize,
    /// BM25 candidates reranked per query.
    pub depth: usize,
    /// Token limit of a (query, document) pair.
    pub max_length: usize,
    /// Documents per training group (one positive).
    pub group_size: usize,
    /// Groups per optimizer step.
    pub groups_per_step: usize,
    /// Hard negatives come from this BM25 depth.
    pub negatives_top_k: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed of the sampler, the head's initialisation and dropout.
    pub seed: u64,
}

impl Default for MiniLmScifact {
    fn default() -> Self {
        MiniLmScifact {
            steps: 150,
            test_queries: 100,
            depth: 20,
            max_length: 128,
            group_size: 4,
            groups_per_step: 2,
            negatives_top_k: 20,
            lr: 5e-5,
            seed: 7,
        }
    }
}

/// What [`minilm_scifact`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MiniLmScifactReport {
    /// Test queries evaluated.
    pub queries: usize,
    /// nDCG@10 of the BM25 candidates in BM25 order.
    pub bm25: f64,
    /// nDCG@10 after reranking with the untrained head.
    pub untrained: f64,
    /// nDCG@10 after reranking with the fine-tuned model.
    pub trained: f64,
    /// Training wall time (s).
    pub train_s: f64,
    /// Training throughput (non-padding tokens per second).
    pub train_tokens_per_s: f64,
    /// Wall time of one reranking pass (s).
    pub rerank_s: f64,
}

/// Any error of the recipe, as text with its origin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecipeError(String);

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> RecipeError + '_ {
    move |e| RecipeError(format!("{what}: {e}"))
}

/// nDCG@10 (trec_eval semantics: judged queries of the run).
pub fn ndcg10(run: &Run, qrels: &Qrels) -> Result<f64, RecipeError> {
    let m: Measure = "nDCG@10".parse().map_err(|e| err("measure")(&e))?;
    let e = evaluate(
        qrels,
        run,
        std::slice::from_ref(&m),
        &EvalOptions::default(),
    )
    .map_err(|e| err("evaluation")(&e))?;
    e.mean(&m)
        .ok_or_else(|| RecipeError("no judged query in the run".into()))
}

/// Runs the recipe on the CPU (NdArray). `minilm` holds all-MiniLM-L6-v2 (`model.safetensors`,
/// `config.json`, `tokenizer.json`); with `out`, the fine-tuned model (`cross_encoder.mpk`),
/// the reranked test run (`reranked.trec`) and `report.json` are written there.
pub fn minilm_scifact(
    settings: &MiniLmScifact,
    data: &Dataset,
    minilm: &Path,
    out: Option<&Path>,
) -> Result<MiniLmScifactReport, RecipeError> {
    let s = settings;
    let queries = data.queries().map_err(|e| err("queries")(&e))?;
    let corpus = data.corpus(|_| true).map_err(|e| err("corpus")(&e))?;
    let train_qrels = data.qrels("train").map_err(|e| err("train qrels")(&e))?;
    let test_qrels = data.qrels("test").map_err(|e| err("test qrels")(&e))?;
    let index = Bm25Index::build(data.documents().map_err(|e| err("documents")(&e))?)
        .map_err(|e| err("BM25 index")(&e))?;
    let all = queries.to_vec();
    let train_q: Vec<_> = all
        .iter()
        .filter(|q| train_qrels.get(&q.id).is_some())
        .cloned()
        .collect();
    let mut test_q: Vec<_> = all
        .iter()
        .filter(|q| test_qrels.get(&q.id).is_some())
        .cloned()
        .collect();
    test_q.truncate(s.test_queries);
    let train_run = index
        .run(&train_q, s.negatives_top_k, "bm25")
        .map_err(|e| err("BM25")(&e))?;
    let test_run = index
        .run(&test_q, s.depth, "bm25")
        .map_err(|e| err("BM25")(&e))?;
    let bm25 = ndcg10(&test_run, &test_qrels)?;

    let sampler = GroupSampler::from_run(
        train_q.iter().map(|q| q.id.as_str()),
        &train_qrels,
        &train_run,
        GroupConfig {
            group_size: s.group_size,
            top_k: s.negatives_top_k,
            seed: s.seed,
            ..GroupConfig::default()
        },
    )
    .map_err(|e| err("training groups")(&e))?;

    let encoder = PairEncoder::from_file(
        &minilm.join("tokenizer.json"),
        TemplateStyle::Encoder,
        s.max_length,
        PaddingSide::Right,
    )
    .map_err(|e| err("tokenizer")(&e))?;
    let dev = NdArrayDevice::default();
    let spec = minilm.to_string_lossy();
    let (bert, _) = BertModel::<AD>::from_pretrained(&spec, &Default::default(), &dev)
        .map_err(|e| err("all-MiniLM-L6-v2")(&e))?;
    AD::seed(&dev, s.seed);
    let model = CrossEncoder::new(bert, Pooling::Cls, 0.1, &dev);

    let qtext: HashMap<String, String> = test_q
        .iter()
        .map(|q| (q.id.clone(), q.text.clone()))
        .collect();
    let doc_text = |id: &str| corpus.get(id).map(|d| d.contents().into_owned());
    let rerank = |m: &CrossEncoder<B, BertModel<B>>, name: &str| -> Result<Run, RecipeError> {
        let r = Reranker {
            model: m,
            encoder: &encoder,
            batch_size: 32,
            device: dev,
        };
        r.rerank_run(&test_run, &qtext, &doc_text, s.depth, name, |_, _| {})
            .map_err(|e| err("reranking")(&e))
    };
    let t = Instant::now();
    let untrained = ndcg10(&rerank(&model.valid(), "minilm-untrained")?, &test_qrels)?;
    let rerank_s = t.elapsed().as_secs_f64();

    let groups: Vec<_> = sampler
        .iter_from(Position::default())
        .take(s.steps * s.groups_per_step)
        .map(|(_, g)| g)
        .collect();
    let per = s.groups_per_step;
    let mut batches = |i: usize| -> Result<TokenBatch<AD>, RankError> {
        let g = groups.get(i * per..(i + 1) * per).unwrap_or(&[]);
        crate::study::encode_groups(g, &queries, &corpus, &encoder, &dev)
    };
    let config = TrainConfig {
        lr: s.lr,
        weight_decay: 0.01,
        warmup: Warmup::Ratio(0.1),
        total_steps: s.steps,
        grad_clip_norm: Some(1.0),
        accumulation: 1,
        seed: s.seed,
        group_size: s.group_size,
        loss: RankLoss::Lce,
        progress: out.is_some(),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, config, dev).map_err(|e| err("trainer")(&e))?;
    let t = Instant::now();
    let report = trainer
        .train(None, &mut batches, None)
        .map_err(|e| err("training")(&e))?;
    let train_s = t.elapsed().as_secs_f64();
    let trained_model = trainer.model.valid();
    let reranked = rerank(&trained_model, "minilm-scifact")?;
    let trained = ndcg10(&reranked, &test_qrels)?;
    let result = MiniLmScifactReport {
        queries: test_q.len(),
        bm25,
        untrained,
        trained,
        train_s,
        train_tokens_per_s: report.tokens_per_s,
        rerank_s,
    };
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| err(&dir.display().to_string())(&e))?;
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        trained_model
            .save_file(dir.join("cross_encoder"), &recorder)
            .map_err(|e| err("saving the model")(&e))?;
        reranked
            .write_path(dir.join("reranked.trec"))
            .map_err(|e| err("writing the run")(&e))?;
        let json = serde_json::json!({"settings": s, "report": &result});
        ir_metrics::write_atomically(&dir.join("report.json"), |w| {
            serde_json::to_writer_pretty(w, &json).map_err(std::io::Error::other)
        })
        .map_err(|e| err("report.json")(&e))?;
    }
    Ok(result)
}
