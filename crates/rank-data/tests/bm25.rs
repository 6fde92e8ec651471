//! The BM25 first stage: behaviour on a hand-made collection, and SciFact test nDCG@10
//! (evaluated with `ir-metrics`) in the band of the published BM25 figures.

mod common;

use ir_metrics::{EvalOptions, evaluate, parse_measures};
use rank_data::bm25::analyze;
use rank_data::{Bm25Index, Document, Query};
use std::time::Instant;

fn doc(id: &str, title: &str, text: &str) -> rank_data::Result<Document> {
    Ok(Document {
        id: id.into(),
        title: title.into(),
        text: text.into(),
    })
}

#[test]
fn analyzer_lowercases_stems_and_drops_stop_words() {
    assert_eq!(analyze("The Running of the Dogs"), ["run", "dog"]);
    assert_eq!(analyze("IL-6 levels"), ["il", "6", "level"]);
    assert!(analyze("the and of").is_empty());
}

#[test]
fn small_collection_ranks_as_expected() {
    let index = Bm25Index::build([
        doc("a", "Cats", "cats chase mice in the garden"),
        doc("b", "", "dogs running in parks"),
        doc("c", "Parks", "a park has trees and a dog"),
        doc("d", "", "unrelated text about finance"),
    ])
    .unwrap();
    assert_eq!(index.num_docs(), 4);
    // stemming: "dog runs" matches b (dogs running) best, then c (dog); a and d not at all
    let hits = index.search("dog runs", 10).unwrap();
    let ids: Vec<&str> = hits.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(ids, ["b", "c"]);
    assert!(hits[0].1 > hits[1].1 && hits[1].1 > 0.0);
    // titles are indexed
    assert_eq!(index.search("cat", 10).unwrap()[0].0, "a");
    // k cuts the list; a k beyond the collection (even usize::MAX) gives every hit
    assert_eq!(index.search("park dog cat", 2).unwrap().len(), 2);
    assert_eq!(index.search("park dog cat", usize::MAX).unwrap().len(), 3);
    // query syntax characters are plain text; stop words only: no result, no error
    assert_eq!(
        index.search("\"finance\": (-text +AND", 10).unwrap()[0].0,
        "d"
    );
    assert!(index.search("the of and", 10).unwrap().is_empty());
    assert!(index.search("dog", 0).is_err());
    // a run: queries without any hit are absent
    let queries = [
        Query {
            id: "q1".into(),
            text: "garden mice".into(),
        },
        Query {
            id: "q2".into(),
            text: "the".into(),
        },
    ];
    let run = index.run(&queries, 3, "bm25").unwrap();
    assert_eq!(run.len(), 1);
    assert_eq!(run.get("q1").unwrap().ranked()[0].0, "a");
    assert_eq!(run.name(), "bm25");
}

#[test]
fn repeated_query_terms_weigh_more() {
    let index = Bm25Index::build([
        doc("x", "", "alpha alpha beta"),
        doc("y", "", "alpha beta beta"),
        doc("z", "", "gamma"),
    ])
    .unwrap();
    let once = index.search("alpha beta", 3).unwrap();
    assert!(
        (once[0].1 - once[1].1).abs() < 1e-6,
        "symmetric documents tie: {once:?}"
    );
    assert_eq!(index.search("beta beta alpha", 3).unwrap()[0].0, "y");
    assert_eq!(index.search("alpha alpha beta", 3).unwrap()[0].0, "x");
}

#[test]
fn bad_collections_are_errors() {
    let dup = Bm25Index::build([doc("a", "", "x"), doc("a", "", "y")]);
    assert!(matches!(dup, Err(rank_data::Error::Invalid(_))));
    assert!(Bm25Index::build(std::iter::empty()).is_err());
    // a reader error stops the build and comes out unchanged
    let bad = Bm25Index::build([
        doc("a", "", "x"),
        Err(rank_data::Error::Invalid("boom".into())),
    ]);
    assert!(bad.err().unwrap().to_string().contains("boom"));
}

#[test]
fn scifact_test_ndcg_at_10() {
    let d = common::dataset("scifact");
    let qrels = d.qrels("test").unwrap();
    let mut queries = d.queries().unwrap();
    queries.retain(|q| qrels.get(q).is_some());
    assert_eq!(queries.len(), 300);
    let t0 = Instant::now();
    let index = Bm25Index::build(d.documents().unwrap()).unwrap();
    let t_index = t0.elapsed();
    assert_eq!(index.num_docs(), 5_183);
    let t1 = Instant::now();
    let run = index.run(&queries.to_vec(), 100, "bm25-tantivy").unwrap();
    let t_search = t1.elapsed();
    assert_eq!(
        run.len(),
        300,
        "every SciFact test claim has indexable terms"
    );
    // a claim whose terms occur in fewer than 100 abstracts retrieves fewer
    assert!(run.queries().iter().all(|q| (1..=100).contains(&q.len())));
    let full = run.queries().iter().filter(|q| q.len() == 100).count();
    assert!(
        full >= 290,
        "only {full} of 300 queries retrieved 100 documents"
    );
    // write and read back the TREC run, then evaluate the file
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("scifact-test.bm25.trec");
    run.write_path(&path).unwrap();
    let run = rank_data::trec::read_run(&path).unwrap();
    let mut measures = parse_measures("nDCG@10").unwrap();
    measures.extend(parse_measures("R@100").unwrap());
    let e = evaluate(&qrels, &run, &measures, &EvalOptions::default()).unwrap();
    let ndcg = e.mean(&measures[0]).unwrap();
    let recall = e.mean(&measures[1]).unwrap();
    println!(
        "SciFact test, tantivy BM25 (k1=1.2, b=0.75, title+text): nDCG@10 = {ndcg:.4}, \
         R@100 = {recall:.4}, {} queries; index {:.2} s, search {:.2} s",
        e.num_queries(),
        t_index.as_secs_f64(),
        t_search.as_secs_f64()
    );
    assert_eq!(e.num_queries(), 300);
    // published BM25: 0.665 (BEIR paper), 0.672 (Anserini flat), 0.665 (Anserini multifield)
    assert!(
        (0.60..=0.75).contains(&ndcg),
        "nDCG@10 {ndcg:.4} outside the sane band"
    );
    assert!(
        recall > 0.8,
        "R@100 {recall:.4}: BEIR reports 0.908 for BM25"
    );
}
