//! `rankmamba tokenizer` and `rankmamba pretrain` end to end on a slice of the shared
//! pretraining corpus: the held-out loss falls, a run cut with --stop-after and rerun equals
//! the uninterrupted run byte for byte, and the pretrained directory fine-tunes as a
//! cross-encoder backbone.

mod common;
use common::rankmamba;

use std::io::Read;
use std::path::Path;

/// A folder with the first ~400 kB of the Brown corpus (from `pretrain/brown.txt.xz`).
fn tiny_corpus(dir: &Path) -> std::path::PathBuf {
    let src = test_support::data_dir().join("pretrain/brown.txt.xz");
    let mut text = String::new();
    liblzma::read::XzDecoder::new(std::fs::File::open(&src).unwrap())
        .take(400_000)
        .read_to_string(&mut text)
        .unwrap_or_else(|_| panic!("{}", src.display()));
    let cut = text.rfind("\n\n").unwrap();
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("brown.txt"), &text[..cut]).unwrap();
    corpus
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn val_losses(dir: &Path) -> Vec<f64> {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pretrain_report.json")).unwrap()).unwrap();
    r["validation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn pretrain_learns_resumes_exactly_and_fine_tunes() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(tmp.path());
    let tok = tmp.path().join("tokenizer.json");
    let (ok, _, err) = rankmamba(&[
        "tokenizer",
        "--corpus",
        corpus.to_str().unwrap(),
        "--vocab-size",
        "1000",
        "-o",
        tok.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let common = |out: &Path, arch: &str| -> Vec<String> {
        [
            "pretrain",
            "--arch",
            arch,
            "--size",
            "tiny",
            "--corpus",
            corpus.to_str().unwrap(),
            "--tokenizer",
            tok.to_str().unwrap(),
            "--seq-len",
            "64",
            "--batch-size",
            "8",
            "--steps",
            "24",
            "--lr",
            "3e-3",
            "--eval-every",
            "8",
            "--eval-sequences",
            "16",
            "--checkpoint-every",
            "8",
            "--quiet",
            "-o",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // one call
    let a = tmp.path().join("a");
    let (ok, _, err) = rankmamba(&args(&common(&a, "mamba")));
    assert!(ok, "{err}");
    let losses = val_losses(&a);
    assert_eq!(losses.len(), 3);
    // uniform over 1,000 ids is 6.9 nats
    assert!(losses[0] < 7.0 && losses[2] < losses[0] - 0.3, "{losses:?}");

    // the same run cut in two calls
    let b = tmp.path().join("b");
    let mut cut = common(&b, "mamba");
    cut.extend(["--stop-after".to_string(), "8".to_string()]);
    let (ok, _, err) = rankmamba(&args(&cut));
    assert!(ok, "{err}");
    assert!(err.contains("after 8 of 24 steps"), "{err}");
    let (ok, _, err) = rankmamba(&args(&cut));
    assert!(ok, "{err}");
    let (ok, _, err) = rankmamba(&args(&cut));
    assert!(ok, "{err}");
    assert!(err.contains("after 24 of 24 steps"), "{err}");
    // the same weights give the same bytes (sorted safetensors header)
    assert!(
        std::fs::read(a.join("model.safetensors")).unwrap()
            == std::fs::read(b.join("model.safetensors")).unwrap(),
        "resumed weights differ"
    );
    assert_eq!(val_losses(&a), val_losses(&b));

    // both architectures fine-tune as cross-encoders
    let n = tmp.path().join("neox");
    let mut neox = common(&n, "gpt-neox");
    let at = neox.iter().position(|s| s == "24").unwrap();
    neox[at] = "8".into();
    let (ok, _, err) = rankmamba(&args(&neox));
    assert!(ok, "{err}");
    for backbone in [&a, &n] {
        let ft = tmp.path().join(format!(
            "ft-{}",
            backbone.file_name().unwrap().to_string_lossy()
        ));
        let (ok, _, err) = rankmamba(&[
            "train",
            "--model",
            backbone.to_str().unwrap(),
            "--dataset",
            "scifact",
            "--out",
            ft.to_str().unwrap(),
            "--steps",
            "2",
            "--max-length",
            "48",
            "--queries",
            "4",
            "--group-size",
            "2",
            "--groups-per-step",
            "1",
            "--template",
            "query-first",
        ]);
        assert!(ok, "{err}");
        let card = std::fs::read_to_string(ft.join("rankmamba.json")).unwrap();
        assert!(card.contains("Query: {query}"), "{card}");
    }
}

#[test]
fn pretrain_rejects_bad_input_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let bad_tok = tmp.path().join("tok.json");
    std::fs::write(&bad_tok, "{not json").unwrap();
    let (ok, _, err) = rankmamba(&[
        "pretrain",
        "--arch",
        "mamba",
        "--size",
        "tiny",
        "--corpus",
        "./nowhere",
        "--tokenizer",
        bad_tok.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("tok.json"), "{err}");
    // a good tokenizer (GPT-NeoX's, which has <|endoftext|>) but no such corpus folder: the
    // error names the corpus
    let (ok, _, err) = rankmamba(&[
        "pretrain",
        "--arch",
        "mamba",
        "--corpus",
        "./nowhere",
        "--tokenizer",
        test_support::neox_tokenizer().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("nowhere"), "{err}");
    let (ok, _, err) = rankmamba(&[
        "pretrain",
        "--arch",
        "mamba",
        "--tokenizer",
        "x",
        "--stop-after",
        "3",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("--checkpoint-every"), "{err}");
    assert!(!out.exists(), "a failed pretrain wrote {}", out.display());
}

#[test]
fn controlled_study_runs_end_to_end_at_toy_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("c");
    let (ok, _, err) = rankmamba(&[
        "controlled",
        "--preset",
        "toy",
        "--quiet",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("controlled.json")).unwrap()).unwrap();
    assert_eq!(r["pretraining"].as_array().unwrap().len(), 2);
    let task = &r["tasks"][0];
    let cells = task["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    for c in cells {
        assert_eq!(c["per_seed"].as_array().unwrap().len(), 3, "{c}");
        for v in c["mean"].as_array().unwrap() {
            let v = v.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{c}");
        }
    }
    // every planned comparison is there, Holm never below the raw p-value
    let tests = task["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 9);
    for t in tests {
        assert!(
            t["p_holm"].as_f64().unwrap() >= t["p"].as_f64().unwrap() - 1e-12,
            "{t}"
        );
    }
    // the pretrained backbones and a seed's run exist where the report says
    assert!(out.join("pretrain/mamba/model.safetensors").is_file());
    assert!(out.join("pretrain/gpt-neox/model.safetensors").is_file());
    assert!(out.join("scifact/mamba-random-seed2/run.trec").is_file());
    let md = std::fs::read_to_string(out.join("controlled.md")).unwrap();
    assert!(md.contains("| mamba vs gpt-neox |"), "{md}");

    // The same runs tabulated from files, as runs made on another machine are: the figures
    // of the in-process protocol come back.
    let runs = tmp.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    for c in cells {
        let system = c["system"].as_str().unwrap();
        for seed in 1..=3 {
            std::fs::copy(
                out.join(format!("scifact/{system}-seed{seed}/run.trec")),
                runs.join(format!("{system}-s{seed}.trec")),
            )
            .unwrap();
        }
    }
    for arch in ["mamba", "gpt-neox"] {
        let d = runs.join(format!("pretrain-{arch}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(
            out.join(format!("pretrain/{arch}/pretrain_report.json")),
            d.join("pretrain_report.json"),
        )
        .unwrap();
    }
    // `train` writes OUT/train_report.json; the tables take fine-tuning tokens/s from there
    for (seed, tps) in [(1, 100.0), (2, 200.0), (3, 600.0)] {
        let d = runs.join(format!("mamba-s{seed}"));
        std::fs::create_dir(&d).unwrap();
        let report = serde_json::json!({"report": {"train_tokens_per_s": tps}});
        std::fs::write(d.join("train_report.json"), report.to_string()).unwrap();
    }
    let analysed = tmp.path().join("analysed");
    let (ok, _, err) = rankmamba(&[
        "controlled",
        "--analyse",
        runs.to_str().unwrap(),
        "--depth",
        "10",
        "--queries",
        "12",
        "-o",
        analysed.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(analysed.join("controlled-runs.json")).unwrap())
            .unwrap();
    for (x, y) in a["cells"].as_array().unwrap().iter().zip(cells) {
        assert_eq!(x["system"], y["system"]);
        assert_eq!(x["mean"], y["mean"], "{}", x["system"]);
    }
    for (x, y) in a["tests"].as_array().unwrap().iter().zip(tests) {
        assert_eq!(x["p_holm"], y["p_holm"], "{} vs {}", x["a"], x["b"]);
    }
    // tokens/s: the mean of the seeds' reports, and unknown (null, `-`) without reports
    let tps = |system: &str| {
        a["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["system"] == system)
            .unwrap()["train_tokens_per_s"]
            .clone()
    };
    assert_eq!(tps("mamba").as_f64(), Some(300.0));
    assert!(tps("gpt-neox").is_null(), "{}", tps("gpt-neox"));
    // the pretraining curves as a picture, in the run and from the reports
    for svg in [out.join("perplexity.svg"), analysed.join("perplexity.svg")] {
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("mamba") && text.contains("gpt-neox"),
            "{}",
            svg.display()
        );
    }
    let md = std::fs::read_to_string(analysed.join("controlled-runs.md")).unwrap();
    assert!(
        md.contains("## Pretraining") && md.contains("| mamba |"),
        "{md}"
    );
    let md_mamba = md
        .lines()
        .find(|l| l.starts_with("| mamba |") && l.contains('±'));
    assert!(md_mamba.is_some_and(|l| l.ends_with(" 300 |")), "{md}");
    assert!(
        md.lines()
            .any(|l| l.starts_with("| gpt-neox |") && l.contains('±') && l.ends_with(" - |")),
        "{md}"
    );
    // a train report without the figure is an error naming the file
    let bad = runs.join("mamba-s1/train_report.json");
    std::fs::write(&bad, r#"{"report": {}}"#).unwrap();
    let (ok, _, err) = rankmamba(&[
        "controlled",
        "--analyse",
        runs.to_str().unwrap(),
        "-o",
        tmp.path().join("never").to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("mamba-s1") && err.contains("train_report.json"),
        "{err}"
    );
    assert!(!tmp.path().join("never").exists());
    std::fs::write(&bad, r#"{"report": {"train_tokens_per_s": 100.0}}"#).unwrap();
    // a run of an unknown system is an error naming the file, and nothing is written
    std::fs::write(runs.join("lstm-s1.trec"), "").unwrap();
    let (ok, _, err) = rankmamba(&[
        "controlled",
        "--analyse",
        runs.to_str().unwrap(),
        "-o",
        tmp.path().join("never").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("lstm-s1.trec"), "{err}");
    assert!(!tmp.path().join("never").exists());
}

#[test]
fn bad_cards_and_empty_reranks_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "scifact",
        "--out",
        m.to_str().unwrap(),
        "--steps",
        "1",
        "--max-length",
        "48",
        "--queries",
        "2",
        "--group-size",
        "2",
        "--groups-per-step",
        "1",
    ]);
    assert!(ok, "{err}");
    let out = tmp.path().join("r.trec");
    let rerank = |extra: &[&str]| {
        let mut a = vec![
            "rerank",
            "--model",
            m.to_str().unwrap(),
            "--dataset",
            "scifact",
            "-o",
            out.to_str().unwrap(),
            "--depth",
            "2",
        ];
        a.extend_from_slice(extra);
        rankmamba(&a)
    };
    // --random-init on a trained model directory is refused and leaves it as it was
    let record = std::fs::read(m.join("cross_encoder.mpk")).unwrap();
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        m.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
        "--random-init",
        "--dataset",
        "scifact",
        "--steps",
        "1",
        "--max-length",
        "48",
        "--queries",
        "2",
        "--group-size",
        "2",
        "--groups-per-step",
        "1",
    ]);
    assert!(!ok && err.contains("--random-init"), "{err}");
    assert!(std::fs::read(m.join("cross_encoder.mpk")).unwrap() == record);
    let (ok, _, err) = rerank(&["--queries", "0"]);
    assert!(!ok && err.contains("--queries"), "{err}");
    let card_path = m.join("rankmamba.json");
    let card = std::fs::read_to_string(&card_path).unwrap();
    let bad = card.replace("\"dropout\": 0.1", "\"dropout\": 2.5");
    assert_ne!(bad, card);
    std::fs::write(&card_path, bad).unwrap();
    let (ok, _, err) = rerank(&["--queries", "1"]);
    assert!(
        !ok && err.contains("rankmamba.json") && err.contains("dropout 2.5"),
        "{err}"
    );
    assert!(!out.exists());
    std::fs::write(&card_path, card).unwrap();
    // a truncated record: named, with its size and the likely causes, not Burn's hint about
    // its 0.14 format change
    std::fs::write(m.join("cross_encoder.mpk"), &record[..record.len() / 2]).unwrap();
    let (ok, _, err) = rerank(&["--queries", "1"]);
    assert!(
        !ok && err.contains("cross_encoder.mpk")
            && err.contains(&format!("{} bytes", record.len() / 2))
            && err.contains("truncated or corrupt")
            && !err.contains("0.14"),
        "{err}"
    );
    assert!(!out.exists());
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "mamba-tiny",
        "--out",
        tmp.path().join("z").to_str().unwrap(),
        "--max-length",
        "0",
    ]);
    assert!(!ok && err.contains("--max-length"), "{err}");
    assert!(!tmp.path().join("z").exists());
    // a training query that cannot fit with the template: refused before training or writing
    let (ok, _, err) = rankmamba(&[
        "train",
        "--model",
        "mamba-tiny",
        "--dataset",
        "scifact",
        "--out",
        tmp.path().join("z").to_str().unwrap(),
        "--max-length",
        "8",
        "--queries",
        "4",
        "--steps",
        "1",
    ]);
    assert!(
        !ok && err.contains("training query") && err.contains("--max-length 8"),
        "{err}"
    );
    assert!(!tmp.path().join("z").exists());
}
