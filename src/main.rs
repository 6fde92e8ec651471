//! The `rankmamba` command line.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rankmamba::ir_metrics::{
    EvalOptions, Measure, Qrels, Run, SignificanceTest, compare, evaluate, fusion, parse_measures,
    report,
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
    /// Evaluate a TREC run against qrels, with trec_eval's semantics and output format.
    Eval(EvalArgs),
    /// Compare runs against the first one, with paired significance tests (Holm-corrected).
    Compare(CompareArgs),
    /// Fuse runs (RRF, CombSUM, CombMNZ) into a new TREC run.
    Fuse(FuseArgs),
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
    /// The study: BM25 vs MiniLM vs Mamba vs a decoder transformer, quality and throughput.
    Reproduce(cli::reproduce::Args),
    /// Throughput tables: selective scan vs attention, training steps, reranking.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Datasets and models.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
}

#[derive(Args)]
struct Common {
    /// TREC qrels file (`qid iter docid grade`).
    #[arg(long)]
    qrels: PathBuf,
    /// Measure, trec_eval (`ndcg_cut.10`, `P.5,10`) or ir_measures (`nDCG@10`, `RR@10`, `AP`) style; repeatable.
    #[arg(short = 'm', long = "measure")]
    measures: Vec<String>,
    /// Minimum grade counted relevant by binary measures (trec_eval -l).
    #[arg(short = 'l', long, default_value_t = 1)]
    relevance_level: i64,
    /// Drop unjudged documents before measuring (trec_eval -J).
    #[arg(short = 'J', long)]
    judged_only: bool,
    /// Average over all qrels queries; missing ones score 0 (trec_eval -c).
    #[arg(short = 'c', long)]
    complete: bool,
    /// Look at the first N ranked documents of each query only (trec_eval -M).
    #[arg(short = 'M', long)]
    max_docs: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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
    fn measures(&self) -> Result<Vec<Measure>> {
        let names: Vec<&str> = if self.measures.is_empty() {
            vec!["nDCG@10", "RR@10", "AP", "AP@100", "R@100", "P@10"]
        } else {
            self.measures.iter().map(String::as_str).collect()
        };
        let mut out: Vec<Measure> = Vec::new();
        for n in names {
            for m in parse_measures(n)? {
                // a measure asked for twice (`-m nDCG@10 -m ndcg_cut.10`) is printed once
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    /// TREC run file (`qid Q0 docid rank score tag`).
    #[arg(long)]
    run: PathBuf,
    /// Also print per-query values (trec_eval -q).
    #[arg(short = 'q', long)]
    per_query: bool,
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// Run files; the first is the baseline. Repeat the flag or list several.
    #[arg(long = "run", num_args = 1.., required = true)]
    runs: Vec<PathBuf>,
    /// Paired test: `t` (Student) or `perm` (randomization).
    #[arg(long, default_value = "t")]
    test: String,
    /// Random sign flips of the randomization test.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Seed of the randomization test.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Significance level after Holm-Bonferroni correction.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
}

#[derive(Args)]
struct FuseArgs {
    /// Run files to fuse.
    #[arg(long = "run", num_args = 1.., required = true)]
    runs: Vec<PathBuf>,
    /// `rrf`, `combsum` or `combmnz`.
    #[arg(long, default_value = "rrf")]
    method: String,
    /// RRF constant (rrf only; default 60).
    #[arg(long)]
    k: Option<f64>,
    /// Score normalisation for CombSUM/CombMNZ only: `none`, `min-max` (default), `z-score`.
    #[arg(long)]
    norm: Option<String>,
    /// Output run file (written atomically).
    #[arg(short, long)]
    output: PathBuf,
}

fn load_run(p: &PathBuf) -> Result<Run> {
    Ok(Run::from_path(p)?)
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(dir) = &cli.data {
        rankmamba::rank_data::set_data_flag(dir)?;
    }
    match cli.command {
        Command::Train(a) => return cli::train::run(a),
        Command::Rerank(a) => return cli::rerank::run(a),
        Command::Serve(a) => return cli::serve::run(a),
        Command::Pretrain(a) => return cli::pretrain::run(a),
        Command::Tokenizer(a) => return cli::pretrain::tokenizer(a),
        Command::Controlled(a) => return cli::pretrain::controlled(a),
        Command::Reproduce(a) => return cli::reproduce::run(a),
        Command::Bench(c) => return cli::bench::run(c),
        Command::Data(c) => return cli::data::run(c),
        Command::Eval(a) => {
            let measures = a.common.measures()?;
            let qrels = Qrels::from_path(&a.common.qrels)?;
            let run = load_run(&a.run)?;
            let e = evaluate(&qrels, &run, &measures, &a.common.options())?;
            if e.num_queries() == 0 {
                bail!(
                    "no query of {} is judged in {}",
                    a.run.display(),
                    a.common.qrels.display()
                );
            }
            if a.common.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report::json(&e, a.per_query))?
                );
            } else {
                print!(
                    "{:<22}\tall\t{}\n{:<22}\tall\t{}\n",
                    "runid",
                    run_name(&a.run, &run),
                    "num_q",
                    e.num_queries()
                );
                print!("{}", report::trec_eval_text(&e, a.per_query));
            }
        }
        Command::Compare(a) => {
            let measures = a.common.measures()?;
            let qrels = Qrels::from_path(&a.common.qrels)?;
            let runs: Vec<Run> = a.runs.iter().map(load_run).collect::<Result<_>>()?;
            let names: Vec<String> = a
                .runs
                .iter()
                .zip(&runs)
                .map(|(p, r)| run_name(p, r))
                .collect();
            let pairs: Vec<(&str, &Run)> =
                names.iter().map(String::as_str).zip(runs.iter()).collect();
            let test = match a.test.as_str() {
                "t" | "ttest" => SignificanceTest::TTest,
                "perm" | "permutation" | "randomization" => SignificanceTest::Permutation {
                    samples: a.samples,
                    seed: a.seed,
                },
                other => bail!("--test must be `t` or `perm`, found {other:?}"),
            };
            let c = compare(
                &qrels,
                &pairs,
                &measures,
                &a.common.options(),
                test,
                a.alpha,
            )?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", c.table());
            }
        }
        Command::Fuse(a) => {
            // a flag the method does not read is an error, not silently ignored
            match (a.method.as_str(), &a.k, &a.norm) {
                ("rrf", _, Some(_)) => bail!("--norm applies to combsum and combmnz, not rrf"),
                ("combsum" | "combmnz", Some(_), _) => {
                    bail!("--k is the RRF constant: it does not apply to {}", a.method)
                }
                ("rrf" | "combsum" | "combmnz", _, _) => {}
                (other, _, _) => {
                    bail!("--method must be rrf, combsum or combmnz, found {other:?}")
                }
            }
            let norm: fusion::Normalization = a.norm.as_deref().unwrap_or("min-max").parse()?;
            let runs: Vec<Run> = a.runs.iter().map(load_run).collect::<Result<_>>()?;
            let refs: Vec<&Run> = runs.iter().collect();
            let fused = match a.method.as_str() {
                "rrf" => fusion::rrf(&refs, a.k.unwrap_or(60.0))?,
                "combsum" => fusion::comb_sum(&refs, norm)?,
                _ => fusion::comb_mnz(&refs, norm)?,
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
        }
    }
    Ok(())
}
