//! Pointwise reranking of a first-stage run: load a cross-encoder, score each (query, passage)
//! pair of the TREC DL 2019 BM25 top-k on its own, and print nDCG@10 (trec_eval `-l 2`
//! semantics for binary measures do not apply to nDCG, which uses the graded judgements) before
//! and after, plus the reranked run.
//!
//! ```sh
//! # a model fine-tuned by the train_cross_encoder example (all-MiniLM-L6-v2 + a scoring head)
//! cargo run --release --example train_cross_encoder
//! cargo run --release --example pointwise_rerank -- target/train_cross_encoder [DEPTH] [QUERIES]
//! ```
//! Without a model directory (or with `-`), the untrained head is used: the numbers then show
//! what an unfitted head does to BM25's order. Defaults: top-100, all 43 judged queries.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::backend::NdArray;
use burn::backend::ndarray::NdArrayDevice;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use rank_data::Dataset;
use rank_heads::{CrossEncoder, PaddingSide, PairEncoder, Pooling, Reranker, TemplateStyle};
use rankmamba::models::minilm_dir_or_fetch;
use rankmamba::recipes::ndcg10;
use transformer_baselines::BertModel;

type B = NdArray;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_dir = args.first().filter(|a| *a != "-").map(PathBuf::from);
    let depth: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(100);
    let max_queries: usize = args
        .get(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(usize::MAX);

    let data = Dataset::open("dl19")?;
    let qrels = data.qrels("test")?;
    let mut bm25 = data.run("bm25")?;
    bm25.set_name("bm25");
    let corpus = data.corpus(|_| true)?;
    let judged: Vec<String> = bm25
        .queries()
        .iter()
        .map(|q| q.qid().to_string())
        .filter(|q| qrels.get(q).is_some())
        .take(max_queries)
        .collect();
    let queries: HashMap<String, String> = data
        .queries()?
        .iter()
        .filter(|(id, _)| judged.iter().any(|j| j == id))
        .map(|(id, text)| (id.to_string(), text.to_string()))
        .collect();

    let minilm = minilm_dir_or_fetch(true)?;
    let dev = NdArrayDevice::default();
    let (bert, _) =
        BertModel::<B>::from_pretrained(&minilm.to_string_lossy(), &Default::default(), &dev)?;
    B::seed(&dev, 7);
    let mut model = CrossEncoder::new(bert, Pooling::Cls, 0.1, &dev);
    match &model_dir {
        Some(dir) => {
            let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
            model = model.load_file(dir.join("cross_encoder"), &recorder, &dev)?;
            println!("model: {}", dir.join("cross_encoder.mpk").display());
        }
        None => println!("model: all-MiniLM-L6-v2 with an untrained head"),
    }
    let encoder = PairEncoder::from_file(
        &minilm.join("tokenizer.json"),
        TemplateStyle::Encoder,
        128,
        PaddingSide::Right,
    )?;
    let reranker = Reranker {
        model: &model,
        encoder: &encoder,
        batch_size: 32,
        device: dev,
    };
    let doc_text = |id: &str| corpus.get(id).map(|d| d.contents().into_owned());
    let reranked = reranker.rerank_run(&bm25, &queries, &doc_text, depth, "reranked", |i, n| {
        eprint!("\r{i}/{n} queries");
    })?;
    eprintln!();
    // BM25 on the same queries and depth, for a like-for-like comparison
    let mut bm25_top = rank_data::Run::new("bm25");
    for q in bm25
        .queries()
        .iter()
        .filter(|q| queries.contains_key(q.qid()))
    {
        for (doc, score) in q.ranked().into_iter().take(depth) {
            bm25_top.push(q.qid(), doc, score)?;
        }
    }
    let before = ndcg10(&bm25_top, &qrels)?;
    let after = ndcg10(&reranked, &qrels)?;
    println!(
        "TREC DL 2019, {} judged queries, BM25 top-{depth}: nDCG@10 {before:.4} (BM25) -> {after:.4} (reranked)",
        queries.len()
    );
    let out = PathBuf::from("target/pointwise_rerank.trec");
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    reranked.write_path(&out)?;
    println!("reranked run: {}", out.display());
    Ok(())
}
