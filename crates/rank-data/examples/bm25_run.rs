//! Build a BM25 run for a data set that ships none, write it as a TREC run and score it.
//!
//! ```text
//! cargo run -p rank-data --release --example bm25_run -- scifact test /tmp/scifact-test.bm25.trec
//! ```
//! Arguments: data set (name under $RANKMAMBA_DATA, or a path), split, output file, and
//! optionally the depth (default 100).

use ir_metrics::{EvalOptions, evaluate, parse_measures};
use rank_data::{Bm25Index, Dataset};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: bm25_run DATASET SPLIT OUT.trec [DEPTH]");
        std::process::exit(2);
    }
    let depth: usize = args.get(3).map_or(Ok(100), |d| d.parse())?;
    let d = Dataset::open(&args[0])?;
    let qrels = d.qrels(&args[1])?;
    let mut queries = d.queries()?;
    queries.retain(|q| qrels.get(q).is_some());
    let t0 = Instant::now();
    let index = Bm25Index::build(d.documents()?)?;
    let t_index = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let run = index.run(&queries.to_vec(), depth, "bm25-tantivy")?;
    let t_search = t1.elapsed().as_secs_f64();
    run.write_path(&args[2])?;
    let mut measures = parse_measures("nDCG@10")?;
    measures.extend(parse_measures("R@100")?);
    let e = evaluate(&qrels, &run, &measures, &EvalOptions::default())?;
    println!(
        "{} {}: {} docs, {} queries; nDCG@10 {:.4}, R@100 {:.4}; index {t_index:.2} s, \
         search {t_search:.2} s; run written to {}",
        d.name(),
        args[1],
        index.num_docs(),
        e.num_queries(),
        e.means[0],
        e.means[1],
        args[2]
    );
    Ok(())
}
