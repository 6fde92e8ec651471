//! `rankmamba rerank`: a first-stage TREC run in, a reranked TREC run out.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::ir_metrics::Run;
use rankmamba::models::{Init, ModelCard};
use rankmamba::study::{Collection, Job, Side, bi_encoder_run, compare_runs};
use rankmamba::with_backend;

#[derive(ClapArgs)]
pub struct Args {
    /// Model directory written by `rankmamba train`; with --bi-encoder, a sentence-embedding
    /// checkpoint (a HF BERT-style directory, or `minilm` for all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: PathBuf,
    /// Score by the cosine of mean-pooled embeddings, query and document each encoded alone
    /// (a sentence-embedding model zero-shot, as all-MiniLM-L6-v2 was trained): the reference
    /// row of a reranking table.
    #[arg(long)]
    pub bi_encoder: bool,
    /// Tokens per text with --bi-encoder.
    #[arg(long, default_value_t = 256, requires = "bi_encoder")]
    pub max_length: usize,
    /// Collection the run's queries and documents come from (name or path).
    #[arg(long)]
    pub dataset: String,
    /// First-stage run to rerank (default: the collection's BM25: `runs/bm25.trec`, or a
    /// tantivy BM25 for BEIR collections).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Output run (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Candidates reranked per query (the rest follow in first-stage order).
    #[arg(long, default_value_t = 100)]
    pub depth: usize,
    /// Judged queries reranked (the first by id; default all).
    #[arg(long)]
    pub queries: Option<usize>,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Also write the first-stage run that was reranked (the collection's BM25 unless --run),
    /// restricted to the judged queries reranked, as a TREC run (written atomically).
    #[arg(long)]
    pub first_stage_output: Option<PathBuf>,
    /// Print nDCG@10 / RR@10 / AP before and after (the collection's test qrels).
    #[arg(long)]
    pub eval: bool,
    /// Pad batch widths to a multiple of N tokens (default: 1 on cpu, 64 on GPU backends).
    #[arg(long)]
    pub pad_multiple: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// With --eval: print the table as JSON.
    #[arg(long, requires = "eval")]
    pub json: bool,
    /// No progress bar and no summary lines on stderr (errors still print).
    #[arg(long)]
    pub quiet: bool,
    /// Rerank only block I of N contiguous blocks of the first stage's queries (`0/4`...
    /// `3/4`), for one process of N; `rankmamba merge` joins the N runs, in order, into the
    /// single-process run.
    #[arg(long, value_name = "I/N", conflicts_with_all = ["eval", "devices"])]
    pub shard: Option<String>,
    /// Rerank on several devices of --backend at once, one model copy each: a count `N` or
    /// `cuda:0,cuda:1`. The queries are split into contiguous blocks; the run is the
    /// single-device run.
    #[arg(long, conflicts_with = "bi_encoder")]
    pub devices: Option<String>,
}

/// `--shard I/N` as `(I, N)`, `I < N`.
pub fn parse_shard(spec: &str) -> Result<(usize, usize)> {
    let parsed = spec.split_once('/').and_then(|(i, n)| {
        Some((
            i.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard {spec}: expected I/N with 0 <= I < N (e.g. 0/4)"),
    }
}

pub fn run(a: Args) -> Result<()> {
    a.backend.ensure_compiled()?;
    if a.depth == 0 || a.batch_size == 0 || a.queries == Some(0) {
        bail!("--depth, --batch-size and --queries must be positive");
    }
    if a.bi_encoder && !(2..=rankmamba::models::MAX_LENGTH_LIMIT).contains(&a.max_length) {
        bail!(
            "--max-length {} is outside 2..={}",
            a.max_length,
            rankmamba::models::MAX_LENGTH_LIMIT
        );
    }
    let (model_dir, source) = if a.bi_encoder {
        let dir = if a.model.as_os_str() == "minilm" {
            rankmamba::models::minilm_dir()?
        } else if !a.model.is_dir() && rankmamba::models::is_hub_id(&a.model.to_string_lossy()) {
            rankmamba::models::resolve_hub_model(&a.model.to_string_lossy())?
        } else {
            a.model.clone()
        };
        let source = format!("{} as a bi-encoder (mean pooling, cosine)", dir.display());
        (dir, source)
    } else {
        let dir = rankmamba::models::trained_dir(&a.model)?;
        let source = ModelCard::read(&dir)?.source;
        (dir, source)
    };
    let mut c = Collection::load(&a.dataset, Side::Test, a.queries, a.depth.max(100))?;
    if c.queries.is_empty() || c.first_stage.is_empty() {
        bail!(
            "{}: no judged test query with a relevant document and first-stage candidates: nothing to rerank",
            a.dataset
        );
    }
    if let Some(p) = &a.run {
        let run = Run::from_path(p)?;
        // The collection was loaded for BM25's candidates: load the texts this run names.
        let needed: std::collections::HashSet<String> = run
            .queries()
            .iter()
            .filter(|q| c.queries.contains(q.qid()))
            .flat_map(|q| q.ranked().into_iter().map(|(d, _)| d.to_string()))
            .collect();
        c.corpus =
            rankmamba::rank_data::Dataset::open(&a.dataset)?.corpus(|id| needed.contains(id))?;
        let mut fs = Run::new(run.name());
        for q in run.queries() {
            if c.queries.contains(q.qid()) {
                for (d, s) in q.ranked() {
                    if !c.corpus.contains(d) {
                        bail!(
                            "{}: document `{d}` (query {}) has no text in {}",
                            p.display(),
                            q.qid(),
                            a.dataset
                        );
                    }
                    fs.push(q.qid(), d, s)?;
                }
            }
        }
        if fs.is_empty() {
            bail!(
                "{}: none of its queries is a judged query of {}",
                p.display(),
                a.dataset
            );
        }
        c.first_stage = fs;
    }
    if let Some(spec) = &a.shard {
        let (i, n) = parse_shard(spec)?;
        c = c.shard(i, n)?;
        if c.queries.is_empty() {
            bail!(
                "--shard {spec}: block {i} of {n} holds no query ({} queries in all are fewer than {n} shards)",
                n
            );
        }
    }
    let devices = match &a.devices {
        Some(spec) => super::train::parse_devices(spec, a.backend)?,
        None => vec![0],
    };
    let name = a
        .model
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rankmamba".into());
    super::say(
        a.quiet,
        format!(
            "reranking {} queries x top {} of {} with {} ({})",
            c.queries.len(),
            a.depth,
            a.dataset,
            a.model.display(),
            source
        ),
    );
    let (run, rate) = if a.bi_encoder {
        // inference only: the backend without autodiff (on the autodiff backend every forward
        // would record a graph that nothing frees: memory grows with every batch)
        with_backend!(a.backend, |B, dev| bi_encoder_run::<
            <B as burn::tensor::backend::AutodiffBackend>::InnerBackend,
        >(
            &model_dir,
            &c,
            a.depth,
            a.batch_size,
            a.max_length,
            &name,
            &dev
        ))??
    } else if a.devices.is_some() {
        // also one named device (`--devices cuda:1`)
        rerank_on_devices(&a, &model_dir, &c, &name, &devices)?
    } else {
        rerank_job(&a, &model_dir, &c, &name)?
    };
    run.write_path(&a.output)?;
    if let Some(p) = &a.first_stage_output {
        c.first_stage.write_path(p)?;
    }
    super::say(
        a.quiet,
        format!("wrote {} ({rate:.1} documents/s)", a.output.display()),
    );
    if a.eval && c.queries.len() < 2 {
        // one query: the means alone (a paired test needs two or more queries)
        let measures = rankmamba::ir_metrics::parse_measure_list(rankmamba::study::MEASURES)?;
        let opts = rankmamba::ir_metrics::EvalOptions {
            relevance_level: c.level,
            ..Default::default()
        };
        let mut rows = Vec::new();
        for (system, r) in [("first-stage", &c.first_stage), (name.as_str(), &run)] {
            let e = rankmamba::ir_metrics::evaluate(&c.qrels, r, &measures, &opts)?;
            rows.push(serde_json::json!({"system": system, "means": e.means}));
        }
        if a.json {
            let v = serde_json::json!({"measures": rankmamba::study::MEASURES, "queries": c.queries.len(), "systems": rows});
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("{:<24} {}", "system", rankmamba::study::MEASURES.join("  "));
            for r in &rows {
                let means: Vec<String> = r["means"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| format!("{:.4}", m.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                println!(
                    "{:<24} {}",
                    r["system"].as_str().unwrap_or(""),
                    means.join("  ")
                );
            }
            println!("(one query: no significance test)");
        }
    } else if a.eval {
        let cmp = compare_runs(&c, &[("first-stage", &c.first_stage), (&name, &run)])?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&cmp)?);
        } else {
            print!("{}", cmp.table());
        }
    }
    Ok(())
}

/// `--devices`: the queries of `c` in contiguous blocks, one per device, each reranked by its
/// own model copy on its own thread; the runs joined in order (the single-device run) and the
/// documents/s of the whole.
fn rerank_on_devices(
    a: &Args,
    model_dir: &std::path::Path,
    c: &Collection,
    name: &str,
    indices: &[usize],
) -> Result<(Run, f64)> {
    let blocks = (0..indices.len())
        .map(|i| c.shard(i, indices.len()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let t0 = std::time::Instant::now();
    let runs = with_backend!(a.backend, |B, dev| {
        let devices = super::train::replica_devices(&dev, a.backend, indices);
        std::thread::scope(|s| {
            let handles: Vec<_> = blocks
                .iter()
                .zip(devices)
                .filter(|(block, _)| !block.queries.is_empty())
                .map(|(block, device)| {
                    s.spawn(move || {
                        rerank_of(a, model_dir, block, name, false)
                            .run::<B>(&Init::Trained, &device)
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    let out = h.join().map_err(|_| {
                        anyhow::anyhow!("device block {i}: the reranking thread panicked")
                    })??;
                    let run = out
                        .0
                        .ok_or_else(|| anyhow::anyhow!("device block {i}: no run"))?;
                    Ok((format!("device block {i}"), run))
                })
                .collect::<Result<Vec<_>>>()
        })
    })??;
    let docs: usize = runs
        .iter()
        .flat_map(|(_, r)| r.queries())
        .map(|q| q.ranked().len().min(a.depth))
        .sum();
    let run = rankmamba::study::concat_runs(&runs, name)?;
    Ok((run, docs as f64 / t0.elapsed().as_secs_f64().max(1e-9)))
}

/// The reranking job of `--model` over `c` with the command's settings.
fn rerank_of<'a>(
    a: &Args,
    model_dir: &'a std::path::Path,
    c: &'a Collection,
    name: &str,
    progress: bool,
) -> Job<'a> {
    Job {
        dir: model_dir,
        train: None,
        checkpoint_every: None,
        rerank: Some((c, a.depth)),
        batch_size: a.batch_size,
        progress,
        run_name: name.to_string(),
        pad_multiple: a.pad_multiple.unwrap_or_else(|| a.backend.pad_multiple()),
        nodes: None,
        checkpoints: None,
    }
}

/// The cross-encoder of model directory `--model` reranking `c`: the run and documents/s.
fn rerank_job(
    a: &Args,
    model_dir: &std::path::Path,
    c: &Collection,
    name: &str,
) -> Result<(Run, f64)> {
    let job = rerank_of(a, model_dir, c, name, !a.quiet);
    let (run, report) = with_backend!(a.backend, |B, dev| job.run::<B>(&Init::Trained, &dev))??;
    let run = run.ok_or_else(|| anyhow::anyhow!("no run"))?;
    Ok((run, report.rerank_docs_per_s.unwrap_or(0.0)))
}
