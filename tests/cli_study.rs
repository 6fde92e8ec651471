//! `rankmamba train`, `rerank` and `reproduce` end to end on small settings: model directories
//! that reload to the same scores, first-stage order kept below the reranked depth, tables
//! whose BM25 row equals trec_eval's figures, resumable training and clear errors.

mod common;
use common::{rankmamba, s};

use std::path::PathBuf;

use rankmamba::ir_metrics::{EvalOptions, Measure, Qrels, Run, evaluate};

fn data() -> PathBuf {
    test_support::data_dir()
}

fn ndcg10(qrels: &Qrels, run: &Run) -> f64 {
    let m: Measure = "nDCG@10".parse().unwrap();
    let opts = EvalOptions {
        relevance_level: 2,
        ..EvalOptions::default()
    };
    evaluate(qrels, run, std::slice::from_ref(&m), &opts)
        .unwrap()
        .mean(&m)
        .unwrap()
}

#[test]
fn train_then_rerank_round_trips_and_keeps_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mamba");
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "dl19",
        "--steps",
        "3",
        "--max-length",
        "64",
        "--out",
        s(&model),
    ]);
    assert!(ok, "{err}");
    for f in [
        "rankmamba.json",
        "config.json",
        "tokenizer.json",
        "cross_encoder.mpk",
        "train.jsonl",
    ] {
        assert!(model.join(f).is_file(), "{f} missing: {err}");
    }
    // Two reranking passes over the saved model agree exactly (the model reloads; no dropout).
    let (run1, run2) = (tmp.path().join("a.trec"), tmp.path().join("b.trec"));
    for out in [&run1, &run2] {
        let (ok, _, err) = rankmamba(&[
            "rerank",
            "--model",
            s(&model),
            "--dataset",
            "dl20",
            "--depth",
            "7",
            "--queries",
            "4",
            "-o",
            s(out),
        ]);
        assert!(ok, "{err}");
    }
    let a = std::fs::read_to_string(&run1).unwrap();
    assert_eq!(a, std::fs::read_to_string(&run2).unwrap());
    // --eval on one query: the means, no paired test (it needs two queries)
    let one = tmp.path().join("one.trec");
    let (ok, out, err) = rankmamba(&[
        "rerank",
        "--model",
        s(&model),
        "--dataset",
        "dl20",
        "--depth",
        "7",
        "--queries",
        "1",
        "--eval",
        "-o",
        s(&one),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("(one query: no significance test)"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("first-stage")), "{out}");
    let run = Run::from_path(&run1).unwrap();
    let bm25 = Run::from_path(data().join("trec-dl-2020-passage/runs/bm25.trec")).unwrap();
    assert_eq!(run.len(), 4);
    for q in run.queries() {
        let got: Vec<&str> = q.ranked().iter().map(|(d, _)| *d).collect();
        let first: Vec<&str> = bm25
            .get(q.qid())
            .unwrap()
            .ranked()
            .iter()
            .map(|(d, _)| *d)
            .collect();
        // every candidate kept once; the top 7 are the BM25 top 7 in some order; below them
        // BM25's order is untouched.
        assert_eq!(got.len(), first.len(), "query {}", q.qid());
        let mut top: Vec<&str> = got[..7].to_vec();
        let mut top_bm25: Vec<&str> = first[..7].to_vec();
        top.sort_unstable();
        top_bm25.sort_unstable();
        assert_eq!(top, top_bm25, "query {}", q.qid());
        assert_eq!(got[7..], first[7..], "query {}", q.qid());
    }
    // A different model directory gives different scores (the record was really loaded).
    let other = tmp.path().join("pythia");
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "pythia-tiny",
        "--dataset",
        "dl19",
        "--steps",
        "2",
        "--max-length",
        "64",
        "--dropout",
        "0",
        "--log-every",
        "1",
        "--out",
        s(&other),
    ]);
    assert!(ok, "{err}");
    // --log-every 1: one line per step; --dropout 0 is written to the model card.
    let log = std::fs::read_to_string(other.join("train.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, [1, 2], "{log}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(other.join("rankmamba.json")).unwrap())
            .unwrap();
    assert_eq!(card["dropout"].as_f64(), Some(0.0), "{card}");
    let run3 = tmp.path().join("c.trec");
    let (ok, out, err) = rankmamba(&[
        "rerank",
        "--model",
        s(&other),
        "--dataset",
        "dl20",
        "--depth",
        "7",
        "--queries",
        "4",
        "-o",
        s(&run3),
        "--eval",
    ]);
    assert!(ok, "{err}");
    assert_ne!(a, std::fs::read_to_string(&run3).unwrap());
    // Another first stage (TAS-B, whose candidates BM25 did not retrieve) is reranked too.
    let tasb_path = data().join("trec-dl-2020-passage/runs/tasb.trec");
    let run4 = tmp.path().join("d.trec");
    let (ok, _, err) = rankmamba(&[
        "rerank",
        "--model",
        s(&other),
        "--dataset",
        "dl20",
        "--run",
        s(&tasb_path),
        "--depth",
        "3",
        "--queries",
        "2",
        "-o",
        s(&run4),
    ]);
    assert!(ok, "{err}");
    let tasb = Run::from_path(&tasb_path).unwrap();
    let got = Run::from_path(&run4).unwrap();
    assert_eq!(got.len(), 2);
    for q in got.queries() {
        let mut mine: Vec<&str> = q.ranked().iter().map(|(d, _)| *d).collect();
        let mut theirs: Vec<&str> = tasb
            .get(q.qid())
            .unwrap()
            .ranked()
            .iter()
            .map(|(d, _)| *d)
            .collect();
        mine.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(mine, theirs, "query {}", q.qid());
    }
    // --eval prints the first stage's nDCG@10 over the same 4 queries as trec_eval semantics.
    let qrels = Qrels::from_path(data().join("trec-dl-2020-passage/qrels.txt")).unwrap();
    let mut four = Run::new("bm25");
    for q in run.queries() {
        for (d, sc) in bm25.get(q.qid()).unwrap().ranked() {
            four.push(q.qid(), d, sc).unwrap();
        }
    }
    let expect = format!("{:.4}", ndcg10(&qrels, &four));
    assert!(
        out.lines()
            .any(|l| l.starts_with("first-stage") && l.contains(&expect)),
        "expected BM25 nDCG@10 {expect} in:\n{out}"
    );
    // Training on from a model directory into the same directory spelled differently (with a
    // `.` component) keeps its files: none is truncated by being copied onto itself.
    let tok_before = std::fs::read(model.join("tokenizer.json")).unwrap();
    let spelled = tmp.path().join(".").join("mamba");
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        s(&spelled),
        "--dataset",
        "dl19",
        "--steps",
        "1",
        "--max-length",
        "64",
        "--out",
        s(&model),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(model.join("tokenizer.json")).unwrap(),
        tok_before
    );
    assert!(!std::fs::read(model.join("config.json")).unwrap().is_empty());
    assert!(
        std::fs::metadata(model.join("cross_encoder.mpk"))
            .unwrap()
            .len()
            > 1000
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("rankmamba.json")).unwrap()).unwrap();
    assert!(
        card["source"].as_str().unwrap().ends_with("(continued)"),
        "{card}"
    );
}

#[test]
fn reproduce_writes_tables_with_the_first_stage_row() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let (ok, stdout, err) = rankmamba(&[
        "reproduce",
        "--preset",
        "quick",
        "--models",
        "mamba-tiny,pythia-tiny",
        "--tasks",
        "dl20-to-dl19",
        "--steps",
        "2",
        "--depth",
        "5",
        "--test-queries",
        "6",
        "--max-length",
        "48",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert!(ok, "{err}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(md, stdout);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let task = &v["tasks"][0];
    assert_eq!(task["test_queries"], 6);
    assert_eq!(
        task["comparison"]["systems"],
        serde_json::json!(["bm25", "mamba-tiny", "pythia-tiny"])
    );
    // The BM25 row: the shipped DL19 BM25 run over the first 6 judged queries by id, as
    // trec_eval computes it (ir-metrics is checked against pytrec_eval).
    let qrels = Qrels::from_path(data().join("trec-dl-2019-passage/qrels.txt")).unwrap();
    let bm25 = Run::from_path(data().join("trec-dl-2019-passage/runs/bm25.trec")).unwrap();
    let mut ids: Vec<String> = qrels
        .qids()
        .filter(|q| bm25.get(q).is_some())
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.truncate(6);
    let mut six = Run::new("bm25");
    for q in &ids {
        for (d, sc) in bm25.get(q).unwrap().ranked() {
            six.push(q, d, sc).unwrap();
        }
    }
    let got = task["comparison"]["cells"][0][0]["mean"].as_f64().unwrap();
    assert!((got - ndcg10(&qrels, &six)).abs() < 1e-12, "{got}");
    // Both models start from random weights: trained with the preset's lr_scratch (1e-3).
    for (i, m) in task["models"].as_array().unwrap().iter().enumerate() {
        assert_eq!(m["lr"].as_f64(), Some(1e-3), "model {i}: {m}");
    }
    for m in ["mamba-tiny", "pythia-tiny"] {
        let dir = out.join("dl20-to-dl19").join(m);
        assert!(dir.join("run.trec").is_file() && dir.join("cross_encoder.mpk").is_file());
    }
    assert!(md.contains("| bm25 | first stage |"), "{md}");
    // The chance row (200 shuffles of each query's top 5; its values are checked against
    // closed forms in ir-metrics' tests/chance.rs): one band per measure, mean inside it.
    assert!(
        md.contains("| chance | 200 shuffles of the top 5 |"),
        "{md}"
    );
    let chance = task["chance"].as_array().unwrap();
    assert_eq!(
        chance.len(),
        task["comparison"]["measures"].as_array().unwrap().len()
    );
    for b in chance {
        let (lo, mean, hi) = (
            b["lo"].as_f64().unwrap(),
            b["mean"].as_f64().unwrap(),
            b["hi"].as_f64().unwrap(),
        );
        assert!(
            lo <= mean && mean <= hi && (0.0..=1.0).contains(&mean),
            "{b}"
        );
    }
}

#[test]
fn balanced_checkpointing_trains_the_same_model() {
    // Burn's BalancedCheckpointing recomputes element-wise intermediates in the backward pass:
    // a memory strategy, so the losses of every step (Mamba, with the custom scan op) must be
    // those of a run that keeps everything. Both processes start from the same seed (the
    // backbone's random initialisation included), so on the CPU they agree bit for bit.
    let tmp = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    for ckpt in ["none", "balanced"] {
        let dir = tmp.path().join(ckpt);
        let (ok, _, err) = rankmamba(&[
            "train",
            "--model",
            "mamba-tiny",
            "--dataset",
            "dl19",
            "--steps",
            "3",
            "--max-length",
            "48",
            "--log-every",
            "1",
            "--checkpointing",
            ckpt,
            "--out",
            s(&dir),
        ]);
        assert!(ok, "{err}");
        let log = std::fs::read_to_string(dir.join("train.jsonl")).unwrap();
        let l: Vec<f64> = log
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert_eq!(l.len(), 3, "{log}");
        losses.push(l);
    }
    assert_eq!(losses[0], losses[1]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "no-such-model",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert!(!ok);
    assert!(err.contains("unknown model \"no-such-model\""), "{err}");
    let (ok, _, err) = rankmamba(&[
        "rerank",
        "--model",
        s(tmp.path()),
        "--dataset",
        "dl19",
        "-o",
        s(&tmp.path().join("r.trec")),
    ]);
    assert!(!ok);
    assert!(err.contains("rankmamba.json"), "{err}");
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "mamba-tiny",
        "--dropout",
        "1.5",
        "--out",
        s(&tmp.path().join("y")),
    ]);
    assert!(!ok);
    assert!(err.contains("--dropout must be in [0, 1)"), "{err}");
    let (ok, _, err) = rankmamba(&["reproduce", "--preset", "huge"]);
    assert!(!ok);
    // clap lists the presets
    assert!(
        err.contains("'huge'") && err.contains("quick") && err.contains("full"),
        "{err}"
    );
    let (ok, _, err) = rankmamba(&["train", "--backend", "cuda", "--out", s(tmp.path())]);
    assert!(!ok);
    assert!(
        err.contains("not compiled") || err.contains("cuda"),
        "{err}"
    );
}

#[test]
fn rerunning_a_finished_checkpointed_run_changes_nothing() {
    // The same command again resumes from the checkpoint at the last step: it trains nothing
    // and says so, and the finished run's report and weights stay as they were.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let args = [
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "dl19",
        "--steps",
        "2",
        "--max-length",
        "48",
        "--checkpoint-every",
        "1",
        "--out",
        s(&dir),
    ];
    let (ok, _, err) = rankmamba(&args);
    assert!(ok, "{err}");
    let report = std::fs::read(dir.join("train_report.json")).unwrap();
    let weights = std::fs::read(dir.join("cross_encoder.mpk")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert!(
        v["report"]["last_loss"].as_f64().unwrap().is_finite(),
        "{v}"
    );
    let (ok, _, err) = rankmamba(&args);
    assert!(ok, "{err}");
    assert!(
        err.contains("nothing to do") && err.contains("step 2"),
        "{err}"
    );
    assert!(!err.contains("NaN"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("train_report.json")).unwrap(),
        report
    );
    assert_eq!(
        std::fs::read(dir.join("cross_encoder.mpk")).unwrap(),
        weights
    );
}
