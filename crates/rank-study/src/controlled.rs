//! The controlled study: Mamba against a same-size GPT-NeoX transformer, both pretrained here
//! on the same text with the same tokenizer, tokens and schedule, then fine-tuned as
//! cross-encoders with one recipe, several seeds per cell, and tested model against model.
//!
//! [`run`] does it all: a byte-level BPE tokenizer trained on the corpus; causal-LM
//! pretraining of both backbones ([`crate::pretrain`]); per task and seed, LCE fine-tuning
//! (last-token pooling, the paper's document-first template) of each pretrained backbone, of
//! its random-init twin, and of the pretrained backbone with the query-first template;
//! reranking the BM25 candidates; mean ± sd over seeds; paired t-tests over queries (each
//! query's measure averaged over the seeds), Holm-corrected over the planned comparisons;
//! the chance band of random orders. It writes `controlled.json` and `controlled.md`.

use std::path::Path;
use std::time::Instant;
use transformer_baselines::FlashAttentionBackend;

use burn::tensor::backend::AutodiffBackend;
use ir_metrics::{EvalOptions, Measure, Run, evaluate};
use mamba_ssm::SelectiveScanBackend;
use rank_data::text::TextCorpus;
use rank_heads::lm::{EOS_TOKEN, PackedCorpus, train_tokenizer};
use rank_heads::{PAPER_DECODER_TEMPLATE, Pooling, QUERY_FIRST_TEMPLATE, TemplateStyle};
use serde::{Deserialize, Serialize};

use crate::models::{self, Init};
use crate::pretrain::{LmArch, LmSize, PretrainReport, PretrainSettings};
use crate::study::{
    Collection, Job, Side, StudyError, Task, TrainData, TrainSettings, chance_band,
};

fn wrap<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> StudyError {
    move |e| StudyError(format!("{what}: {e}"))
}

/// Settings of the controlled study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlledPreset {
    /// `toy` or `10m`.
    pub name: String,
    /// The pretraining text (a name found by the data lookup order, or a path).
    pub corpus: String,
    /// Use only the first this many documents of the corpus.
    pub corpus_docs: Option<usize>,
    /// Tokenizer vocabulary (trained on the corpus).
    pub vocab_size: usize,
    /// Backbone size.
    pub size: LmSize,
    /// Pretraining: tokens per sequence.
    pub seq_len: usize,
    /// Pretraining: sequences per step.
    pub pretrain_batch: usize,
    /// Pretraining: optimizer steps (both architectures).
    pub pretrain_steps: usize,
    /// Pretraining: peak learning rate.
    pub pretrain_lr: f64,
    /// Train -> test pairings.
    pub tasks: Vec<Task>,
    /// Fine-tuning (the seed is replaced by each of `seeds`).
    pub finetune: TrainSettings,
    /// Fine-tuning peak learning rate of pretrained backbones.
    pub lr_pretrained: f64,
    /// Fine-tuning peak learning rate of random-init backbones.
    pub lr_scratch: f64,
    /// Fine-tuning seeds (sampler, head, dropout, and the random-init backbones).
    pub seeds: Vec<u64>,
    /// Token limit of a pair.
    pub max_length: usize,
    /// BM25 candidates reranked per query.
    pub depth: usize,
    /// Judged test queries (the first by id; None = all).
    pub test_queries: Option<usize>,
    /// Training queries (None = all).
    pub train_queries: Option<usize>,
    /// Reranking batch size.
    pub batch_size: usize,
    /// Batch widths padded to a multiple of this.
    pub pad_multiple: usize,
}

impl ControlledPreset {
    /// `toy`: the whole protocol in about a minute on a CPU (tiny models, a slice of the
    /// corpus, a few queries), for tests; `cpu`: tiny models (0.1M non-embedding parameters)
    /// pretrained on 0.6M tokens of the whole corpus, SciFact's first 100 test queries, in
    /// about half an hour on two cores; `10m`: the study at about 10M non-embedding parameters
    /// on one GPU.
    pub fn named(name: &str) -> Result<Self, StudyError> {
        let scifact = Task {
            train: "scifact".into(),
            test: "scifact".into(),
        };
        match name {
            "toy" => Ok(ControlledPreset {
                name: name.into(),
                corpus: "pretrain".into(),
                corpus_docs: Some(300),
                vocab_size: 1000,
                size: LmSize::Tiny,
                seq_len: 64,
                pretrain_batch: 8,
                pretrain_steps: 30,
                pretrain_lr: 3e-3,
                tasks: vec![scifact],
                finetune: TrainSettings {
                    steps: 3,
                    group_size: 2,
                    groups_per_step: 2,
                    negatives_top_k: 10,
                    ..TrainSettings::default()
                },
                lr_pretrained: 1e-3,
                lr_scratch: 1e-3,
                seeds: vec![1, 2, 3],
                max_length: 128,
                depth: 10,
                test_queries: Some(12),
                train_queries: Some(12),
                batch_size: 16,
                pad_multiple: 1,
            }),
            "cpu" => Ok(ControlledPreset {
                name: name.into(),
                corpus: "pretrain".into(),
                corpus_docs: None,
                vocab_size: 2048,
                size: LmSize::Tiny,
                seq_len: 128,
                pretrain_batch: 16,
                pretrain_steps: 300,
                pretrain_lr: 3e-3,
                tasks: vec![scifact.clone()],
                finetune: TrainSettings {
                    steps: 40,
                    group_size: 4,
                    groups_per_step: 4,
                    negatives_top_k: 20,
                    ..TrainSettings::default()
                },
                lr_pretrained: 1e-3,
                lr_scratch: 1e-3,
                seeds: vec![1, 2, 3],
                max_length: 160,
                depth: 20,
                test_queries: Some(100),
                train_queries: None,
                batch_size: 32,
                pad_multiple: 1,
            }),
            "10m" => Ok(ControlledPreset {
                name: name.into(),
                corpus: "pretrain".into(),
                corpus_docs: None,
                vocab_size: 8192,
                size: LmSize::M10,
                seq_len: 256,
                pretrain_batch: 64,
                pretrain_steps: 1000,
                pretrain_lr: 1e-3,
                tasks: vec![
                    scifact,
                    Task {
                        train: "dl19".into(),
                        test: "dl20".into(),
                    },
                    Task {
                        train: "dl20".into(),
                        test: "dl19".into(),
                    },
                ],
                finetune: TrainSettings {
                    steps: 300,
                    group_size: 8,
                    groups_per_step: 16,
                    negatives_top_k: 30,
                    ..TrainSettings::default()
                },
                lr_pretrained: 1e-4,
                lr_scratch: 1e-3,
                seeds: vec![1, 2, 3],
                max_length: 256,
                depth: 100,
                test_queries: None,
                train_queries: None,
                batch_size: 128,
                pad_multiple: 64,
            }),
            other => Err(StudyError(format!(
                "unknown controlled preset {other:?}: expected toy, cpu or 10m"
            ))),
        }
    }
}

/// A fine-tuned system of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct System {
    /// Backbone family.
    pub arch: LmArch,
    /// Pretrained here (true) or its random-init twin.
    pub pretrained: bool,
    /// Query-first template instead of the paper's document-first one.
    pub query_first: bool,
}

impl System {
    /// `mamba`, `gpt-neox-random`, `mamba-query-first`...
    pub fn name(&self) -> String {
        let mut s = match self.arch {
            LmArch::Mamba => "mamba".to_string(),
            LmArch::GptNeox => "gpt-neox".to_string(),
        };
        if !self.pretrained {
            s.push_str("-random");
        }
        if self.query_first {
            s.push_str("-query-first");
        }
        s
    }
}

/// The systems, in table order.
pub fn systems() -> Vec<System> {
    let mut v = Vec::new();
    for (pretrained, query_first) in [(true, false), (false, false), (true, true)] {
        for arch in [LmArch::Mamba, LmArch::GptNeox] {
            v.push(System {
                arch,
                pretrained,
                query_first,
            });
        }
    }
    v
}

/// One system on one task, over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The system.
    pub system: String,
    /// Per seed: the mean of each measure.
    pub per_seed: Vec<Vec<f64>>,
    /// Mean over seeds, per measure.
    pub mean: Vec<f64>,
    /// Sample standard deviation over seeds, per measure.
    pub sd: Vec<f64>,
    /// Fine-tuning throughput (tokens/s), mean over seeds.
    pub train_tokens_per_s: f64,
}

/// A planned comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Test {
    /// `a vs b`.
    pub a: String,
    /// The other system.
    pub b: String,
    /// Mean difference `a - b` of the first measure (nDCG@10), seed-averaged per query.
    pub diff: f64,
    /// Two-sided paired t-test p-value over queries.
    pub p: f64,
    /// Holm-adjusted over all planned comparisons of the task.
    pub p_holm: f64,
}

/// One task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskOutcome {
    /// The pairing.
    pub task: Task,
    /// Judged test queries.
    pub test_queries: usize,
    /// BM25's means.
    pub bm25: Vec<f64>,
    /// The chance band.
    pub chance: Vec<ir_metrics::ChanceBand>,
    /// The systems.
    pub cells: Vec<Cell>,
    /// The planned comparisons on nDCG@10.
    pub tests: Vec<Test>,
}

/// `controlled.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ControlledReport {
    /// The settings.
    pub preset: ControlledPreset,
    /// Backend.
    pub backend: String,
    /// The measures of every table.
    pub measures: Vec<String>,
    /// Pretraining of each architecture.
    pub pretraining: Vec<PretrainReport>,
    /// Per task.
    pub tasks: Vec<TaskOutcome>,
    /// Wall time (s).
    pub wall_s: f64,
}

/// The measures of the study's tables.
pub const MEASURES: &[&str] = &["nDCG@10", "RR@10"];

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

/// Runs the controlled study on backend `B` into `out`.
pub fn run<B>(
    preset: &ControlledPreset,
    backend: &str,
    out: &Path,
    device: &B::Device,
    progress: bool,
) -> Result<ControlledReport, StudyError>
where
    B: AutodiffBackend + SelectiveScanBackend + FlashAttentionBackend,
    B::InnerBackend: SelectiveScanBackend + FlashAttentionBackend,
{
    let t0 = Instant::now();
    let p = preset;
    if p.seeds.is_empty() {
        return Err(StudyError("the preset has no seeds".into()));
    }
    // Inputs first: the corpus and every collection load before anything is written.
    let corpus = TextCorpus::open(&p.corpus).map_err(wrap("pretraining corpus"))?;
    let mut docs = corpus.documents().map_err(wrap(corpus.root().display()))?;
    if let Some(n) = p.corpus_docs {
        docs.truncate(n);
    }
    let mut loaded = Vec::new();
    for task in &p.tasks {
        let train = Collection::load(
            &task.train,
            Side::Train,
            p.train_queries,
            p.finetune.negatives_top_k.max(p.depth),
        )?;
        let test = Collection::load(&task.test, Side::Test, p.test_queries, p.depth.max(100))?;
        loaded.push((task, train, test));
    }
    std::fs::create_dir_all(out).map_err(wrap(out.display()))?;

    eprintln!(
        "== tokenizer: {} ids on {} documents",
        p.vocab_size,
        docs.len()
    );
    let tok = train_tokenizer(&docs, p.vocab_size).map_err(wrap("tokenizer"))?;
    let tok_path = out.join("tokenizer.json");
    let json = tok.to_string(false).map_err(wrap("tokenizer"))?;
    safe_write::write_bytes(&tok_path, json.as_bytes()).map_err(wrap(tok_path.display()))?;
    let eos = tok
        .token_to_id(EOS_TOKEN)
        .ok_or_else(|| StudyError(format!("the tokenizer has no {EOS_TOKEN}")))?;
    let packed =
        PackedCorpus::pack(&tok, &docs, eos, p.seq_len, 100).map_err(wrap("packing the corpus"))?;
    drop(docs);

    let mut pretraining = Vec::new();
    for arch in [LmArch::Mamba, LmArch::GptNeox] {
        let dir = out.join("pretrain").join(arch_name(arch));
        eprintln!(
            "== pretraining {} {:?}: {} steps",
            arch_name(arch),
            p.size,
            p.pretrain_steps
        );
        let settings = PretrainSettings {
            arch,
            size: p.size,
            seq_len: p.seq_len,
            batch_size: p.pretrain_batch,
            steps: p.pretrain_steps,
            lr: p.pretrain_lr,
            warmup: 0.05,
            weight_decay: 0.1,
            seed: 1,
            eval_every: (p.pretrain_steps / 8).max(1),
            eval_sequences: 512,
            checkpoint_every: None,
            stop_after: None,
            log_every: 10,
            progress,
        };
        let r = crate::pretrain::pretrain::<B>(&settings, &packed, &tok_path, &dir, device)
            .map_err(wrap(dir.display()))?;
        pretraining.push(r);
    }

    let mut tasks = Vec::new();
    for (task, train_c, test_c) in &loaded {
        let tdir = out.join(task.name());
        std::fs::create_dir_all(&tdir).map_err(wrap(tdir.display()))?;
        test_c
            .first_stage
            .write_path(tdir.join("bm25.trec"))
            .map_err(wrap(tdir.join("bm25.trec").display()))?;
        let mut seed_runs = Vec::new();
        for sys in systems() {
            let backbone = out.join("pretrain").join(arch_name(sys.arch));
            for &seed in &p.seeds {
                let mdir = tdir.join(format!("{}-seed{seed}", sys.name()));
                let (mut card, init) =
                    models::prepare(&backbone.to_string_lossy(), p.max_length, &mdir)?;
                card.pooling = Pooling::LastToken;
                if let TemplateStyle::Decoder { template, .. } = &mut card.template {
                    *template = if sys.query_first {
                        QUERY_FIRST_TEMPLATE
                    } else {
                        PAPER_DECODER_TEMPLATE
                    }
                    .to_string();
                }
                let init = if sys.pretrained { init } else { Init::Random };
                if !sys.pretrained {
                    card.source = format!("{} (random init)", backbone.display());
                }
                card.write(&mdir)?;
                let settings = TrainSettings {
                    seed,
                    lr: if sys.pretrained {
                        p.lr_pretrained
                    } else {
                        p.lr_scratch
                    },
                    ..p.finetune.clone()
                };
                let data = TrainData::new(train_c, &settings)?;
                eprintln!("== {}: {} seed {seed}", task.name(), sys.name());
                let job = Job {
                    dir: &mdir,
                    train: Some(&data),
                    checkpoint_every: None,
                    rerank: Some((test_c, p.depth)),
                    batch_size: p.batch_size,
                    progress,
                    run_name: sys.name(),
                    pad_multiple: p.pad_multiple,
                    nodes: None,
                    checkpoints: None,
                };
                let (run, report) = job.run::<B>(&init, device)?;
                let run = run.ok_or_else(|| StudyError("no run".into()))?;
                run.write_path(mdir.join("run.trec"))
                    .map_err(wrap(mdir.join("run.trec").display()))?;
                seed_runs.push(SeedRun {
                    system: sys.name(),
                    seed,
                    run,
                    train_tokens_per_s: report.train_tokens_per_s.unwrap_or(f64::NAN),
                });
            }
        }
        tasks.push(analyse(task, test_c, p.depth, &seed_runs)?);
    }
    let report = ControlledReport {
        preset: p.clone(),
        backend: backend.to_string(),
        measures: MEASURES.iter().map(|s| s.to_string()).collect(),
        pretraining,
        tasks,
        wall_s: t0.elapsed().as_secs_f64(),
    };
    let json = out.join("controlled.json");
    safe_write::write_bytes(
        &json,
        &serde_json::to_vec_pretty(&report).map_err(wrap(json.display()))?,
    )
    .map_err(wrap(json.display()))?;
    let md = out.join("controlled.md");
    safe_write::write_bytes(&md, markdown(&report).as_bytes()).map_err(wrap(md.display()))?;
    Ok(report)
}

/// One fine-tuned run of the study: the system, the seed, its reranked run and the
/// fine-tuning throughput.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// [`System::name`].
    pub system: String,
    /// The fine-tuning seed.
    pub seed: u64,
    /// The reranked test run.
    pub run: Run,
    /// Fine-tuning tokens/s (NaN when unknown: the table then shows `-`).
    pub train_tokens_per_s: f64,
}

/// The tables of one task from its runs, wherever they were made (this process, or
/// `rankmamba train` / `rerank` on another machine): per system the mean ± sd over seeds of
/// nDCG@10 and RR@10, BM25's figures, the chance band of `depth` shuffled candidates, and the
/// planned paired t-tests on seed-averaged per-query nDCG@10, Holm-corrected.
pub fn analyse(
    task: &Task,
    test_c: &Collection,
    depth: usize,
    runs: &[SeedRun],
) -> Result<TaskOutcome, StudyError> {
    let measures: Vec<Measure> = MEASURES
        .iter()
        .map(|m| m.parse().map_err(wrap(m)))
        .collect::<Result<_, _>>()?;
    let opts = EvalOptions {
        relevance_level: test_c.level,
        ..EvalOptions::default()
    };
    let eval = |run: &Run| evaluate(&test_c.qrels, run, &measures, &opts);
    let bm25 = eval(&test_c.first_stage).map_err(wrap("BM25"))?;
    let mut cells = Vec::new();
    // per system: query -> nDCG@10 averaged over seeds
    let mut per_query: Vec<(String, std::collections::BTreeMap<String, f64>)> = Vec::new();
    for sys in systems() {
        let name = sys.name();
        let mine: Vec<&SeedRun> = runs.iter().filter(|r| r.system == name).collect();
        if mine.is_empty() {
            continue;
        }
        let (mut per_seed, mut tps) = (Vec::new(), Vec::new());
        let mut avg: std::collections::BTreeMap<String, f64> = Default::default();
        for r in &mine {
            let e = eval(&r.run).map_err(wrap(format!("{name} seed {}", r.seed)))?;
            for (q, v) in &e.per_query {
                *avg.entry(q.clone()).or_default() += v[0] / mine.len() as f64;
            }
            per_seed.push(e.means.clone());
            tps.push(r.train_tokens_per_s);
        }
        let (mean, sd): (Vec<f64>, Vec<f64>) = (0..measures.len())
            .map(|i| mean_sd(&per_seed.iter().map(|s| s[i]).collect::<Vec<_>>()))
            .unzip();
        cells.push(Cell {
            system: name.clone(),
            per_seed,
            mean,
            sd,
            train_tokens_per_s: mean_sd(&tps).0,
        });
        per_query.push((name, avg));
    }
    if let Some(r) = runs
        .iter()
        .find(|r| !systems().iter().any(|s| s.name() == r.system))
    {
        return Err(StudyError(format!(
            "run of unknown system {:?} (expected one of {})",
            r.system,
            systems()
                .iter()
                .map(System::name)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let bm25_q: std::collections::BTreeMap<String, f64> = bm25
        .per_query
        .iter()
        .map(|(q, v)| (q.clone(), v[0]))
        .collect();
    per_query.push(("bm25".into(), bm25_q));
    Ok(TaskOutcome {
        task: task.clone(),
        test_queries: test_c.queries.len(),
        bm25: bm25.means,
        chance: chance_band(test_c, depth)?,
        cells,
        tests: planned_tests(&per_query)?,
    })
}

fn arch_name(a: LmArch) -> &'static str {
    match a {
        LmArch::Mamba => "mamba",
        LmArch::GptNeox => "gpt-neox",
    }
}

/// Mamba against GPT-NeoX (same template), each pretrained system against its random-init
/// twin and against BM25, and each template against the other: paired t-tests over the
/// queries every system has, Holm-corrected over the comparisons.
fn planned_tests(
    per_query: &[(String, std::collections::BTreeMap<String, f64>)],
) -> Result<Vec<Test>, StudyError> {
    let pairs = [
        ("mamba", "gpt-neox"),
        ("mamba-query-first", "gpt-neox-query-first"),
        ("mamba-random", "gpt-neox-random"),
        ("mamba", "mamba-random"),
        ("gpt-neox", "gpt-neox-random"),
        ("mamba", "bm25"),
        ("gpt-neox", "bm25"),
        ("mamba", "mamba-query-first"),
        ("gpt-neox", "gpt-neox-query-first"),
    ];
    let get = |n: &str| per_query.iter().find(|(m, _)| m == n).map(|(_, v)| v);
    let mut tests = Vec::new();
    let mut ps = Vec::new();
    for (a, b) in pairs {
        let (Some(qa), Some(qb)) = (get(a), get(b)) else {
            continue;
        };
        let qs: Vec<&String> = qa.keys().filter(|q| qb.contains_key(*q)).collect();
        let va: Vec<f64> = qs.iter().map(|q| qa[*q]).collect();
        let vb: Vec<f64> = qs.iter().map(|q| qb[*q]).collect();
        let t = ir_metrics::stats::paired_t_test(&va, &vb).map_err(wrap(format!("{a} vs {b}")))?;
        let diff = va.iter().zip(&vb).map(|(x, y)| x - y).sum::<f64>() / va.len().max(1) as f64;
        ps.push(t.p_value);
        tests.push(Test {
            a: a.into(),
            b: b.into(),
            diff,
            p: t.p_value,
            p_holm: f64::NAN,
        });
    }
    let adj = ir_metrics::stats::holm_bonferroni(&ps).map_err(wrap("Holm correction"))?;
    for (t, p) in tests.iter_mut().zip(adj) {
        t.p_holm = p;
    }
    Ok(tests)
}

/// The report as Markdown tables.
pub fn markdown(r: &ControlledReport) -> String {
    use std::fmt::Write;
    let p = &r.preset;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Controlled study, preset {} ({} backend)\n\nBoth backbones pretrained here on the same \
         text ({} documents of `{}`), byte-level BPE of {} ids, {} steps of {} x {} tokens, lr {}; \
         then fine-tuned per seed ({} seeds) with LCE, {} steps x {} groups of {}, last-token \
         pooling, lr {} (pretrained) / {} (random init), max length {}; the BM25 top {} reranked. \
         Wall time {:.0} s.\n",
        p.name,
        r.backend,
        p.corpus_docs.map_or("all".into(), |n| n.to_string()),
        p.corpus,
        p.vocab_size,
        p.pretrain_steps,
        p.pretrain_batch,
        p.seq_len,
        p.pretrain_lr,
        p.seeds.len(),
        p.finetune.steps,
        p.finetune.groups_per_step,
        p.finetune.group_size,
        p.lr_pretrained,
        p.lr_scratch,
        p.max_length,
        p.depth,
        r.wall_s
    );
    s.push_str(&pretraining_markdown(&r.pretraining));
    for t in &r.tasks {
        s.push_str(&task_markdown(t, &r.measures));
    }
    s
}

/// One task's tables (systems, BM25, chance band, planned tests) as Markdown.
pub fn task_markdown(t: &TaskOutcome, measures: &[String]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## train {} -> test {} ({} queries)\n\n| system | {} | fine-tune tokens/s |\n|---|{}---|",
        t.task.train,
        t.task.test,
        t.test_queries,
        measures
            .iter()
            .map(|m| format!("{m} (mean ± sd)"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(measures.len())
    );
    let _ = write!(s, "| BM25 |");
    for v in &t.bm25 {
        let _ = write!(s, " {v:.4} |");
    }
    let _ = writeln!(s, " - |");
    if let Some(first) = t.chance.first() {
        let _ = write!(s, "| chance ({} shuffles) |", first.samples);
        // the study's chance measures start with this table's (nDCG@10, RR@10)
        for b in t.chance.iter().take(measures.len()) {
            let _ = write!(s, " {:.4} [{:.4}-{:.4}] |", b.mean, b.lo, b.hi);
        }
        let _ = writeln!(s, " - |");
    }
    for c in &t.cells {
        let _ = write!(s, "| {} |", c.system);
        for (m, d) in c.mean.iter().zip(&c.sd) {
            let _ = write!(s, " {m:.4} ± {d:.4} |");
        }
        if c.train_tokens_per_s.is_finite() {
            let _ = writeln!(s, " {:.0} |", c.train_tokens_per_s);
        } else {
            let _ = writeln!(s, " - |");
        }
    }
    let _ = writeln!(
        s,
        "\nPaired t-tests on nDCG@10 over queries (each query averaged over the seeds), Holm-corrected over these comparisons:\n\n| comparison | difference | p | p (Holm) |\n|---|---|---|---|"
    );
    for x in &t.tests {
        let star = if x.p_holm < 0.05 { " *" } else { "" };
        let _ = writeln!(
            s,
            "| {} vs {} | {:+.4} | {:.4} | {:.4}{star} |",
            x.a, x.b, x.diff, x.p, x.p_holm
        );
    }
    s
}

/// The pretraining table (parameters, tokens, last held-out loss and perplexity, tokens/s) as
/// Markdown.
pub fn pretraining_markdown(reports: &[PretrainReport]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Pretraining\n\n| backbone | non-embedding params | embedding params | tokens | held-out loss | perplexity | tokens/s |\n|---|---|---|---|---|---|---|"
    );
    for t in reports {
        let last = t.validation.last();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {:.1} | {:.0} |",
            arch_name(t.settings.arch),
            t.non_embedding_params,
            t.embedding_params,
            t.tokens_seen,
            last.map_or(f64::NAN, |v| v.loss),
            last.map_or(f64::NAN, |v| v.perplexity),
            t.tokens_per_s
        );
    }
    s
}

/// The held-out perplexity curves of `reports`: `(architecture, [(tokens, perplexity)])`.
pub fn perplexity_curves(reports: &[PretrainReport]) -> Vec<(String, Vec<(f64, f64)>)> {
    reports
        .iter()
        .map(|r| {
            (
                arch_name(r.settings.arch).to_string(),
                r.validation
                    .iter()
                    .map(|v| (v.tokens as f64, v.perplexity))
                    .collect(),
            )
        })
        .collect()
}
