//! Sharded reranking: `rerank --shard I/N` in N processes joined by `merge`, and `rerank
//! --devices N` in one process, each give exactly the single-process run (byte for byte).

mod common;

use common::{rankmamba, s, train_tiny};

#[test]
fn shards_and_devices_give_the_single_process_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    train_tiny(&model, "1", "48", &[]);
    let rerank = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "rerank",
            "--model",
            s(&model),
            "--dataset",
            "dl19",
            "--queries",
            "5",
            "--depth",
            "4",
            "--quiet",
            "-o",
            s(out),
        ];
        args.extend_from_slice(extra);
        let (ok, _, err) = rankmamba(&args);
        assert!(ok, "{args:?}: {err}");
        std::fs::read(out).unwrap()
    };
    let single = rerank(&tmp.path().join("single.trec"), &[]);
    assert!(!single.is_empty());

    // three processes' shards (5 queries: blocks of 2, 2, 1), merged in order
    let shards: Vec<_> = (0..3)
        .map(|i| tmp.path().join(format!("shard{i}.trec")))
        .collect();
    for (i, p) in shards.iter().enumerate() {
        rerank(p, &["--shard", &format!("{i}/3")]);
    }
    let merged = tmp.path().join("merged.trec");
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(|p| s(p)));
    args.extend(["-o", s(&merged)]);
    let (ok, _, err) = rankmamba(&args);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&merged).unwrap(), single, "merged shards");

    // one process, two model copies (NdArray: two threads on the CPU device)
    let two = rerank(&tmp.path().join("devices.trec"), &["--devices", "2"]);
    assert_eq!(two, single, "--devices 2");
    let one = rerank(&tmp.path().join("device1.trec"), &["--devices", "cpu:0"]);
    assert_eq!(one, single, "--devices cpu:0");

    // a shard past the end, shards that overlap, a shard with --eval: errors, nothing written
    let out = tmp.path().join("never.trec");
    let (ok, _, err) = rankmamba(&[
        "rerank",
        "--model",
        s(&model),
        "--dataset",
        "dl19",
        "--queries",
        "5",
        "--shard",
        "3/3",
        "-o",
        s(&out),
    ]);
    assert!(!ok && err.contains("3/3"), "{err}");
    let (ok, _, err) = rankmamba(&["merge", s(&shards[0]), s(&shards[0]), "-o", s(&out)]);
    assert!(!ok && err.contains("disjoint"), "{err}");
    let (ok, _, _) = rankmamba(&[
        "rerank",
        "--model",
        s(&model),
        "--dataset",
        "dl19",
        "--shard",
        "0/2",
        "--eval",
        "-o",
        s(&out),
    ]);
    assert!(!ok);
    assert!(!out.exists());
}
