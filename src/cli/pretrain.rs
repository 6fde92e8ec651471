//! `rankmamba pretrain`: causal-LM pretraining of a Mamba or GPT-NeoX backbone on a text
//! corpus; `rankmamba tokenizer`: a byte-level BPE tokenizer trained on one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use rankmamba::backend::BackendKind;
use rankmamba::pretrain::{LmArch, LmSize, PretrainSettings};
use rankmamba::rank_data::text::TextCorpus;
use rankmamba::rank_heads::lm::{EOS_TOKEN, PackedCorpus, train_tokenizer};
use rankmamba::with_backend;

#[derive(ClapArgs)]
pub struct Args {
    /// Backbone family.
    #[arg(long, value_enum)]
    pub arch: LmArch,
    /// Size: GPT-NeoX n layers of width d against Mamba 2n layers of width d (non-embedding
    /// parameters within 10%).
    #[arg(long, value_enum, default_value = "10m")]
    pub size: LmSize,
    /// Text corpus: a name found by the data lookup order (`pretrain`) or a path (./dir) to a
    /// folder of *.txt / *.txt.xz files, one document per blank-line-separated block.
    #[arg(long, default_value = "pretrain")]
    pub corpus: String,
    /// The tokenizer (`tokenizer.json`; `rankmamba tokenizer` trains one on the corpus). Its
    /// `<|endoftext|>` separates documents.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Tokens per training sequence.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Sequences per optimizer step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Optimizer steps (default: one pass over the training sequences).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warmup, as a fraction of the steps.
    #[arg(long, default_value_t = 0.05)]
    pub warmup: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Hold every N-th packed sequence out for validation.
    #[arg(long, default_value_t = 100)]
    pub holdout_every: usize,
    /// Evaluate the held-out loss every N steps (default: 10 times per run).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Held-out sequences evaluated (the first ones).
    #[arg(long, default_value_t = 256)]
    pub eval_sequences: usize,
    /// Seed of the initialisation and the data order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Checkpoint every N steps into OUT/checkpoints; a rerun resumes from the newest.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Stop after N steps in this call (needs --checkpoint-every; rerun the same command to
    /// continue exactly where it stopped).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Write a pretrain.jsonl line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Output: a HF checkpoint directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`) that `rankmamba train --model DIR` fine-tunes, with
    /// `pretrain_report.json` and `pretrain.jsonl`.
    #[arg(short, long)]
    pub out: PathBuf,
}

fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let tok = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| anyhow::anyhow!("{}: not a tokenizer.json: {e}", path.display()))?;
    Ok(tok)
}

pub fn run(a: Args) -> Result<()> {
    a.backend.ensure_compiled()?;
    if a.batch_size == 0 || a.log_every == 0 || a.eval_sequences == 0 {
        bail!("--batch-size, --log-every and --eval-sequences must be positive");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", a.lr);
    }
    if !(0.0..=1.0).contains(&a.warmup) {
        bail!("--warmup must be a fraction in [0, 1], got {}", a.warmup);
    }
    if a.steps == Some(0) || a.eval_every == Some(0) || a.checkpoint_every == Some(0) {
        bail!("--steps, --eval-every and --checkpoint-every must be positive");
    }
    if a.stop_after.is_some() && a.checkpoint_every.is_none() {
        bail!("--stop-after needs --checkpoint-every (the next call resumes from the checkpoint)");
    }
    if a.stop_after == Some(0) {
        bail!("--stop-after must be positive");
    }
    // Every input is read and checked before anything is written.
    let tokenizer = load_tokenizer(&a.tokenizer)?;
    let Some(eos) = tokenizer.token_to_id(EOS_TOKEN) else {
        bail!(
            "{}: the tokenizer has no {EOS_TOKEN} token to separate documents (`rankmamba tokenizer` trains one that has)",
            a.tokenizer.display()
        );
    };
    let corpus = TextCorpus::open(&a.corpus)?;
    let docs = corpus.documents()?;
    eprintln!(
        "tokenizing {} documents of {} ...",
        docs.len(),
        corpus.root().display()
    );
    let packed = PackedCorpus::pack(&tokenizer, &docs, eos, a.seq_len, a.holdout_every)
        .with_context(|| format!("corpus {}", corpus.root().display()))?;
    drop(docs);
    let steps = a
        .steps
        .unwrap_or_else(|| (packed.train_len() / a.batch_size).max(1));
    let settings = PretrainSettings {
        arch: a.arch,
        size: a.size,
        seq_len: a.seq_len,
        batch_size: a.batch_size,
        steps,
        lr: a.lr,
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        seed: a.seed,
        eval_every: a.eval_every.unwrap_or((steps / 10).max(1)),
        eval_sequences: a.eval_sequences,
        checkpoint_every: a.checkpoint_every,
        stop_after: a.stop_after,
        log_every: a.log_every,
        progress: !a.quiet,
    };
    eprintln!(
        "pretraining {:?} {:?}: {} training sequences of {} tokens ({} held out), vocabulary {}, {} steps of {} sequences",
        a.arch,
        a.size,
        packed.train_len(),
        a.seq_len,
        packed.valid_len(),
        packed.vocab_size,
        steps,
        a.batch_size
    );
    let report = with_backend!(a.backend, |B, dev| rankmamba::pretrain::pretrain::<B>(
        &settings,
        &packed,
        &a.tokenizer,
        &a.out,
        &dev
    ))??;
    let last = report.validation.last();
    eprintln!(
        "wrote {} after {} of {} steps: {} non-embedding + {} embedding parameters, {} tokens ({:.2} epochs), {:.0} tokens/s, held-out loss {:.4} (perplexity {:.2})",
        a.out.display(),
        report.steps_done,
        steps,
        report.non_embedding_params,
        report.embedding_params,
        report.tokens_seen,
        report.epochs,
        report.tokens_per_s,
        last.map_or(f64::NAN, |v| v.loss),
        last.map_or(f64::NAN, |v| v.perplexity),
    );
    Ok(())
}

#[derive(ClapArgs)]
pub struct TokenizerArgs {
    /// Text corpus (name or path, as `pretrain --corpus`).
    #[arg(long, default_value = "pretrain")]
    pub corpus: String,
    /// Vocabulary size (256 bytes, 2 special tokens and the merges).
    #[arg(long, default_value_t = 8192)]
    pub vocab_size: usize,
    /// Output `tokenizer.json` (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn tokenizer(a: TokenizerArgs) -> Result<()> {
    let corpus = TextCorpus::open(&a.corpus)?;
    let docs = corpus.documents()?;
    eprintln!(
        "training a {}-id byte-level BPE on {} documents of {} ...",
        a.vocab_size,
        docs.len(),
        corpus.root().display()
    );
    let tok = train_tokenizer(&docs, a.vocab_size)?;
    let json = tok
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
    safe_write::write_bytes(&a.output, json.as_bytes())
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "wrote {} ({} ids)",
        a.output.display(),
        tok.get_vocab_size(true)
    );
    Ok(())
}

#[derive(ClapArgs)]
pub struct ControlledArgs {
    /// `toy` (the whole protocol on a CPU in about a minute, for tests), `cpu` (tiny models,
    /// about half an hour on two cores) or `10m` (one GPU).
    #[arg(long, default_value = "10m", value_parser = ["toy", "cpu", "10m"])]
    pub preset: String,
    /// Output folder (default: target/controlled/PRESET).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Override the preset's pretraining steps.
    #[arg(long)]
    pub pretrain_steps: Option<usize>,
    /// Override the preset's fine-tuning steps.
    #[arg(long)]
    pub finetune_steps: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Instead of running the protocol, tabulate runs made elsewhere (say, by `train` and
    /// `rerank` on a GPU machine): DIR holds `SYSTEM-sSEED.trec` (SYSTEM: mamba, gpt-neox,
    /// mamba-random, gpt-neox-random, mamba-query-first, gpt-neox-query-first) and, when
    /// present, the model folder `SYSTEM-sSEED/` with its `train_report.json`, and the
    /// pretraining folders `pretrain-mamba/`, `pretrain-gpt-neox/` with their
    /// `pretrain_report.json`. Writes `controlled-runs.json`, `.md` and `perplexity.svg` into
    /// --out when given.
    #[arg(long, value_name = "DIR")]
    pub analyse: Option<PathBuf>,
    /// With --analyse: the test collection the runs rerank.
    #[arg(long, default_value = "scifact", requires = "analyse")]
    pub test: String,
    /// With --analyse: the collection fine-tuned on (named in the table).
    #[arg(long, default_value = "scifact", requires = "analyse")]
    pub train: String,
    /// With --analyse: the first-stage candidates reranked per query (the chance band's).
    #[arg(long, default_value_t = 20, requires = "analyse")]
    pub depth: usize,
    /// With --analyse: the judged test queries the runs cover (the first by id; default all).
    #[arg(long, requires = "analyse")]
    pub queries: Option<usize>,
}

pub fn controlled(a: ControlledArgs) -> Result<()> {
    if let Some(dir) = &a.analyse {
        return analyse(&a, dir);
    }
    a.backend.ensure_compiled()?;
    let mut preset = rankmamba::controlled::ControlledPreset::named(&a.preset)?;
    if let Some(n) = a.pretrain_steps {
        if n == 0 {
            bail!("--pretrain-steps must be positive");
        }
        preset.pretrain_steps = n;
    }
    if let Some(n) = a.finetune_steps {
        if n == 0 {
            bail!("--finetune-steps must be positive");
        }
        preset.finetune.steps = n;
    }
    if a.backend != BackendKind::Cpu {
        preset.pad_multiple = preset.pad_multiple.max(a.backend.pad_multiple());
    }
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("target/controlled").join(&preset.name));
    let report = with_backend!(a.backend, |B, dev| rankmamba::controlled::run::<B>(
        &preset,
        a.backend.name(),
        &out,
        &dev,
        !a.quiet
    ))??;
    print!("{}", rankmamba::controlled::markdown(&report));
    let svg = out.join("perplexity.svg");
    rankmamba::bench::plot::write_curves_svg(
        &rankmamba::controlled::perplexity_curves(&report.pretraining),
        &format!("held-out perplexity, preset {}", preset.name),
        &svg,
    )?;
    eprintln!(
        "wrote {} and {}",
        out.join("controlled.md").display(),
        svg.display()
    );
    Ok(())
}

/// `controlled --analyse DIR`: the tables of runs made elsewhere.
fn analyse(a: &ControlledArgs, dir: &std::path::Path) -> Result<()> {
    use rankmamba::controlled::{MEASURES, SeedRun, analyse, systems, task_markdown};
    use rankmamba::study::{Collection, Side, Task};
    if a.depth == 0 || a.queries == Some(0) {
        bail!("--depth and --queries must be positive");
    }
    let names: Vec<String> = systems().iter().map(|s| s.name()).collect();
    let mut runs = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in entries {
        let path = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let Some(stem) = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".trec"))
        else {
            continue;
        };
        let Some((system, seed)) = stem
            .rsplit_once("-s")
            .and_then(|(s, n)| Some((s, n.parse::<u64>().ok()?)))
        else {
            bail!("{}: expected SYSTEM-sSEED.trec", path.display());
        };
        if !names.iter().any(|n| n == system) {
            bail!(
                "{}: unknown system {system:?} (expected one of {})",
                path.display(),
                names.join(", ")
            );
        }
        let report = dir.join(stem).join("train_report.json");
        let tps = if report.is_file() {
            let v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&report).with_context(|| format!("reading {}", report.display()))?,
            )
            .with_context(|| format!("parsing {}", report.display()))?;
            v["report"]["train_tokens_per_s"]
                .as_f64()
                .with_context(|| format!("{}: no report.train_tokens_per_s", report.display()))?
        } else {
            f64::NAN
        };
        runs.push(SeedRun {
            system: system.to_string(),
            seed,
            run: rankmamba::ir_metrics::Run::from_path(&path)?,
            train_tokens_per_s: tps,
        });
    }
    runs.sort_by(|x, y| (&x.system, x.seed).cmp(&(&y.system, y.seed)));
    // pretraining reports, when the runs' folder has them: DIR/pretrain-ARCH/pretrain_report.json
    let mut pretraining = Vec::new();
    for arch in ["mamba", "gpt-neox"] {
        let p = dir
            .join(format!("pretrain-{arch}"))
            .join("pretrain_report.json");
        if p.is_file() {
            let r: rankmamba::pretrain::PretrainReport = serde_json::from_slice(
                &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("parsing {}", p.display()))?;
            pretraining.push(r);
        }
    }
    if runs.is_empty() && pretraining.is_empty() {
        bail!(
            "{}: no SYSTEM-sSEED.trec run and no pretrain-ARCH/pretrain_report.json",
            dir.display()
        );
    }
    let mut md = String::new();
    if !pretraining.is_empty() {
        md.push_str(&rankmamba::controlled::pretraining_markdown(&pretraining));
    }
    let outcome = if runs.is_empty() {
        None
    } else {
        let c = Collection::load(&a.test, Side::Test, a.queries, a.depth.max(100))?;
        let task = Task {
            train: a.train.clone(),
            test: a.test.clone(),
        };
        let outcome = analyse(&task, &c, a.depth, &runs)?;
        let measures: Vec<String> = MEASURES.iter().map(|m| m.to_string()).collect();
        md.push_str(&task_markdown(&outcome, &measures));
        Some(outcome)
    };
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        if let Some(outcome) = &outcome {
            let json = out.join("controlled-runs.json");
            safe_write::write_bytes(&json, &serde_json::to_vec_pretty(outcome)?)
                .with_context(|| format!("writing {}", json.display()))?;
        }
        let path = out.join("controlled-runs.md");
        safe_write::write_bytes(&path, md.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        if !pretraining.is_empty() {
            rankmamba::bench::plot::write_curves_svg(
                &rankmamba::controlled::perplexity_curves(&pretraining),
                "held-out perplexity",
                &out.join("perplexity.svg"),
            )?;
        }
    }
    print!("{md}");
    Ok(())
}
