//! The study: cross-encoders trained on one collection and tested on another (or on the test
//! split of the same), reranking a first-stage run, evaluated with paired significance tests
//! against the first stage. `rankmamba train`, `rankmamba rerank` and `rankmamba reproduce`
//! are thin layers over this module.
//!
//! Collections by name (see `docs/data.md`): BEIR ones (SciFact) train on their `train` qrels
//! and test on `test`, with a tantivy BM25 first stage built here; TREC DL ones (dl19, dl20)
//! have one judged split and ship a BM25 run (`runs/bm25.trec`), so DL19 trains a model tested
//! on DL20 and the reverse; TREC DL relevance is graded, positives need grade >= 2 and binary
//! measures use `-l 2`, as in the TREC DL overviews.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use transformer_baselines::FlashAttentionBackend;

use burn::module::{AutodiffModule, ModuleDisplay};
use burn::tensor::backend::{AutodiffBackend, Backend};
use ir_metrics::{EvalOptions, Measure, Qrels, Run, SignificanceTest, compare};
use mamba_ssm::SelectiveScanBackend;
use rank_data::{
    Bm25Index, Corpus, Dataset, GroupConfig, GroupSampler, Layout, Position, Queries, Query,
};
use rank_heads::{
    CrossEncoder, PairEncoder, RankError, RankLoss, Reranker, SequenceEncoder, TokenBatch,
    TrainConfig, Trainer, Warmup,
};
use serde::{Deserialize, Serialize};

use crate::models::{self, Init, ModelCard, ModelVisitor};

/// Any error of the study, as text naming its origin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StudyError(pub String);

impl From<models::ModelError> for StudyError {
    fn from(e: models::ModelError) -> Self {
        StudyError(e.0)
    }
}

fn wrap<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> StudyError {
    move |e| StudyError(format!("{what}: {e}"))
}

/// A judged query set with its documents and first-stage run.
#[derive(Debug, Clone)]
pub struct Collection {
    /// Dataset name.
    pub name: String,
    /// The judged queries used (after any cap).
    pub queries: Queries,
    /// Texts of every document the run or the qrels name.
    pub corpus: Corpus,
    /// Judgements of the split.
    pub qrels: Qrels,
    /// The first stage (BM25), restricted to `queries`.
    pub first_stage: Run,
    /// Minimum grade of a relevant document (2 for TREC DL, else 1).
    pub level: i64,
}

impl Collection {
    /// Block `index` of `count` contiguous blocks of the first stage's queries (in its order;
    /// the first `len % count` blocks hold one query more): what one shard reranks. The blocks
    /// of `0..count`, reranked and concatenated in order ([`concat_runs`]), give the run of the
    /// whole collection.
    pub fn shard(&self, index: usize, count: usize) -> Result<Collection, StudyError> {
        if count == 0 || index >= count {
            return Err(StudyError(format!(
                "shard {index}/{count}: the index must be below a positive count"
            )));
        }
        let order: Vec<&str> = self.first_stage.queries().iter().map(|q| q.qid()).collect();
        let (n, k) = (order.len(), count);
        let start = index * (n / k) + index.min(n % k);
        let len = n / k + usize::from(index < n % k);
        let keep: std::collections::HashSet<&str> =
            order[start..start + len].iter().copied().collect();
        let mut first_stage = Run::new(self.first_stage.name());
        for q in self.first_stage.queries() {
            if keep.contains(q.qid()) {
                for (d, s) in q.ranked() {
                    first_stage
                        .push(q.qid(), d, s)
                        .map_err(wrap(self.first_stage.name()))?;
                }
            }
        }
        let mut queries = self.queries.clone();
        queries.retain(|q| keep.contains(q));
        Ok(Collection {
            name: self.name.clone(),
            queries,
            corpus: self.corpus.clone(),
            qrels: self.qrels.clone(),
            first_stage,
            level: self.level,
        })
    }
}

/// Runs of disjoint query sets joined in the order given, as one run named `name`: the shards
/// of a sharded reranking back into the single run. A query in two runs is an error.
pub fn concat_runs(runs: &[(String, Run)], name: &str) -> Result<Run, StudyError> {
    let mut out = Run::new(name);
    let mut seen = std::collections::HashMap::<String, &str>::new();
    for (label, run) in runs {
        for q in run.queries() {
            if let Some(other) = seen.insert(q.qid().to_string(), label) {
                return Err(StudyError(format!(
                    "query {} is in both {other} and {label}: shards must hold disjoint queries",
                    q.qid()
                )));
            }
            for (d, s) in q.ranked() {
                out.push(q.qid(), d, s).map_err(wrap(label))?;
            }
        }
    }
    Ok(out)
}

/// Which split of a dataset a [`Collection`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Training queries (BEIR `train`; TREC DL's single judged split).
    Train,
    /// Test queries (BEIR `test`; TREC DL's single judged split).
    Test,
}

impl Collection {
    /// Loads `dataset` (a name found by the data lookup order, or a path): the judged queries of
    /// `side` (the first `max_queries` by id when given) and the first stage to `depth`.
    pub fn load(
        dataset: &str,
        side: Side,
        max_queries: Option<usize>,
        depth: usize,
    ) -> Result<Self, StudyError> {
        let ds = Dataset::open(dataset).map_err(wrap(dataset))?;
        let split = match (ds.layout(), side) {
            (Layout::Beir, Side::Train) => "train",
            _ => "test",
        };
        let qrels = ds.qrels(split).map_err(wrap(format!("{dataset} qrels")))?;
        let all = ds.queries().map_err(wrap(format!("{dataset} queries")))?;
        let mut judged: Vec<Query> = all
            .to_vec()
            .into_iter()
            .filter(|q| {
                qrels
                    .get(&q.id)
                    .is_some_and(|j| j.iter().any(|(_, g)| g > 0))
            })
            .collect();
        judged.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(n) = max_queries {
            judged.truncate(n);
        }
        let level = if ds.layout() == Layout::TrecDl { 2 } else { 1 };
        let run = match ds.layout() {
            Layout::Beir => {
                let index = Bm25Index::build(ds.documents().map_err(wrap(dataset))?)
                    .map_err(wrap(format!("{dataset} BM25 index")))?;
                index
                    .run(&judged, depth, "bm25")
                    .map_err(wrap(format!("{dataset} BM25")))?
            }
            _ => ds.run("bm25").map_err(wrap(dataset))?,
        };
        let mut first_stage = Run::new("bm25");
        for q in &judged {
            if let Some(r) = run.get(&q.id) {
                for (d, s) in r.ranked().into_iter().take(depth) {
                    first_stage.push(&q.id, d, s).map_err(wrap(dataset))?;
                }
            }
        }
        let mut needed: std::collections::HashSet<String> = std::collections::HashSet::new();
        for q in first_stage.queries() {
            needed.extend(q.ranked().into_iter().map(|(d, _)| d.to_string()));
        }
        for q in &judged {
            if let Some(j) = qrels.get(&q.id) {
                needed.extend(j.iter().map(|(d, _)| d.to_string()));
            }
        }
        let corpus = ds
            .corpus(|id| needed.contains(id))
            .map_err(wrap(format!("{dataset} documents")))?;
        let mut queries = Queries::new();
        for q in judged {
            queries.insert(q);
        }
        Ok(Collection {
            name: dataset.to_string(),
            queries,
            corpus,
            qrels,
            first_stage,
            level,
        })
    }

    /// The query texts by id.
    pub fn query_texts(&self) -> HashMap<String, String> {
        self.queries
            .iter()
            .map(|(id, t)| (id.to_string(), t.to_string()))
            .collect()
    }
}

/// Training settings shared by every model of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Optimizer steps.
    pub steps: usize,
    /// Documents per group (one positive, the rest hard negatives).
    pub group_size: usize,
    /// Groups per optimizer step.
    pub groups_per_step: usize,
    /// Hard negatives come from this first-stage depth.
    pub negatives_top_k: usize,
    /// Peak learning rate (linear warmup over `warmup_ratio`, then linear decay).
    pub lr: f64,
    /// Warmup fraction of the steps.
    pub warmup_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of the sampler, the head's initialisation and dropout.
    pub seed: u64,
    /// Write a `train.jsonl` line every this many steps (and at the last).
    #[serde(default = "default_log_every")]
    pub log_every: usize,
}

fn default_log_every() -> usize {
    10
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            steps: 100,
            group_size: 4,
            groups_per_step: 2,
            negatives_top_k: 30,
            lr: 5e-5,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            seed: 7,
            log_every: default_log_every(),
        }
    }
}

/// Training groups with their texts.
pub struct TrainData<'a> {
    /// Queries and documents.
    pub collection: &'a Collection,
    /// `steps * groups_per_step` groups, in order.
    pub groups: Vec<rank_data::Group>,
    /// The settings they were drawn with.
    pub settings: TrainSettings,
}

impl TrainData<'_> {
    /// Checks that every training query fits `encoder`'s length limit with its template and
    /// special tokens (documents are cut to fit; a query never is), so that a query too long
    /// is an error before training starts rather than at the step that samples it.
    pub fn check_queries(&self, encoder: &PairEncoder) -> Result<(), StudyError> {
        let mut seen = std::collections::HashSet::new();
        for g in &self.groups {
            if !seen.insert(g.qid.as_str()) {
                continue;
            }
            let text = self.collection.queries.get(&g.qid).unwrap_or_default();
            encoder.encode_pair(text, "").map_err(|e| {
                StudyError(format!(
                    "{}: training query {:?} does not fit --max-length {}: {e}",
                    self.collection.name,
                    g.qid,
                    encoder.max_length()
                ))
            })?;
        }
        Ok(())
    }
}

/// The most (query, document) pairs one training step may hold (`groups per step x group
/// size`): far above what fits a GPU, small enough to be refused before it is allocated.
pub const MAX_ROWS_PER_STEP: usize = 1 << 20;

/// The most training groups a run may draw (`steps x groups per step`; they are drawn up
/// front): 10^8 groups is days of training on a GPU and a few GB of ids.
pub const MAX_TRAINING_GROUPS: usize = 100_000_000;

impl TrainSettings {
    /// The Trainer's settings for these (LCE, clipping at 1.0, no accumulation).
    pub fn train_config(&self, checkpoint_every: Option<usize>, progress: bool) -> TrainConfig {
        TrainConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup: Warmup::Ratio(self.warmup_ratio),
            total_steps: self.steps,
            grad_clip_norm: Some(1.0),
            accumulation: 1,
            seed: self.seed,
            group_size: self.group_size,
            loss: RankLoss::Lce,
            checkpoint_every,
            progress,
            log_every: self.log_every.max(1),
            ..TrainConfig::default()
        }
    }
}

impl<'a> TrainData<'a> {
    /// Draws the groups of `settings` from `collection` (its first stage gives the negatives).
    /// The settings are checked as the Trainer will check them, before anything is drawn.
    pub fn new(collection: &'a Collection, settings: &TrainSettings) -> Result<Self, StudyError> {
        settings
            .train_config(None, false)
            .check()
            .map_err(wrap("training settings"))?;
        let c = collection;
        // every count that sizes an allocation is bounded before anything is drawn
        let rows = settings.groups_per_step.checked_mul(settings.group_size);
        if rows.is_none_or(|r| r > MAX_ROWS_PER_STEP) {
            return Err(StudyError(format!(
                "{} groups of {} per step is more than {MAX_ROWS_PER_STEP} pairs per step",
                settings.groups_per_step, settings.group_size
            )));
        }
        let groups = settings.steps.checked_mul(settings.groups_per_step);
        if groups.is_none_or(|g| g > MAX_TRAINING_GROUPS) {
            return Err(StudyError(format!(
                "{} steps of {} groups is more than {MAX_TRAINING_GROUPS} training groups",
                settings.steps, settings.groups_per_step
            )));
        }
        let sampler = GroupSampler::from_run_where(
            c.queries.ids(),
            &c.qrels,
            &c.first_stage,
            GroupConfig {
                group_size: settings.group_size,
                top_k: settings.negatives_top_k,
                positive_level: c.level,
                seed: settings.seed,
                ..GroupConfig::default()
            },
            |d| c.corpus.contains(d),
        )
        .map_err(wrap(format!("{} training groups", c.name)))?;
        if sampler.is_empty() {
            return Err(StudyError(format!(
                "{}: no query has a positive and {} negatives in the top {}",
                c.name,
                settings.group_size - 1,
                settings.negatives_top_k
            )));
        }
        let groups = sampler
            .iter_from(Position::default())
            .take(settings.steps * settings.groups_per_step)
            .map(|(_, g)| g)
            .collect();
        Ok(TrainData {
            collection,
            groups,
            settings: settings.clone(),
        })
    }

    /// The same groups with another peak learning rate.
    pub fn with_lr(&self, lr: f64) -> Self {
        TrainData {
            collection: self.collection,
            groups: self.groups.clone(),
            settings: TrainSettings {
                lr,
                ..self.settings.clone()
            },
        }
    }

    fn batch<B: Backend>(
        &self,
        i: usize,
        encoder: &PairEncoder,
        device: &B::Device,
    ) -> Result<TokenBatch<B>, RankError> {
        let per = self.settings.groups_per_step;
        let groups = self.groups.get(i * per..(i + 1) * per).unwrap_or(&[]);
        encode_groups(
            groups,
            &self.collection.queries,
            &self.collection.corpus,
            encoder,
            device,
        )
    }
}

/// One training batch: the (query, document) pairs of `groups`, group after group (each
/// group's positive first), encoded by `encoder` ([`PairEncoder::encode_groups`]) onto
/// `device`.
pub fn encode_groups<B: Backend>(
    groups: &[rank_data::Group],
    queries: &rank_data::Queries,
    corpus: &rank_data::Corpus,
    encoder: &PairEncoder,
    device: &B::Device,
) -> Result<TokenBatch<B>, RankError> {
    let texts = groups
        .iter()
        .map(|g| g.texts(queries, corpus))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RankError::Input(e.to_string()))?;
    Ok(encoder
        .encode_groups(texts.iter().map(|t| (t.query, &t.docs)))?
        .to_tensors(device))
}

/// What a [`Job`] measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobReport {
    /// Training: steps done, last loss, tokens/s.
    pub train_steps: usize,
    /// Steps trained by this job (0 when a resumed checkpoint was already at the last step).
    pub train_steps_this_run: usize,
    /// Mean loss of the last logged window.
    pub last_loss: Option<f64>,
    /// Training throughput (non-padding tokens per second).
    pub train_tokens_per_s: Option<f64>,
    /// Training wall time (s).
    pub train_s: Option<f64>,
    /// Reranking wall time (s).
    pub rerank_s: Option<f64>,
    /// Reranking throughput (documents per second).
    pub rerank_docs_per_s: Option<f64>,
}

/// Train and/or rerank with the model of a model directory.
pub struct Job<'a> {
    /// The model directory (card, config, tokenizer; the trained record is written there).
    pub dir: &'a Path,
    /// Training data, if training.
    pub train: Option<&'a TrainData<'a>>,
    /// Checkpoints every this many steps under `dir/checkpoints` (resumed from when present).
    pub checkpoint_every: Option<usize>,
    /// Rerank this collection's first stage to `depth` and return the run.
    pub rerank: Option<(&'a Collection, usize)>,
    /// Batch size of reranking.
    pub batch_size: usize,
    /// Show progress bars.
    pub progress: bool,
    /// Run name of the reranked run.
    pub run_name: String,
    /// Batch widths padded to a multiple of this (see `PairEncoder::with_pad_multiple`;
    /// the `rankmamba` CLI's `BackendKind::pad_multiple` gives the default per backend).
    pub pad_multiple: usize,
    /// Training as one node of a multi-node run (see `Trainer::with_nodes`).
    pub nodes: Option<&'a rank_heads::NodeSetup>,
    /// Where checkpoints are read (and, by a writer, written); default `dir/checkpoints`. A
    /// multi-node rank other than 0 reads rank 0's here and writes none.
    pub checkpoints: Option<&'a Path>,
}

/// The reranked run (when asked) and the measurements of a [`Job`].
pub type JobOutput = (Option<Run>, JobReport);

struct JobVisitor<'a, B: AutodiffBackend> {
    job: &'a Job<'a>,
    encoder: PairEncoder,
    device: B::Device,
    /// Data-parallel training devices (`[device]` for one).
    devices: Vec<B::Device>,
}

impl<B: AutodiffBackend> ModelVisitor<B> for JobVisitor<'_, B> {
    type Output = Result<JobOutput, StudyError>;

    fn visit<E>(self, model: CrossEncoder<B, E>) -> Self::Output
    where
        E: SequenceEncoder<B> + AutodiffModule<B> + ModuleDisplay,
        E::InnerModule: SequenceEncoder<B::InnerBackend> + ModuleDisplay,
    {
        let job = self.job;
        let dev = self.device;
        let mut report = JobReport::default();
        let model = match job.train {
            None => model,
            Some(data) => {
                let config = data
                    .settings
                    .train_config(job.checkpoint_every, job.progress);
                B::seed(&dev, data.settings.seed);
                let ckpt = job
                    .checkpoints
                    .map_or_else(|| job.dir.join("checkpoints"), Path::to_path_buf);
                let writer = job.nodes.is_none_or(|n| n.rank == 0);
                // a multi-node rank other than 0 reads rank 0's checkpoints and writes none
                let loaded = match job.checkpoint_every {
                    Some(_) if writer => {
                        Trainer::resume(model.clone(), config.clone(), &ckpt, dev.clone())
                    }
                    Some(_) => {
                        Trainer::load_checkpoint(model.clone(), config.clone(), &ckpt, dev.clone())
                    }
                    None => Ok(None),
                }
                .map_err(wrap(ckpt.display()))?;
                let mut trainer = match loaded {
                    Some(t) => {
                        let how = if writer { "resuming" } else { "starting" };
                        eprintln!("{how} from {} at step {}", ckpt.display(), t.step);
                        t
                    }
                    None => {
                        let t =
                            Trainer::new(model, config, dev.clone()).map_err(wrap("trainer"))?;
                        match job.checkpoint_every {
                            Some(_) if writer => {
                                t.with_checkpoints(&ckpt).map_err(wrap(ckpt.display()))?
                            }
                            _ => t,
                        }
                    }
                };
                if self.devices.len() > 1 {
                    trainer = trainer
                        .with_devices(self.devices.clone())
                        .map_err(wrap("devices"))?;
                }
                if let Some(n) = job.nodes {
                    trainer = trainer.with_nodes(n.clone()).map_err(wrap("nodes"))?;
                }
                let log = job.dir.join("train.jsonl");
                trainer = trainer.with_log(&log).map_err(wrap(log.display()))?;
                let t = Instant::now();
                let enc = &self.encoder;
                let mut batches = |i: usize| data.batch::<B>(i, enc, &dev);
                let r: rank_heads::train::TrainReport = trainer
                    .train(None, &mut batches, None)
                    .map_err(wrap("training"))?;
                report.train_steps = trainer.step;
                report.train_steps_this_run = r.steps;
                // a checkpoint already at the last step: nothing was trained, nothing measured
                if r.steps > 0 {
                    report.last_loss = Some(r.last_loss);
                    report.train_tokens_per_s = Some(r.tokens_per_s);
                    report.train_s = Some(t.elapsed().as_secs_f64());
                }
                // a multi-node rank other than 0 keeps nothing: node 0 writes the model
                if writer
                    && (r.steps > 0
                        || !job
                            .dir
                            .join(format!("{}.mpk", models::RECORD_FILE))
                            .is_file())
                {
                    models::save(trainer.model.clone(), job.dir)?;
                }
                trainer.model
            }
        };
        let run = match job.rerank {
            None => None,
            Some((c, depth)) => {
                let valid = model.valid();
                let r = Reranker {
                    model: &valid,
                    encoder: &self.encoder,
                    batch_size: job.batch_size,
                    device: dev.clone(),
                };
                let bar = if job.progress {
                    indicatif::ProgressBar::new(c.first_stage.len() as u64)
                } else {
                    indicatif::ProgressBar::hidden()
                };
                let qtext = c.query_texts();
                let doc_text = |id: &str| c.corpus.get(id).map(|d| d.contents().into_owned());
                let t = Instant::now();
                let reranked = r
                    .rerank_run(
                        &c.first_stage,
                        &qtext,
                        &doc_text,
                        depth,
                        &job.run_name,
                        |done, _| bar.set_position(done as u64),
                    )
                    .map_err(wrap("reranking"))?;
                bar.finish_and_clear();
                let secs = t.elapsed().as_secs_f64();
                let docs = reranked.num_entries();
                report.rerank_s = Some(secs);
                report.rerank_docs_per_s = Some(docs as f64 / secs.max(1e-9));
                Some(with_tail(&reranked, &c.first_stage, &job.run_name)?)
            }
        };
        Ok((run, report))
    }
}

impl Job<'_> {
    /// Runs the job on backend `B`; `init` says where the weights come from.
    pub fn run<B>(&self, init: &Init, device: &B::Device) -> Result<JobOutput, StudyError>
    where
        B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
        B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
    {
        self.run_on::<B>(init, std::slice::from_ref(device))
    }

    /// [`Job::run`] training data-parallel on `devices` (one model replica each, the model
    /// loaded on `devices[0]`, which also reranks); one device is a plain run.
    pub fn run_on<B>(&self, init: &Init, devices: &[B::Device]) -> Result<JobOutput, StudyError>
    where
        B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
        B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
    {
        let device = devices.first().cloned().unwrap_or_default();
        let card = ModelCard::read(self.dir)?;
        // temporary files of a run killed mid-write (the folder is this job's alone)
        safe_write::remove_temporaries(self.dir).map_err(wrap(self.dir.display()))?;
        let encoder = card
            .pair_encoder(self.dir)?
            .with_pad_multiple(self.pad_multiple);
        let v = JobVisitor::<B> {
            job: self,
            encoder,
            device: device.clone(),
            devices: devices.to_vec(),
        };
        // The random initialisation of a fresh backbone (and of the head) draws from the
        // backend's generator: seed it first, so that a run is reproducible from its seed.
        B::seed(&device, self.train.map_or(7, |d| d.settings.seed));
        models::with_model::<B, _>(self.dir, init, &device, v)?
    }
}

/// The zero-shot bi-encoder reference of a reranking table: the sentence-embedding checkpoint
/// `dir` (a HF BERT-style directory: all-MiniLM-L6-v2) scores each query's top `depth`
/// first-stage documents by the cosine of mean-pooled embeddings, query and document encoded
/// alone (as the model was trained), at most `max_length` tokens each; the rest follow in
/// first-stage order. Returns the run named `name` and the documents scored per second.
/// Call it with an inference backend (not `Autodiff<_>`, whose forward passes keep their graphs
/// when nothing calls backward).
pub fn bi_encoder_run<B: FlashAttentionBackend>(
    dir: &Path,
    c: &Collection,
    depth: usize,
    batch_size: usize,
    max_length: usize,
    name: &str,
    device: &B::Device,
) -> Result<(Run, f64), StudyError> {
    let cfg_path = dir.join("config.json");
    let config = transformer_baselines::BertConfig::from_file(&cfg_path)
        .map_err(wrap(cfg_path.display()))?;
    let weights = dir.join("model.safetensors");
    let model = transformer_baselines::BertModel::<B>::from_safetensors(&config, &weights, device)
        .map_err(wrap(weights.display()))?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = PairEncoder::from_file(
        &tok_path,
        rank_heads::TemplateStyle::Encoder,
        max_length,
        rank_heads::PaddingSide::Right,
    )
    .map_err(wrap(tok_path.display()))?;
    let bi = rank_heads::BiEncoder::new(model, rank_heads::Pooling::Mean);
    let qtext = c.query_texts();
    let doc_text = |id: &str| c.corpus.get(id).map(|d| d.contents().into_owned());
    let t = Instant::now();
    let reranked = bi
        .rerank_run(
            &tokenizer,
            batch_size,
            device,
            &c.first_stage,
            &qtext,
            &doc_text,
            depth,
            name,
            |_, _| {},
        )
        .map_err(wrap("bi-encoder reranking"))?;
    let rate = reranked.num_entries() as f64 / t.elapsed().as_secs_f64().max(1e-9);
    Ok((with_tail(&reranked, &c.first_stage, name)?, rate))
}

/// `reranked` (the top of each query) followed by the rest of `first_stage` in its order,
/// scored below every reranked document, so that deep measures (AP, R@100) see the whole
/// candidate list as in a two-stage pipeline.
pub fn with_tail(reranked: &Run, first_stage: &Run, name: &str) -> Result<Run, StudyError> {
    let mut out = Run::new(name);
    for q in reranked.queries() {
        let top = q.ranked();
        let min = top.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
        for (d, s) in &top {
            out.push(q.qid(), d, *s).map_err(wrap(name))?;
        }
        if let Some(fs) = first_stage.get(q.qid()) {
            let mut k = 1.0;
            for (d, _) in fs.ranked() {
                if top.iter().all(|(t, _)| *t != d) {
                    out.push(q.qid(), d, min - k).map_err(wrap(name))?;
                    k += 1.0;
                }
            }
        }
    }
    Ok(out)
}

/// The measures of the study's tables.
pub const MEASURES: &[&str] = &["nDCG@10", "RR@10", "AP"];

/// Runs compared with the first (the first stage), paired t-tests with Holm correction.
pub fn compare_runs(
    collection: &Collection,
    runs: &[(&str, &Run)],
) -> Result<ir_metrics::Comparison, StudyError> {
    let (measures, opts) = study_measures(collection)?;
    compare(
        &collection.qrels,
        runs,
        &measures,
        &opts,
        SignificanceTest::TTest,
        0.05,
    )
    .map_err(wrap(format!("{} evaluation", collection.name)))
}

/// The study's measures and the collection's evaluation options (its relevance level).
fn study_measures(collection: &Collection) -> Result<(Vec<Measure>, EvalOptions), StudyError> {
    let measures: Vec<Measure> = MEASURES
        .iter()
        .map(|m| m.parse().map_err(wrap(m)))
        .collect::<Result<_, _>>()?;
    let opts = EvalOptions {
        relevance_level: collection.level,
        ..EvalOptions::default()
    };
    Ok((measures, opts))
}

/// Shuffles drawn for the chance row of every table.
pub const CHANCE_SAMPLES: usize = 200;

/// The chance baseline of reranking the top `depth` of the collection's first stage:
/// [`CHANCE_SAMPLES`] seeded shuffles, the study's measures, mean and 95% band.
pub fn chance_band(
    collection: &Collection,
    depth: usize,
) -> Result<Vec<ir_metrics::ChanceBand>, StudyError> {
    let (measures, opts) = study_measures(collection)?;
    ir_metrics::shuffled_baseline(
        &collection.qrels,
        &collection.first_stage,
        depth,
        &measures,
        &opts,
        CHANCE_SAMPLES,
        0,
    )
    .map_err(wrap(format!("{} chance baseline", collection.name)))
}

/// A train -> test pairing of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Dataset trained on (its training side).
    pub train: String,
    /// Dataset tested on (its test side).
    pub test: String,
}

impl Task {
    /// `train->test`, or the dataset name when both are the same.
    pub fn name(&self) -> String {
        if self.train == self.test {
            self.test.clone()
        } else {
            format!("{}-to-{}", self.train, self.test)
        }
    }
}

/// Settings of `rankmamba reproduce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// `quick` or `full`.
    pub name: String,
    /// Train -> test pairings.
    pub tasks: Vec<Task>,
    /// Models (named backbones or directories), each trained per task.
    pub models: Vec<String>,
    /// Training settings (the learning rate is per model, below).
    pub train: TrainSettings,
    /// Peak learning rate of pretrained backbones.
    pub lr_pretrained: f64,
    /// Peak learning rate of randomly initialised backbones.
    pub lr_scratch: f64,
    /// Token limit of a pair.
    pub max_length: usize,
    /// First-stage candidates reranked per query (the rest keep their first-stage order).
    pub depth: usize,
    /// Judged test queries per task (the first by id; None = all).
    pub test_queries: Option<usize>,
    /// Training queries per task (None = all).
    pub train_queries: Option<usize>,
    /// Reranking batch size.
    pub batch_size: usize,
    /// Batch widths padded to a multiple of this (1 on the CPU; GPU backends compile kernels
    /// per shape).
    #[serde(default = "one")]
    pub pad_multiple: usize,
}

fn one() -> usize {
    1
}

impl Preset {
    /// The data sets, tokenizers and models the preset reads, by the names of
    /// `rankmamba data fetch` (data sets given as paths and model directories are left out).
    pub fn requirements(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        };
        for t in &self.tasks {
            for d in [&t.train, &t.test] {
                if !rank_data::dataset::is_path(d) {
                    add(d);
                }
            }
        }
        for m in &self.models {
            match m.as_str() {
                "minilm" | "bert-base" => add("all-MiniLM-L6-v2"),
                m if m.starts_with("mamba-") || m.starts_with("pythia-") => add("gpt-neox-20b"),
                _ => {}
            }
        }
        out
    }

    /// The presets by name: `quick` (CPU, minutes) and `full` (a GPU).
    pub fn named(name: &str) -> Result<Self, StudyError> {
        let tasks = vec![
            Task {
                train: "scifact".into(),
                test: "scifact".into(),
            },
            Task {
                train: "dl19".into(),
                test: "dl20".into(),
            },
            Task {
                train: "dl20".into(),
                test: "dl19".into(),
            },
        ];
        match name {
            "quick" => Ok(Preset {
                name: name.into(),
                tasks,
                models: vec!["minilm".into(), "mamba-tiny".into(), "pythia-tiny".into()],
                train: TrainSettings {
                    steps: 30,
                    group_size: 4,
                    groups_per_step: 2,
                    negatives_top_k: 30,
                    ..TrainSettings::default()
                },
                lr_pretrained: 5e-5,
                lr_scratch: 1e-3,
                max_length: 96,
                depth: 20,
                test_queries: Some(30),
                train_queries: None,
                batch_size: 32,
                pad_multiple: 1,
            }),
            "full" => Ok(Preset {
                name: name.into(),
                tasks,
                models: vec![
                    "minilm".into(),
                    "mamba-130m".into(),
                    "pythia-160m".into(),
                    "bert-base".into(),
                ],
                train: TrainSettings {
                    steps: 1000,
                    group_size: 8,
                    groups_per_step: 16,
                    negatives_top_k: 100,
                    ..TrainSettings::default()
                },
                lr_pretrained: 2e-5,
                lr_scratch: 3e-4,
                max_length: 512,
                depth: 100,
                test_queries: None,
                train_queries: None,
                batch_size: 128,
                pad_multiple: 1,
            }),
            other => Err(StudyError(format!(
                "unknown preset {other:?}: expected quick or full"
            ))),
        }
    }
}

/// One model on one task.
#[derive(Debug, Clone, Serialize)]
pub struct ModelResult {
    /// Model name as given.
    pub model: String,
    /// Where its backbone came from.
    pub source: String,
    /// The peak learning rate it was trained with (`None` without training). The preset's
    /// `train.lr` is not used by `reproduce`: `lr_pretrained` / `lr_scratch` decide.
    pub lr: Option<f64>,
    /// Measurements.
    pub report: JobReport,
}

/// One task of the study.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    /// The pairing.
    pub task: Task,
    /// Judged test queries evaluated.
    pub test_queries: usize,
    /// Training groups drawn.
    pub train_groups: usize,
    /// BM25 + every model: means, p-values vs BM25.
    pub comparison: ir_metrics::Comparison,
    /// The chance baseline: [`CHANCE_SAMPLES`] shuffles of the reranked depth, per measure.
    pub chance: Vec<ir_metrics::ChanceBand>,
    /// Per-model measurements.
    pub models: Vec<ModelResult>,
}

/// The whole study.
#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    /// The settings.
    pub preset: Preset,
    /// Backend name.
    pub backend: String,
    /// Per task.
    pub tasks: Vec<TaskResult>,
    /// Wall time (s).
    pub wall_s: f64,
}

/// Runs `preset` on backend `B`, writing every model directory, run and the tables under
/// `out` (`<task>/<model>/`, `<task>/bm25.trec`, `results.json`, `results.md`).
pub fn reproduce<B>(
    preset: &Preset,
    backend: &str,
    out: &Path,
    device: &B::Device,
    progress: bool,
) -> Result<StudyReport, StudyError>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
{
    let t0 = Instant::now();
    std::fs::create_dir_all(out).map_err(wrap(out.display()))?;
    let mut tasks = Vec::new();
    for task in &preset.tasks {
        let tname = task.name();
        let tdir = out.join(&tname);
        std::fs::create_dir_all(&tdir).map_err(wrap(tdir.display()))?;
        eprintln!("== {tname}: loading {} and {}", task.train, task.test);
        // The training collection and its groups serve every model of the task (the groups
        // do not depend on the learning rate, the only setting that differs by model).
        let train_c = match preset.train.steps {
            0 => None,
            _ => Some(Collection::load(
                &task.train,
                Side::Train,
                preset.train_queries,
                preset.train.negatives_top_k.max(preset.depth),
            )?),
        };
        let shared = match &train_c {
            Some(c) => Some(TrainData::new(c, &preset.train)?),
            None => None,
        };
        let groups = shared.as_ref().map_or(0, |d| d.groups.len());
        let test_c = Collection::load(&task.test, Side::Test, preset.test_queries, 100)?;
        test_c
            .first_stage
            .write_path(tdir.join("bm25.trec"))
            .map_err(wrap(tdir.join("bm25.trec").display()))?;
        let mut runs: Vec<(String, Run)> = Vec::new();
        let mut results = Vec::new();
        for m in &preset.models {
            let mdir = tdir.join(model_dir_name(m));
            let (card, init) = models::prepare(m, preset.max_length, &mdir)?;
            let lr = if init == Init::Random {
                preset.lr_scratch
            } else {
                preset.lr_pretrained
            };
            let data = shared.as_ref().map(|d| d.with_lr(lr));
            eprintln!(
                "== {tname}: {m} ({}), {} steps, then reranking {} queries x top {}",
                card.source,
                preset.train.steps,
                test_c.queries.len(),
                preset.depth
            );
            let job = Job {
                dir: &mdir,
                train: data.as_ref(),
                checkpoint_every: None,
                rerank: Some((&test_c, preset.depth)),
                batch_size: preset.batch_size,
                progress,
                run_name: m.clone(),
                pad_multiple: preset.pad_multiple,
                nodes: None,
                checkpoints: None,
            };
            let (run, report) = job.run::<B>(&init, device)?;
            let run = run.ok_or_else(|| StudyError("no run".into()))?;
            run.write_path(mdir.join("run.trec"))
                .map_err(wrap(mdir.join("run.trec").display()))?;
            runs.push((m.clone(), run));
            results.push(ModelResult {
                model: m.clone(),
                source: card.source,
                lr: data.as_ref().map(|d| d.settings.lr),
                report,
            });
        }
        let mut pairs: Vec<(&str, &Run)> = vec![("bm25", &test_c.first_stage)];
        pairs.extend(runs.iter().map(|(n, r)| (n.as_str(), r)));
        let comparison = compare_runs(&test_c, &pairs)?;
        let chance = chance_band(&test_c, preset.depth)?;
        eprintln!("{}", comparison.table());
        tasks.push(TaskResult {
            task: task.clone(),
            test_queries: test_c.queries.len(),
            train_groups: groups,
            comparison,
            chance,
            models: results,
        });
    }
    let report = StudyReport {
        preset: preset.clone(),
        backend: backend.to_string(),
        tasks,
        wall_s: t0.elapsed().as_secs_f64(),
    };
    let json = out.join("results.json");
    ir_metrics::write_atomically(&json, |w| {
        serde_json::to_writer_pretty(w, &report).map_err(std::io::Error::other)
    })
    .map_err(wrap(json.display()))?;
    let md = out.join("results.md");
    let text = markdown(&report);
    ir_metrics::write_atomically(&md, |w| std::io::Write::write_all(w, text.as_bytes()))
        .map_err(wrap(md.display()))?;
    Ok(report)
}

fn model_dir_name(model: &str) -> String {
    Path::new(model)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.to_string())
}

/// The study's tables as Markdown: per task, each system's means (`*` = significantly
/// different from BM25, paired t-test, Holm-corrected, alpha 0.05) and training throughput,
/// with a chance row under BM25 (the mean and 95% band of random orders of the reranked depth).
pub fn markdown(r: &StudyReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let p = &r.preset;
    let _ = writeln!(
        s,
        "# rankmamba reproduce --preset {} ({} backend)\n\n{} steps x {} groups of {} (LCE), max length {}, \
         reranking the BM25 top {} (the rest keep BM25's order), {} test queries per task; \
         lr {} (pretrained) / {} (random init). `*`: differs from BM25 (paired t-test, \
         Holm-corrected over the models, alpha 0.05). Wall time {:.0} s.\n",
        p.name,
        r.backend,
        p.train.steps,
        p.train.groups_per_step,
        p.train.group_size,
        p.max_length,
        p.depth,
        p.test_queries
            .map(|n| format!("at most {n}"))
            .unwrap_or_else(|| "all".into()),
        p.lr_pretrained,
        p.lr_scratch,
        r.wall_s
    );
    for t in &r.tasks {
        let _ = writeln!(
            s,
            "## train {} -> test {} ({} queries, {} training groups)\n",
            t.task.train, t.task.test, t.test_queries, t.train_groups
        );
        let c = &t.comparison;
        let _ = write!(s, "| system | source |");
        for m in &c.measures {
            let _ = write!(s, " {m} |");
        }
        let _ = writeln!(s, " train tokens/s | rerank docs/s |");
        let _ = writeln!(s, "|{}", "---|".repeat(c.measures.len() + 4));
        for (i, sys) in c.systems.iter().enumerate() {
            let m = if i == 0 { None } else { t.models.get(i - 1) };
            let _ = write!(
                s,
                "| {sys} | {} |",
                m.map(|m| m.source.as_str()).unwrap_or("first stage")
            );
            for cell in &c.cells[i] {
                let star = if cell.significant { "*" } else { "" };
                let _ = write!(s, " {:.4}{star} |", cell.mean);
            }
            let f = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                " {} | {} |",
                f(m.and_then(|m| m.report.train_tokens_per_s)),
                f(m.and_then(|m| m.report.rerank_docs_per_s))
            );
            if i == 0 && !t.chance.is_empty() {
                let _ = write!(
                    s,
                    "| chance | {} shuffles of the top {} |",
                    t.chance[0].samples, p.depth
                );
                for b in &t.chance {
                    let _ = write!(s, " {:.4} [{:.4}-{:.4}] |", b.mean, b.lo, b.hi);
                }
                let _ = writeln!(s, " - | - |");
            }
        }
        s.push('\n');
    }
    s
}

/// Where `rankmamba reproduce` writes by default.
pub fn default_out(preset: &str) -> PathBuf {
    PathBuf::from("target/reproduce").join(preset)
}
