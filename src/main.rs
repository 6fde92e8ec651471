//! The `rankmamba` command line.

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use rankmamba::ir_metrics::stats::{BootstrapMethod, Interval, bootstrap_ci};
use rankmamba::ir_metrics::{
    CompareMode, CompareOptions, Comparison, Correction, EvalOptions, Kind, Measure, Prefs, Qrels,
    QrelsJg, Run, SignificanceTest, ZScores, compare_with, evaluate, fusion, parse_jg_measures,
    parse_measure_list, parse_prefs_measures, report, trec_eval_jg_output, trec_eval_prefs_output,
};
use std::path::PathBuf;

mod cli;

#[derive(Parser)]
#[command(
    name = "rankmamba",
    version,
    about = "Mamba vs transformer cross-encoder rerankers: training, reranking, evaluation, benchmarks"
)]
struct Cli {
    /// Data folder searched first for data sets, tokenizers (`tokenizers/NAME`) and models
    /// (`models/NAME`), before $RANKMAMBA_DATA, the repository's data/ or ../shared/data and the
    /// cache folder; `data fetch` writes there.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate TREC runs against qrels (`eval QRELS RUN...`), with trec_eval's semantics and
    /// output format.
    Eval(EvalArgs),
    /// Compare runs (against the first, or every pair) with paired significance tests and a
    /// multiple-comparison correction; text, Markdown, LaTeX or JSON tables.
    Compare(CompareArgs),
    /// Fuse runs (RRF, CombSUM, CombMNZ) into a new TREC run.
    Fuse(FuseArgs),
    /// Join the runs of `rerank --shard 0/N ... N-1/N`, in that order, into the single run.
    Merge(MergeArgs),
    /// Fine-tune or train a cross-encoder reranker (MiniLM, Mamba, Pythia, BERT).
    Train(cli::train::Args),
    /// Pretrain a Mamba or GPT-NeoX backbone as a causal language model on a text corpus.
    Pretrain(cli::pretrain::Args),
    /// Train a byte-level BPE tokenizer on a text corpus (for `pretrain`).
    Tokenizer(cli::pretrain::TokenizerArgs),
    /// The controlled study: Mamba vs GPT-NeoX pretrained here on the same text, fine-tuned
    /// with one recipe over several seeds, tested model against model.
    Controlled(cli::pretrain::ControlledArgs),
    /// Rerank a first-stage TREC run with a trained cross-encoder.
    Rerank(cli::rerank::Args),
    /// Serve a trained reranker over HTTP with text-embeddings-inference's `/rerank` API.
    Serve(cli::serve::Args),
    /// Write a trained cross-encoder as a Hugging Face sequence-classification checkpoint
    /// (safetensors, config.json, tokenizer files) that `transformers` loads.
    Export(ExportArgs),
    /// The study: BM25 vs MiniLM vs Mamba vs a decoder transformer, quality and throughput.
    Reproduce(cli::reproduce::Args),
    /// Throughput tables: selective scan vs attention, training steps, reranking.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Datasets and models.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Print a shell completion script (`rankmamba completions bash > /etc/bash_completion.d/rankmamba`).
    Completions(CompletionsArgs),
}

/// `rankmamba export`.
#[derive(Args)]
struct ExportArgs {
    /// Model directory written by `rankmamba train` (or a Hub id holding one).
    #[arg(long)]
    model: PathBuf,
    /// New folder for the checkpoint (config.json, model.safetensors, tokenizer.json,
    /// tokenizer_config.json).
    #[arg(short, long)]
    output: PathBuf,
    /// The activation sentence-transformers' CrossEncoder applies to the logit (recorded in
    /// config.json; `rankmamba rerank` ranks by the logit either way).
    #[arg(long, value_enum, default_value = "identity")]
    activation: ActivationArg,
    /// No summary line.
    #[arg(long)]
    quiet: bool,
}

/// `--activation`.
#[derive(Clone, Copy, ValueEnum)]
enum ActivationArg {
    /// The logit itself.
    Identity,
    /// sigmoid(logit).
    Sigmoid,
}

impl From<ActivationArg> for rankmamba::rank_heads::Activation {
    fn from(a: ActivationArg) -> Self {
        match a {
            ActivationArg::Identity => Self::Identity,
            ActivationArg::Sigmoid => Self::Sigmoid,
        }
    }
}

/// Options shared by `eval` and `compare`, as trec_eval spells them.
#[derive(Args)]
struct Common {
    /// TREC qrels file (`qid iter docid grade`); instead of the first positional file.
    #[arg(long, value_name = "FILE")]
    qrels: Option<PathBuf>,
    /// Measure: trec_eval (`ndcg_cut.10`, `P.5,10`, a bare family such as `P` with trec_eval's
    /// default cutoffs, `official`, `all_trec`) or ir_measures (`nDCG@10`, `RR@10`, `AP`)
    /// style; repeatable.
    #[arg(short = 'm', long = "measure")]
    measures: Vec<String>,
    /// Minimum grade counted relevant by binary measures (trec_eval -l).
    #[arg(short = 'l', long, default_value_t = 1)]
    relevance_level: i64,
    /// Drop unjudged documents before measuring (trec_eval -J).
    #[arg(short = 'J', long)]
    judged_only: bool,
    /// Average over all qrels queries; missing ones are scored as trec_eval -c does.
    #[arg(short = 'c', long)]
    complete: bool,
    /// Look at the first N ranked documents of each query only (trec_eval -M).
    #[arg(short = 'M', long)]
    max_docs: Option<usize>,
}

impl Common {
    fn options(&self) -> EvalOptions {
        EvalOptions {
            relevance_level: self.relevance_level,
            judged_only: self.judged_only,
            complete: self.complete,
            max_docs: self.max_docs,
        }
    }
    /// The `-m` measures, or `default` without any.
    fn measures(&self, default: &[&str]) -> Result<Vec<Measure>> {
        Ok(if self.measures.is_empty() {
            parse_measure_list(default)?
        } else {
            parse_measure_list(&self.measures)?
        })
    }
    /// The qrels file and the runs: `--qrels` and `--run`, or positional `QRELS RUN...`.
    fn files(&self, positional: &[PathBuf], runs: &[PathBuf]) -> Result<(PathBuf, Vec<PathBuf>)> {
        let mut pos = positional.to_vec();
        let qrels = match &self.qrels {
            Some(q) => q.clone(),
            None if pos.is_empty() => bail!("no qrels file: give `QRELS RUN...` or --qrels"),
            None => pos.remove(0),
        };
        pos.extend(runs.iter().cloned());
        if pos.is_empty() {
            bail!("no run file: give `QRELS RUN...` or --run");
        }
        let stdin = std::iter::once(&qrels)
            .chain(&pos)
            .filter(|p| p.as_os_str() == "-")
            .count();
        if stdin > 1 {
            bail!("`-` (standard input) can stand for one file only");
        }
        Ok((qrels, pos))
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// `QRELS RUN...`, as trec_eval takes them (`-` reads standard input; `.gz` is read as is).
    #[arg(value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Run file (`qid Q0 docid rank score tag`; fields after the tag are ignored); repeatable.
    #[arg(long = "run", value_name = "FILE")]
    runs: Vec<PathBuf>,
    /// Also print per-query values (trec_eval -q).
    #[arg(short = 'q', long)]
    per_query: bool,
    /// Print JSON instead of text (an object; with several runs, an array of them).
    #[arg(long)]
    json: bool,
    /// Format of the relevance file (trec_eval -R): qrels, prefs, qrels_prefs or qrels_jg.
    #[arg(short = 'R', long = "rel-format", value_enum, default_value = "qrels")]
    rel_format: RelFormat,
    /// Standardise each query's values by the mean and deviation of this file (trec_eval -Z:
    /// `qid measure mean stddev` lines).
    #[arg(short = 'Z', long = "zscores", value_name = "FILE")]
    zscores: Option<PathBuf>,
}

/// trec_eval's relevance formats (-R).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RelFormat {
    /// `qid iter docid grade`.
    Qrels,
    /// Preferences: `qid jg jsg docid rel_level` (`-m all_prefs`).
    Prefs,
    /// Qrels read as preferences (`-m all_prefs`).
    #[value(name = "qrels_prefs", alias = "qrels-prefs")]
    QrelsPrefs,
    /// Qrels with judgement groups: `qid jg docid grade` (`-m qrels_jg`).
    #[value(name = "qrels_jg", alias = "qrels-jg")]
    QrelsJg,
}

/// A paired significance test.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TestArg {
    /// Paired Student t-test.
    #[value(alias = "ttest", alias = "student")]
    T,
    /// Paired randomization (permutation) test, Fisher's.
    #[value(alias = "permutation", alias = "randomization", alias = "fisher")]
    Perm,
    /// Paired bootstrap test (Sakai's studentized shift).
    Bootstrap,
    /// Wilcoxon signed-rank test.
    Wilcoxon,
}

/// Multiple-comparison correction over each measure's tests.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CorrectionArg {
    /// Holm-Bonferroni (step-down).
    Holm,
    /// Bonferroni.
    Bonferroni,
    /// No correction.
    None,
}

/// Which pairs are tested.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PairsArg {
    /// Every run against the first.
    Baseline,
    /// Every run against every other (ranx's report).
    All,
}

/// How `compare` prints its table.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// Aligned text.
    Text,
    /// A Markdown table, `<sup>` significance marks.
    Markdown,
    /// A LaTeX table, `$^{ab}$` significance marks.
    Latex,
    /// Everything as JSON (means, every pair's p-values).
    Json,
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// `QRELS RUN...`; the first run is the baseline.
    #[arg(value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Run files; the first is the baseline. Repeat the flag or list several.
    #[arg(long = "run", num_args = 1.., value_name = "FILE")]
    runs: Vec<PathBuf>,
    /// Paired test.
    #[arg(long, value_enum, default_value = "t")]
    test: TestArg,
    /// Correction over each measure's tests.
    #[arg(long, value_enum, default_value = "holm")]
    correction: CorrectionArg,
    /// Test every run against the first (baseline) or every pair (all).
    #[arg(long, value_enum, default_value = "baseline")]
    pairs: PairsArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Also print each mean's 95% bootstrap interval (BCa, over the compared queries).
    #[arg(long)]
    ci: bool,
    /// Resamples of the randomization and bootstrap tests and of --ci.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Seed of the randomization and bootstrap tests and of --ci.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Significance level after correction.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
}

/// Run fusion method.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FuseMethod {
    /// Reciprocal rank fusion.
    Rrf,
    /// Sum of normalised scores.
    Combsum,
    /// CombSUM times the number of runs that retrieved the document.
    Combmnz,
}

/// Score normalisation before CombSUM / CombMNZ.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NormArg {
    /// Raw scores.
    None,
    /// Min-max to [0, 1] per query.
    MinMax,
    /// Zero mean, unit variance per query.
    ZScore,
}

#[derive(Args)]
struct FuseArgs {
    /// Run files to fuse.
    #[arg(long = "run", num_args = 1.., required = true)]
    runs: Vec<PathBuf>,
    /// Fusion method.
    #[arg(long, value_enum, default_value = "rrf")]
    method: FuseMethod,
    /// RRF constant (rrf only; default 60).
    #[arg(long)]
    k: Option<f64>,
    /// Score normalisation for combsum/combmnz only (default min-max).
    #[arg(long, value_enum)]
    norm: Option<NormArg>,
    /// Output run file (written atomically).
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Args)]
struct MergeArgs {
    /// The shards' runs, in shard order (their queries must be disjoint).
    #[arg(required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Output run file (written atomically).
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Every run read (and checked) before anything is printed or written.
fn load_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    paths.iter().map(|p| Ok(Run::from_path(p)?)).collect()
}

fn run_name(p: &std::path::Path, r: &Run) -> String {
    if r.name().is_empty() {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        r.name().to_string()
    }
}

/// The default measures of `compare` (and of `eval --json`'s summary tables in the docs).
const COMPARE_DEFAULT: [&str; 6] = ["nDCG@10", "RR@10", "AP", "AP@100", "R@100", "P@10"];

fn eval(a: EvalArgs) -> Result<()> {
    let (qrels_path, run_paths) = a.common.files(&a.files, &a.runs)?;
    if a.rel_format != RelFormat::Qrels {
        return eval_other_format(&a, &qrels_path, &run_paths);
    }
    // trec_eval's default set without -m
    let measures = a.common.measures(&["official"])?;
    let qrels = Qrels::from_path(&qrels_path)?;
    let zscores = a.zscores.as_ref().map(ZScores::from_path).transpose()?;
    let runs = load_runs(&run_paths)?;
    // several runs: each block starts with its runid line, as trec_eval's default output does
    let measures = if runs.len() > 1 && !measures.iter().any(|m| m.kind == Kind::RunId) {
        let mut m = parse_measure_list(&["runid"])?;
        m.extend(measures);
        m
    } else {
        measures
    };
    let opts = a.common.options();
    let mut json = Vec::new();
    let mut text = String::new();
    for (p, run) in run_paths.iter().zip(&runs) {
        let mut e = evaluate(&qrels, run, &measures, &opts)?;
        if e.num_queries() == 0 {
            bail!(
                "no query of {} is judged in {}",
                p.display(),
                qrels_path.display()
            );
        }
        if let Some(z) = &zscores {
            e = z.apply(&e, &qrels, &opts);
        }
        if a.json {
            let mut v = report::json(&e, a.per_query);
            v["run"] = serde_json::Value::String(p.display().to_string());
            json.push(v);
        } else if zscores.is_some() {
            text.push_str(&report::trec_eval_zscore_text(&e, a.per_query));
        } else {
            text.push_str(&report::trec_eval_text(&e, a.per_query));
        }
    }
    if a.json {
        // one run: its object; several: an array of them
        let v = if json.len() == 1 {
            json.remove(0)
        } else {
            serde_json::Value::Array(json)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{text}");
    }
    Ok(())
}

/// `eval -R prefs|qrels_prefs|qrels_jg`: trec_eval's preference and judgement-group measures.
fn eval_other_format(a: &EvalArgs, rel_path: &PathBuf, run_paths: &[PathBuf]) -> Result<()> {
    if a.json {
        bail!("--json is available with -R qrels only");
    }
    if a.zscores.is_some() {
        bail!("-Z applies to -R qrels only");
    }
    let opts = a.common.options();
    let names: Vec<&str> = a.common.measures.iter().map(String::as_str).collect();
    let mut text = String::new();
    match a.rel_format {
        RelFormat::QrelsJg => {
            let measures = parse_jg_measures(if names.is_empty() {
                &["qrels_jg"]
            } else {
                &names
            })?;
            let rel = QrelsJg::from_path(rel_path)?;
            for run in &load_runs(run_paths)? {
                text.push_str(&trec_eval_jg_output(
                    &rel,
                    run,
                    &measures,
                    &opts,
                    a.per_query,
                )?);
            }
        }
        _ => {
            let measures = parse_prefs_measures(if names.is_empty() {
                &["all_prefs"]
            } else {
                &names
            })?;
            let rel = if a.rel_format == RelFormat::Prefs {
                Prefs::from_path(rel_path)?
            } else {
                Prefs::from_qrels_path(rel_path)?
            };
            for run in &load_runs(run_paths)? {
                text.push_str(&trec_eval_prefs_output(
                    &rel,
                    run,
                    &measures,
                    &opts,
                    a.per_query,
                )?);
            }
        }
    }
    print!("{text}");
    Ok(())
}

fn compare_cmd(a: CompareArgs) -> Result<()> {
    let measures = a.common.measures(&COMPARE_DEFAULT)?;
    let (qrels_path, run_paths) = a.common.files(&a.files, &a.runs)?;
    let qrels = Qrels::from_path(&qrels_path)?;
    let runs = load_runs(&run_paths)?;
    let names: Vec<String> = run_paths
        .iter()
        .zip(&runs)
        .map(|(p, r)| run_name(p, r))
        .collect();
    let pairs: Vec<(&str, &Run)> = names.iter().map(String::as_str).zip(runs.iter()).collect();
    let options = CompareOptions {
        test: match a.test {
            TestArg::T => SignificanceTest::TTest,
            TestArg::Perm => SignificanceTest::Permutation {
                samples: a.samples,
                seed: a.seed,
            },
            TestArg::Bootstrap => SignificanceTest::Bootstrap {
                samples: a.samples,
                seed: a.seed,
            },
            TestArg::Wilcoxon => SignificanceTest::Wilcoxon,
        },
        correction: match a.correction {
            CorrectionArg::Holm => Correction::Holm,
            CorrectionArg::Bonferroni => Correction::Bonferroni,
            CorrectionArg::None => Correction::None,
        },
        mode: match a.pairs {
            PairsArg::Baseline => CompareMode::Baseline,
            PairsArg::All => CompareMode::AllPairs,
        },
        alpha: a.alpha,
    };
    let c = compare_with(&qrels, &pairs, &measures, &a.common.options(), &options)?;
    let intervals = if a.ci {
        Some(intervals(&c, a.samples, a.seed)?)
    } else {
        None
    };
    let format = if a.json { FormatArg::Json } else { a.format };
    match format {
        FormatArg::Json => {
            let mut v = serde_json::to_value(&c)?;
            if let Some(ci) = &intervals {
                v["intervals_95"] = serde_json::to_value(ci)?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        f => {
            print!(
                "{}",
                match f {
                    FormatArg::Markdown => c.to_markdown(),
                    FormatArg::Latex => c.to_latex(),
                    _ => c.table(),
                }
            );
            if let Some(ci) = &intervals {
                println!("\n95% bootstrap intervals (BCa, {} resamples):", a.samples);
                for (sys, row) in c.systems.iter().zip(ci) {
                    for (m, iv) in c.measures.iter().zip(row) {
                        println!(
                            "{sys:<24} {m:<14} {:.4} [{:.4}, {:.4}]",
                            iv.estimate, iv.low, iv.high
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Each system's 95% BCa interval per measure, over the queries every run was evaluated on.
fn intervals(c: &Comparison, samples: usize, seed: u64) -> Result<Vec<Vec<Interval>>> {
    let common: Vec<&String> = match c.evaluations.first() {
        Some(first) => first
            .per_query
            .keys()
            .filter(|q| c.evaluations.iter().all(|e| e.per_query.contains_key(*q)))
            .collect(),
        None => Vec::new(),
    };
    c.evaluations
        .iter()
        .map(|e| {
            (0..e.measures.len())
                .map(|m| {
                    let x: Vec<f64> = common.iter().map(|q| e.per_query[*q][m]).collect();
                    Ok(bootstrap_ci(&x, 0.95, samples, seed, BootstrapMethod::BCa)?)
                })
                .collect()
        })
        .collect()
}

fn fuse(a: FuseArgs) -> Result<()> {
    // a flag the method does not read is an error, not silently ignored
    match (a.method, &a.k, &a.norm) {
        (FuseMethod::Rrf, _, Some(_)) => bail!("--norm applies to combsum and combmnz, not rrf"),
        (FuseMethod::Combsum | FuseMethod::Combmnz, Some(_), _) => {
            bail!("--k is the RRF constant: it does not apply to combsum or combmnz")
        }
        _ => {}
    }
    let norm = match a.norm.unwrap_or(NormArg::MinMax) {
        NormArg::None => fusion::Normalization::None,
        NormArg::MinMax => fusion::Normalization::MinMax,
        NormArg::ZScore => fusion::Normalization::ZScore,
    };
    let runs = load_runs(&a.runs)?;
    let refs: Vec<&Run> = runs.iter().collect();
    let fused = match a.method {
        FuseMethod::Rrf => fusion::rrf(&refs, a.k.unwrap_or(60.0))?,
        FuseMethod::Combsum => fusion::comb_sum(&refs, norm)?,
        FuseMethod::Combmnz => fusion::comb_mnz(&refs, norm)?,
    };
    fused
        .write_path(&a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "wrote {} ({} queries, {} lines)",
        a.output.display(),
        fused.len(),
        fused.num_entries()
    );
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(dir) = &cli.data {
        rankmamba::rank_data::set_data_flag(dir)?;
    }
    match cli.command {
        Command::Train(a) => cli::train::run(a),
        Command::Rerank(a) => cli::rerank::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Merge(a) => {
            let runs = load_runs(&a.runs)?;
            let tag = runs[0].name().to_string();
            if let Some((p, r)) = a.runs.iter().zip(&runs).find(|(_, r)| r.name() != tag) {
                bail!(
                    "{}: run tag `{}` differs from {}'s `{tag}`: shards of one reranking share it",
                    p.display(),
                    r.name(),
                    a.runs[0].display()
                );
            }
            let labelled: Vec<(String, Run)> = a
                .runs
                .iter()
                .map(|p| p.display().to_string())
                .zip(runs)
                .collect();
            let merged = rankmamba::study::concat_runs(&labelled, &tag)?;
            merged.write_path(&a.output)?;
            Ok(())
        }
        Command::Export(a) => {
            let dir = rankmamba::models::trained_dir(&a.model)?;
            rankmamba::models::export_hf(&dir, &a.output, a.activation.into())?;
            if !a.quiet {
                eprintln!("wrote {}", a.output.display());
            }
            Ok(())
        }
        Command::Pretrain(a) => cli::pretrain::run(a),
        Command::Tokenizer(a) => cli::pretrain::tokenizer(a),
        Command::Controlled(a) => cli::pretrain::controlled(a),
        Command::Reproduce(a) => cli::reproduce::run(a),
        Command::Bench(c) => cli::bench::run(c),
        Command::Data(c) => cli::data::run(c),
        Command::Eval(a) => eval(a),
        Command::Compare(a) => compare_cmd(a),
        Command::Fuse(a) => fuse(a),
        Command::Completions(a) => {
            let mut cmd = Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "rankmamba", &mut std::io::stdout());
            Ok(())
        }
    }
}
