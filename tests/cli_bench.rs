//! `rankmamba bench {scan,train,rerank,matmul}` on the CPU at tiny sizes: the output's shape (tables,
//! JSON fields, the SVG file), never its speed.

mod common;
use common::rankmamba;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn bench_scan_table_plot_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("scan.svg");
    let (ok, out, err) = rankmamba(&[
        "bench",
        "scan",
        "--lens",
        "16,32",
        "--tokens",
        "64",
        "--d-model",
        "32",
        "--heads",
        "2",
        "--state",
        "4",
        "--warmup",
        "0",
        "--reps",
        "1",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "stderr: {err}");
    // 2 lengths x 4 parts x 2 passes
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| 16 ") || l.starts_with("| 32 "))
        .collect();
    assert_eq!(rows.len(), 16, "{out}");
    assert!(
        out.contains("x vs attention") && out.contains("x vs bert-layer"),
        "{out}"
    );
    assert!(!out.contains("error"), "{out}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("scan fwd+bwd"),
        "{plot}"
    );

    let (ok, out, err) = rankmamba(&[
        "bench",
        "scan",
        "--lens",
        "16",
        "--tokens",
        "32",
        "--d-model",
        "32",
        "--heads",
        "2",
        "--state",
        "4",
        "--warmup",
        "0",
        "--reps",
        "2",
        "--parts",
        "scan,attention",
        "--fwd-only",
        "--json",
    ]);
    assert!(ok, "stderr: {err}");
    let v = json(&out);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["batch"], 2);
        assert_eq!(r["tokens"], 32);
        assert_eq!(r["timing"]["reps"], 2);
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    assert!(v["build"]["commit"].is_string());
}

#[test]
fn bench_train_json_and_table() {
    let (ok, out, err) = rankmamba(&[
        "bench",
        "train",
        "--models",
        "mamba-tiny,bert-tiny,pythia-tiny",
        "--queries",
        "2",
        "--group",
        "2",
        "--len",
        "8",
        "--warmup",
        "1",
        "--steps",
        "1",
        "--json",
    ]);
    assert!(ok, "stderr: {err}");
    let v = json(&out);
    assert_eq!(v["precision"], "f32");
    assert_eq!(v["settings"]["optimizer"], "fused-adamw");
    assert_eq!(v["settings"]["norm"], "kernel");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["tokens"], 32);
        assert!(r["params"].as_u64().unwrap() > 0);
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    let (ok, out, err) = rankmamba(&[
        "bench",
        "train",
        "--models",
        "bert-tiny",
        "--queries",
        "1",
        "--group",
        "2",
        "--len",
        "4",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--optimizer",
        "adamw",
        "--phases",
        "--norm",
        "burn",
    ]);
    assert!(ok, "stderr: {err}");
    assert!(
        out.contains("| bert-tiny |") && out.contains("| vs bert-base | optimizer ms |"),
        "{out}"
    );
    assert!(out.contains("LCE, adamw"), "{out}");
    assert!(out.contains("optimizer adamw norm burn"), "{out}");
    // with --phases the optimizer step's own time is the row's last cell
    let row = out
        .lines()
        .find(|l| l.starts_with("| bert-tiny |"))
        .unwrap();
    let last = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
    assert!(last.parse::<f64>().is_ok_and(|ms| ms >= 0.0), "{row}");
}

#[test]
fn bench_rerank_json_and_errors() {
    let (ok, out, err) = rankmamba(&[
        "bench",
        "rerank",
        "--models",
        "mamba-tiny,pythia-tiny",
        "--candidates",
        "3",
        "--len",
        "8",
        "--batches",
        "1,2",
        "--queries",
        "1",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(ok, "stderr: {err}");
    let rows = json(&out)["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["docs"], 3);
        assert!(r["docs_per_s"].as_f64().unwrap() > 0.0);
        assert!(r["ms_per_query"].as_f64().unwrap() > 0.0);
    }
    // bf16 is a CUDA-only run: a clear error, no panic
    let (ok, _, err) = rankmamba(&[
        "bench",
        "rerank",
        "--models",
        "bert-tiny",
        "--precision",
        "bf16",
    ]);
    assert!(!ok);
    assert!(err.contains("bf16") && !err.contains("panicked"), "{err}");
    let (ok, _, err) = rankmamba(&["bench", "rerank", "--batches", "0"]);
    assert!(!ok && err.contains("--batches"), "{err}");
}

#[test]
fn bench_matmul_json_table_and_errors() {
    let (ok, out, err) = rankmamba(&[
        "bench",
        "matmul",
        "--tokens",
        "64",
        "--layers",
        "24x40,8x8",
        "--kernels",
        "burn,auto,tma-mma",
        "--warmup",
        "0",
        "--reps",
        "1",
        "--json",
    ]);
    assert!(ok, "stderr: {err}");
    let v = json(&out);
    assert_eq!(v["bench"], "matmul");
    let rows = v["rows"].as_array().unwrap();
    // 2 layers x 3 products x 3 kernels
    assert_eq!(rows.len(), 18, "{out}");
    for r in rows {
        match r["kernel"].as_str().unwrap() {
            // the CPU has only Burn's product: the named kernel says so, the others run it
            "tma-mma" => assert!(r["error"].as_str().unwrap().contains("cannot run"), "{r}"),
            _ => {
                assert!(r["error"].is_null(), "{r}");
                // checked against the float64 product of sampled entries
                assert!(r["max_rel_error"].as_f64().unwrap() < 1e-5, "{r}");
            }
        }
    }
    let (ok, out, err) = rankmamba(&[
        "bench",
        "matmul",
        "--tokens",
        "16",
        "--layers",
        "8x8",
        "--kernels",
        "burn",
        "--reps",
        "1",
    ]);
    assert!(ok, "stderr: {err}");
    assert!(
        out.contains("| 8x8 | weight-grad | 8x16x8 | burn |"),
        "{out}"
    );
    for bad in [
        &["--layers", "8y8"][..],
        &["--layers", "0x8"],
        &["--kernels", "tma"],
        &["--tokens", "0"],
    ] {
        let mut args = vec!["bench", "matmul"];
        args.extend_from_slice(bad);
        let (ok, _, err) = rankmamba(&args);
        assert!(!ok && !err.contains("panicked"), "{bad:?}: {err}");
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
}
