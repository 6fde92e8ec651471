//! `rankmamba export`: a trained cross-encoder written as a HF sequence-classification
//! checkpoint, read back by `rankmamba rerank` (which must rerank exactly as from the trained
//! directory), and refused where it has no transformers layout. The exported folder and its run
//! are left under target/tmp/export-check/ for `scripts/check_hf_export.py`, which scores them
//! with `transformers` (the layout itself is checked against transformers' own files in
//! crates/rank-heads/tests/hf_cross_encoder.rs).

mod common;

use std::path::Path;

use common::{rankmamba, s};

/// `rankmamba train` on DL19 with small groups (2 x 2, 64 tokens), `extra` flags, into `out`.
fn train(model: &str, steps: &str, extra: &[&str], out: &Path) {
    let mut args = vec![
        "train",
        "--model",
        model,
        "--dataset",
        "dl19",
        "--steps",
        steps,
        "--max-length",
        "64",
        "--group-size",
        "2",
        "--groups-per-step",
        "2",
        "--quiet",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let (ok, _, err) = rankmamba(&args);
    assert!(ok, "{args:?}: {err}");
}

fn run_lines(path: &Path) -> Vec<(String, String, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].to_string(), f[4].parse().unwrap())
        })
        .collect()
}

#[test]
fn an_exported_minilm_reranks_as_the_trained_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("trained");
    train("minilm", "2", &["--pooling", "pooler"], &trained);
    let exported = tmp.path().join("exported");
    let (ok, _, err) = rankmamba(&["export", "--model", s(&trained), "-o", s(&exported)]);
    assert!(ok, "{err}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(exported.join(f).is_file(), "{f}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");

    let first_path = first_stage(tmp.path());
    let a = rerank(&trained, &first_path, &tmp.path().join("a.trec"));
    let b = rerank(&exported, &first_path, &tmp.path().join("b.trec"));
    same_runs(&a, &b);
    keep_for_transformers("minilm", &exported, &tmp.path().join("b.trec"));

    // fine-tuning goes on from the checkpoint, head included
    let more = tmp.path().join("more");
    train(s(&exported), "1", &[], &more);
    let card = std::fs::read_to_string(more.join("rankmamba.json")).unwrap();
    assert!(
        card.contains("\"pooling\": \"pooler\"") && card.contains("sequence-classification"),
        "{card}"
    );
}

/// Two decoders: GPT-NeoX (transformers' layout, the head bias folded into the final
/// LayerNorm) and Mamba (`backbone.*` + `score.*`, read back by this crate).
#[test]
fn exported_decoders_rerank_as_their_trained_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let first_path = first_stage(tmp.path());
    for (name, arch) in [
        ("pythia-tiny", "GPTNeoXForSequenceClassification"),
        ("mamba-tiny", "MambaForSequenceClassification"),
    ] {
        let trained = tmp.path().join(name);
        train(name, "2", &[], &trained);
        let exported = tmp.path().join(format!("{name}-hf"));
        let (ok, _, err) = rankmamba(&["export", "--model", s(&trained), "-o", s(&exported)]);
        assert!(ok, "{err}");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["architectures"][0], arch);
        let a = rerank(
            &trained,
            &first_path,
            &tmp.path().join(format!("{name}-a.trec")),
        );
        let b_path = tmp.path().join(format!("{name}-b.trec"));
        let b = rerank(&exported, &first_path, &b_path);
        same_runs(&a, &b);
        if name == "pythia-tiny" {
            keep_for_transformers(name, &exported, &b_path);
        }
    }
}

fn rerank(model: &Path, first: &Path, out: &Path) -> Vec<(String, String, f64)> {
    let (ok, _, err) = rankmamba(&[
        "rerank",
        "--model",
        s(model),
        "--dataset",
        "dl19",
        "--run",
        s(first),
        "--depth",
        "5",
        "-o",
        s(out),
    ]);
    assert!(ok, "{err}");
    run_lines(out)
}

fn same_runs(a: &[(String, String, f64)], b: &[(String, String, f64)]) {
    assert_eq!(a.len(), 10);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.0, &x.1), (&y.0, &y.1));
        assert!(
            (x.2 - y.2).abs() < 1e-4 * (1.0 + x.2.abs()),
            "{x:?} vs {y:?}"
        );
    }
}

/// For scripts/check_hf_export.py (transformers): target/tmp/export-check/NAME{,.trec}.
fn keep_for_transformers(name: &str, exported: &Path, run: &Path) {
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export-check");
    let _ = std::fs::remove_dir_all(keep.join(name));
    std::fs::create_dir_all(keep.join(name)).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(exported.join(f), keep.join(name).join(f)).unwrap();
    }
    std::fs::copy(run, keep.join(format!("{name}.trec"))).unwrap();
}

/// A first stage of 5 passages for 2 DL19 queries (from its BM25 run), so that every line of a
/// reranked run is scored by the model.
fn first_stage(dir: &Path) -> std::path::PathBuf {
    let bm25 = std::fs::read_to_string(
        test_support::data_dir().join("trec-dl-2019-passage/runs/bm25.trec"),
    )
    .unwrap();
    let mut first = String::new();
    let mut per_query = std::collections::BTreeMap::<String, usize>::new();
    for line in bm25.lines() {
        let qid = line.split_whitespace().next().unwrap().to_string();
        if per_query.len() == 2 && !per_query.contains_key(&qid) {
            continue;
        }
        let n = per_query.entry(qid).or_default();
        if *n < 5 {
            *n += 1;
            first.push_str(line);
            first.push('\n');
        }
    }
    let path = dir.join("first.trec");
    std::fs::write(&path, first).unwrap();
    path
}

#[test]
fn a_model_without_a_transformers_layout_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let trained = tmp.path().join("trained");
    // MiniLM with the default CLS pooling: BertForSequenceClassification pools with the pooler
    train("minilm", "1", &[], &trained);
    let out = tmp.path().join("exported");
    let (ok, _, err) = rankmamba(&["export", "--model", s(&trained), "-o", s(&out)]);
    assert!(!ok);
    assert!(err.contains("pooler"), "{err}");
    assert!(!out.exists(), "a refused export writes nothing");
    // exporting over a model directory is refused too
    let (ok, _, err) = rankmamba(&["export", "--model", s(&trained), "-o", s(&trained)]);
    assert!(!ok && err.contains("model directory"), "{err}");
    let (ok, _, err) = rankmamba(&[
        "export",
        "--model",
        s(&tmp.path().join("nope")),
        "-o",
        s(&out),
    ]);
    assert!(!ok && err.contains("nope"), "{err}");
}
